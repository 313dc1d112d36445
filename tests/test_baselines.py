"""Side-by-side baselines (benchmarks/baselines.py) on real held-out photos: the Haar cascade through
the whole command (results files, timing, report scored by the project's scorer, resume) against a
direct OpenCV call, and the MTCNN adapter against a direct faceie call (skipped without the extra)."""
import json
import math

import cv2
import numpy as np
import pytest

from benchmarks import baselines, results_io
from benchmarks.errors import BenchmarkDataError
from benchmarks.metrics.detection import iou_plus1
from benchmarks.score import load_ground_truth
from core.config import DATA_ROOT, load_config

WIDER = DATA_ROOT / "wider_train"
pytestmark = pytest.mark.skipif(not (WIDER / "wider_face_split").is_dir(), reason=f"no WIDER train set at {WIDER}")


def _direct_haar(path):
    """The Haar call written out with OpenCV alone: (N, 4) x, y, w, h and (N,) level weights."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.equalizeHist(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY))
    rects, _, weights = cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=3, outputRejectLevels=True)
    rects, weights = np.asarray(rects, dtype=np.float64).reshape(-1, 4), np.asarray(weights, dtype=np.float64).reshape(-1)
    order = sorted(range(len(weights)), key=lambda k: (-weights[k], *rects[k]))  # best first, ties by box
    return rects[order], weights[order]


def test_haar_baseline_on_two_heldout_photos(tmp_path):
    cfg = load_config(None)
    gt, images = load_ground_truth("wider-heldout", WIDER, cfg, 2)
    # photo 1: one face; photo 2: nine faces, one of them (31 x 34 px) at least 30 px on both sides
    assert [len(r.faces) for r in gt] == [1, 9]
    table = baselines.run({"wider-heldout": WIDER}, ["haar"], tmp_path, cfg, limit=2)
    rdir = tmp_path / "wider-heldout" / "haar"

    # results files: exactly the boxes and scores of the direct OpenCV call, x2 = x + w
    results = results_io.read_results(rdir)
    assert sorted(results) == sorted(i for i, _ in images)
    direct = {i: _direct_haar(p) for i, p in images}
    assert [len(direct[i][0]) for i, _ in images] == [1, 2]
    for image_id, (rects, weights) in direct.items():
        boxes, scores = results_io.boxes_scores(results[image_id])
        np.testing.assert_array_equal(boxes, np.c_[rects[:, :2], rects[:, :2] + rects[:, 2:]])
        np.testing.assert_array_equal(scores, weights)
        assert all(np.isnan(f.landmarks).all() and np.isnan(f.pose_deg).all() for f in results[image_id])
    assert len((rdir / results_io.FACE_EVAL_TXT).read_text().splitlines()) == 3

    # the counts, by hand from the direct call: photo 1's box overlaps its face at IoU 0.77 (> 0.5: TP);
    # photo 2's two boxes overlap no face above 0.11 (2 FP); faces >= 30 px: 1 + 1
    (r0, _), (r1, _) = direct[images[0][0]], direct[images[1][0]]
    g0, g1 = (np.stack([f.box for f in r.faces]) for r in gt)
    assert iou_plus1(np.c_[r0[:, :2], r0[:, :2] + r0[:, 2:]], g0).max() > 0.5
    assert iou_plus1(np.c_[r1[:, :2], r1[:, :2] + r1[:, 2:]], g1).max() < 0.5
    row = table["wider-heldout"]["haar"]
    assert (row["TP"], row["FP"], row["faces"]) == (1, 2, 2)
    assert row["recall"] == 0.5 and row["FP_per_image"] == 1.0
    assert row["AP"] == row["AP_calibrated"] == 0.5          # precision 1 up to recall 0.5, then nothing
    assert math.isinf(row["FP_per_image_at_90_recall"])       # 90 % recall never reached
    assert row["s_per_image"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["wider-heldout"]["haar"]["TP"] == 1
    report = (tmp_path / "wider-heldout" / "report.md").read_text()
    assert "| haar | 0.5000 | " in report and "| 1 | 2 | 2 | 1.0000 |" in report and "s_per_image" in report
    assert "wider-heldout / haar | 0.5000" in (tmp_path / "report.md").read_text()

    # timing: one line per photo; resume: a second run detects nothing again
    timing = [json.loads(ln) for ln in (rdir / baselines.TIMING_FILE).read_text().splitlines()]
    assert [t["image_id"] for t in timing] == [i for i, _ in images] and [t["faces"] for t in timing] == [1, 2]
    baselines.run({"wider-heldout": WIDER}, ["haar"], tmp_path, cfg, limit=2)
    assert len((rdir / baselines.TIMING_FILE).read_text().splitlines()) == 2

    # a folder made with other settings is refused, never mixed
    other = baselines.HaarDetector(min_neighbors=5)
    with pytest.raises(BenchmarkDataError, match="other settings"):
        baselines.run_methods(images, [other], tmp_path / "wider-heldout")


def test_mtcnn_adapter_on_one_photo():
    pytest.importorskip("faceie", reason="MTCNN baseline is the optional extra: pip install -r requirements-baselines.txt")
    from faceie.mtcnn import detect_faces
    from PIL import Image

    _, images = load_ground_truth("wider-heldout", WIDER, load_config(None), 1)
    img = cv2.imread(str(images[0][1]))
    faces = baselines.MtcnnDetector().detect(img)
    d = detect_faces(Image.fromarray(img[:, :, ::-1]), rotations=np.array([0.0]), proposal_skip_downscale_factor=20 / 12,
                     proposal_probability_threshold=0.6, refine_probability_threshold=0.6,
                     output_probability_threshold=0.5, extract_images=None)
    assert len(faces) == len(d.probabilities) == 1
    boxes, scores = results_io.boxes_scores(faces)
    np.testing.assert_array_equal(boxes, d.bounding_boxes + [0, 0, 1, 1])   # inclusive x2, y2 -> x + w
    np.testing.assert_array_equal(scores, d.probabilities.astype(np.float64))
    assert np.isnan(faces[0].landmarks).all()


def test_mtcnn_other_thresholds_get_their_own_folder_and_a_longer_curve():
    pytest.importorskip("faceie", reason="MTCNN baseline is the optional extra: pip install -r requirements-baselines.txt")
    _, images = load_ground_truth("wider-heldout", WIDER, load_config(None), 3)
    default, low = baselines.MtcnnDetector(), baselines.MtcnnDetector((0.6, 0.6, 0.05))
    assert (default.name, low.name) == ("mtcnn", "mtcnn_0.6_0.6_0.05")
    for _, path in images:
        img = cv2.imread(str(path))
        high_scores = sorted(f.score for f in default.detect(img))
        low_scores = sorted(f.score for f in low.detect(img))
        # the same faces above 0.5, and only the O-Net threshold moved: nothing else changes
        assert [s for s in low_scores if s >= 0.5] == high_scores
        assert min(low_scores, default=1.0) >= 0.05
    with pytest.raises(BenchmarkDataError, match="three numbers"):
        baselines.MtcnnDetector((0.6, 0.6))
