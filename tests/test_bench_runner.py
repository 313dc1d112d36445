"""The detection runner with the real pipeline on two AFW sample images: raw results in every
format, resumable. Needs a model with weights (tests/fixtures/tiny_hyperface or models/hyperface)."""
from pathlib import Path

import pytest

from benchmarks import results_io
from benchmarks.datasets.afw import load_afw
from benchmarks.run_detection import make_detector, run_detection
from core.config import DATA_ROOT

REPO = Path(__file__).resolve().parents[1]
DATA = DATA_ROOT


def _model_dir():
    for d in (REPO / "tests" / "fixtures" / "tiny_hyperface", REPO / "models" / "hyperface"):
        if any((d / w).is_file() for w in ("weights.caffemodel", "weights_fp16.npz")):
            return d
    return None


@pytest.mark.skipif(_model_dir() is None, reason="no HyperFace model with weights yet")
def test_runner_writes_all_formats_and_resumes(tmp_path):
    recs = load_afw(DATA / "afw_sample")[:2]
    images = [(r.image_id, r.path) for r in recs]
    det = make_detector(_model_dir(), proposals="fast", post="nms", irp_iterations=0)
    assert run_detection(images, det, tmp_path) == {"done": 2, "skipped": 0}
    assert run_detection(images, det, tmp_path) == {"done": 0, "skipped": 2}
    results = results_io.read_results(tmp_path)
    assert set(results) == {r.image_id for r in recs}
    n_faces = sum(len(v) for v in results.values())
    assert len((tmp_path / results_io.FACE_EVAL_TXT).read_text().splitlines()) == n_faces
    fddb_lines = (tmp_path / results_io.FDDB_TXT).read_text().splitlines()
    assert fddb_lines[0] == recs[0].image_id and len(fddb_lines) == 2 * len(recs) + n_faces


SHIPPED = REPO / "models" / "hyperface"


@pytest.mark.skipif(not (SHIPPED / "proposals").is_dir(), reason="no shipped proposal net")
def test_ablation_on_ssd_proposals_equals_single_runs(tmp_path):
    """The Section 5.5 ablation on the default Fast-HyperFace path: each variant's results are those
    of a separate pipeline run with that post-processing, and plain NMS keeps the SSD's own boxes
    (the model's box style maps landmark-fitted boxes, not proposals)."""
    import cv2
    import numpy as np

    from benchmarks.ablation import run_ablation, variants
    from benchmarks.errors import BenchmarkDataError
    from core.config import load_config

    cfg = load_config()
    recs = load_afw(DATA / "afw_sample")[:1]
    table = run_ablation(DATA / "afw_sample", SHIPPED, tmp_path, cfg, "afw", ("ssd",), limit=1, detection_threshold=0.5)
    assert list(table) == ["Fast-HyperFace (SSD)"]
    assert set(table["Fast-HyperFace (SSD)"]) == {"NMS", "NMS + IRP", "IRP + L-NMS"}
    assert all(0.0 <= ap <= 1.0 for ap in table["Fast-HyperFace (SSD)"].values())
    for name, kwargs in variants(cfg).items():
        found = results_io.read_results(tmp_path / f"ssd_{kwargs['post']}_irp{kwargs['irp_iterations']}")
        assert set(found) == {r.image_id for r in recs}
        det = make_detector(SHIPPED, proposals="ssd", config=cfg, detection_threshold=0.5, **kwargs)
        for rec in recs:
            single = det.detect(cv2.imread(str(rec.path)))
            assert len(found[rec.image_id]) == len(single) > 0, name
            for a, b in zip(found[rec.image_id], single):
                assert abs(a.score - b.score) < 1e-4 and np.allclose(a.box, b.box, atol=0.01), name
            if kwargs == {"post": "nms", "irp_iterations": 0}:
                for face in single:  # every box is one of the SSD proposals, unstyled
                    assert np.abs(det.last_ssd_boxes - face.box).max(axis=1).min() < 1e-6
    with pytest.raises(BenchmarkDataError, match="other settings"):  # a resume must not mix thresholds
        run_ablation(DATA / "afw_sample", SHIPPED, tmp_path, cfg, "afw", ("ssd",), limit=1, detection_threshold=0.3)
