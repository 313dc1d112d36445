"""Held-out evaluation (benchmarks/gt_box_eval.py): scoring with ground truth as prediction (NME 0,
accuracy 1), the GT-box forward against the pipeline's own (random-weight HyperFace deploy net, real
OpenCV DNN backend, real shared data), and the whole evaluation on hand-made sets through a net whose
outputs are constants, so every metric has a hand-computed value. Its metric functions are tested
in tests/test_bench_metrics.py."""
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gt_box_eval as gbe
from core.config import DATA_ROOT as DATA, load_config
from core.face import Face
from pipeline.postprocess import Regions

REPO = Path(__file__).resolve().parents[1]
CFG = load_config()


# ----------------------------------------------------------------------------- perfect predictions
def _perfect(faces):
    lm = np.stack([f.landmarks if f.landmarks is not None else np.full((21, 2), np.nan) for f in faces])
    vis = np.stack([f.visibility if f.visibility is not None else np.zeros(21) for f in faces])
    male = np.array([1.0 if f.gender == "m" else 0.0 for f in faces])
    boxes = np.stack([f.box for f in faces])
    return Regions(boxes, np.ones(len(faces)), lm, vis, np.stack([f.pose_deg for f in faces]), male,
                   np.full((len(faces), 4), np.nan))


@pytest.fixture(scope="module")
def heldout_faces():
    return gbe.load_heldout(DATA, ("aflw_crops", "helen", "utkface", "afw"), CFG)


def test_heldout_sets_are_the_test_splits(heldout_faces):
    assert len(heldout_faces["aflw_crops"]) == 998        # 1000 held out, 2 bad crops skipped by the reader
    assert len(heldout_faces["helen"]) == 330
    assert len(heldout_faces["utkface"]) == 500
    assert len(heldout_faces["afw"]) == 16
    np.testing.assert_array_equal(heldout_faces["aflw_crops"][0][1].box, [0, 0, 120, 120])
    np.testing.assert_allclose(heldout_faces["utkface"][0][1].box, [12.8, 12.8, 115.2, 115.2])


def test_ground_truth_as_prediction_scores_perfectly(heldout_faces):
    res = {}
    for name, items in heldout_faces.items():
        faces = [f for _, f in items]
        res[name] = gbe.score_set(name, faces, _perfect(faces), CFG)["metrics"]
    a = res["aflw_crops"]
    assert a["NME_box"] == 0.0 and a["MAE_yaw_deg"] == 0.0
    assert a["visibility_acc"] == 1.0 and a["score>thr"] == 1.0
    assert a["yaw_subset_faces"] == CFG.benchmark.aflw_subset_size
    assert all(a[f"NME_box_yaw{g}"] == 0.0 for g in ("[0,30]", "(30,60]", "(60,90]", "all"))
    h = res["helen"]
    assert h["NME_inter_ocular"] == 0.0 and h["NME_box"] == 0.0 and h["MAE_yaw_deg"] == 0.0
    assert res["utkface"]["gender_acc"] == 1.0
    assert res["utkface"]["gender_acc_m"] == 1.0 and res["utkface"]["gender_acc_f"] == 1.0
    assert res["afw"]["NME_box"] == 0.0 and res["afw"]["MAE_yaw_deg"] == 0.0


def test_known_offset_gives_hand_computed_nme(heldout_faces):
    """Every predicted point 3 px to the right of the truth: NME_box = 3 / 120 on the 120x120 crops."""
    faces = [f for _, f in heldout_faces["aflw_crops"]]
    pred = _perfect(faces)
    pred.landmarks = pred.landmarks + np.array([3.0, 0.0])
    pred.pose_deg = pred.pose_deg + np.array([0.0, 0.0, 10.0])
    m = gbe.score_set("aflw_crops", faces, pred, CFG)["metrics"]
    assert m["NME_box"] == pytest.approx(3 / 120)
    assert m["MAE_yaw_deg"] == pytest.approx(10.0)


def test_helen_detection_scoring_perfect(heldout_faces):
    items = heldout_faces["helen"][:5]
    faces = [f for _, f in items]
    ids = [f.face_id for f in faces]
    results = {i: [Face(box=f.box.copy(), score=0.9, landmarks=np.nan_to_num(f.landmarks), pose_deg=f.pose_deg.copy())]
               for i, f in zip(ids, faces)}
    results[ids[0]].append(Face(box=np.array([0.0, 0.0, 40.0, 40.0]), score=0.1))   # one unannotated (FP) box
    m = gbe.score_helen_detection(faces, ids, results, CFG)["metrics"]
    assert m["images"] == 5 and m["recall"] == 1.0
    assert m["AP"] == pytest.approx(1.0)       # the FP scores below every true face
    assert m["NME_inter_ocular"] == 0.0 and m["MAE_yaw_deg"] == 0.0


# ----------------------------------------------------------------------------- end to end, random net
@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    from pipeline.fixtures import make_model_dir

    return make_model_dir(REPO / "prototxt" / "hyperface" / "deploy.prototxt", tmp_path_factory.mktemp("rand") / "m", fp16=False)


def test_gt_box_forward_matches_pipeline_evaluate(random_model, heldout_faces):
    from pipeline.detector import HyperFace
    import cv2

    hf = HyperFace(random_model, config=CFG)
    items = heldout_faces["helen"][:3]
    pred = gbe.predict_on_boxes(hf.backend, items, CFG)
    assert pred.landmarks.shape == (3, 21, 2) and pred.visibility.shape == (3, 21) and pred.pose_deg.shape == (3, 3)
    assert np.all((pred.scores >= 0) & (pred.scores <= 1))
    for k, (path, face) in enumerate(items):
        r = hf.evaluate(cv2.imread(str(path)), face.box[None])      # the pipeline's own crop + decode
        np.testing.assert_allclose(pred.landmarks[k], r.landmarks[0], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pred.pose_deg[k], r.pose_deg[0], rtol=1e-4, atol=1e-3)


# A net whose head weights are zero: every output is its bias, whatever the crop.
FACE_P, MALE_P, YAW_DEG = 0.75, 0.75, 10.0


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory):
    from core.net_shapes import random_weights
    from pipeline.fixtures import make_model_dir

    tiny = REPO / "tests" / "fixtures" / "tiny_hyperface" / "deploy.prototxt"
    w = random_weights(tiny, 0)
    for layer in ("fc_detection", "landmarks", "visibility", "pose", "fc_gender", "bbox_deltas"):
        w[layer][0][:] = 0
    w["fc_detection"][1][:] = [0, np.log(FACE_P / (1 - FACE_P))]     # softmax -> P(face) = 0.75
    w["fc_gender"][1][:] = [0, np.log(MALE_P / (1 - MALE_P))]        # P(male) = 0.75: always "m"
    w["landmarks"][1][:] = 0                                          # every point at the box centre
    w["visibility"][1][:] = 1.0                                       # every point visible
    w["pose"][1][:] = [0, 0, np.radians(YAW_DEG)]
    return make_model_dir(tiny, tmp_path_factory.mktemp("const") / "m", w, fp16=False)


def _hand_made_sets(root):
    """aflw_crops with two crops and UTKFace with four chips (fewer than the held-out counts, so
    every row is in the test split)."""
    import cv2

    crops = root / "aflw_crops"
    (crops / "images").mkdir(parents=True)
    face_a = [(60.0, 90.0)] * 21                           # 30 px below the centre (60, 60), all visible
    face_b = [(60.0, 72.0)] * 11 + [(-1.0, -1.0)] * 10     # 12 px below the centre, 10 invisible
    header = "image,yaw_deg," + ",".join(f"x{k},y{k}" for k in range(1, 22))
    rows = [f"images/a.jpg,20.0," + ",".join(f"{x},{y}" for x, y in face_a),
            f"images/b.jpg,-40.0," + ",".join(f"{x},{y}" for x, y in face_b)]
    (crops / "annotations.csv").write_text("\n".join([header, *rows]) + "\n")
    for name in ("a", "b"):
        cv2.imwrite(str(crops / "images" / f"{name}.jpg"), np.full((120, 120, 3), 128, np.uint8))
    utk = root / "utkface"
    utk.mkdir()
    chips = [("30_0_0_1.jpg", "m"), ("31_0_0_2.jpg", "m"), ("32_1_0_3.jpg", "f"), ("33_1_0_4.jpg", "f")]
    (utk / "labels.csv").write_text("image,age,gender\n" + "".join(f"{n},30,{g}\n" for n, g in chips))
    for n, _ in chips:
        cv2.imwrite(str(utk / n), np.full((128, 128, 3), 90, np.uint8))
    return root


def test_evaluate_hand_computed_through_a_constant_net(constant_model, tmp_path):
    data = _hand_made_sets(tmp_path / "data")
    res = gbe.evaluate(constant_model, data, tmp_path / "out", ("aflw_crops", "utkface"), CFG, backend="opencv")
    a = res["aflw_crops"]["metrics"]
    assert a["faces"] == 2 and a["yaw_subset_faces"] == 2     # too few for the balanced subset: all faces
    assert a["score_mean"] == pytest.approx(FACE_P, abs=1e-6) and a["score>thr"] == 1.0
    # predicted points all at the crop centre (60, 60); NME_box divides by sqrt(120 * 120) = 120:
    # face a 30 / 120 = 0.25, face b 12 / 120 = 0.1 (its invisible points skipped); mean 0.175
    assert a["NME_box"] == pytest.approx(0.175, abs=1e-5)
    assert a["NME_box_yaw[0,30]"] == pytest.approx(0.25, abs=1e-5)      # face a, yaw 20
    assert a["NME_box_yaw(30,60]"] == pytest.approx(0.1, abs=1e-5)      # face b, yaw -40
    assert np.isnan(a["NME_box_yaw(60,90]"]) and a["NME_box_yawall"] == pytest.approx(0.175, abs=1e-5)
    # every point predicted visible: right for 21 + 11 of the 42 labelled points
    assert a["visibility_acc"] == pytest.approx(32 / 42)
    assert a["MAE_yaw_deg"] == pytest.approx((abs(10 - 20) + abs(10 + 40)) / 2, abs=1e-4)   # 30
    u = res["utkface"]["metrics"]
    assert u["faces"] == 4 and u["gender_acc"] == 0.5 and u["gender_acc_m"] == 1.0 and u["gender_acc_f"] == 0.0
    cached = tmp_path / "out" / "gt_boxes" / "aflw_crops.npz"
    stamp = cached.stat().st_mtime_ns
    again = gbe.evaluate(constant_model, data, tmp_path / "out", ("aflw_crops", "utkface"), CFG, backend="opencv")
    assert cached.stat().st_mtime_ns == stamp                                 # read from the cache, not rewritten
    assert again["aflw_crops"]["metrics"] == pytest.approx(a, nan_ok=True) and again["utkface"]["metrics"] == u
    report = gbe.write_heldout_report(tmp_path / "out", constant_model, res, {}, {}, {"note": "test"}, CFG)
    text = report.read_text()
    assert "| NME_box |" in text and "model.json meta" in text
    assert (tmp_path / "out" / "heldout_ced_NME_box.png").stat().st_size > 1000


def test_cli_bad_data_is_one_line_error(random_model, tmp_path, caplog):
    rc = gbe.main(["--model", str(random_model), "--out", str(tmp_path), "--data", str(tmp_path / "nope"),
                   "--sets", "aflw_crops"])
    assert rc == 2
    assert any("annotations.csv" in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)


def test_benchmarks_limit_keeps_the_first_images():
    """`python -m benchmarks ... --limit N`: detection and scoring both see the first N images."""
    from benchmarks.cli import _parser
    from benchmarks.score import load_ground_truth

    full, imgs = load_ground_truth("ibug", DATA / "helen" / "testset", CFG)
    gt, images = load_ground_truth("ibug", DATA / "helen" / "testset", CFG, limit=3)
    assert len(full) == 330 and len(gt) == 3 and images == imgs[:3]
    assert [r.image_id for r in gt] == [i for i, _ in imgs[:3]]
    assert _parser().parse_args(["ibug", "--data", "x", "--out", "y", "--limit", "3"]).limit == 3


def test_nme_of_a_missed_face_is_nan_not_zero():
    """A face without a prediction (NaN, as score.landmark_errors passes for a missed face) is a
    failure: NaN NME (CED counts it as above every threshold), never an error of 0."""
    from benchmarks.metrics.landmarks import nme

    gt = np.array([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 0.0], [10.0, 0.0]]])
    pred = np.array([[[np.nan, np.nan], [np.nan, np.nan]], [[3.0, 4.0], [10.0, 0.0]]])
    e = nme(pred, gt, np.array([10.0, 10.0]))
    assert np.isnan(e[0]) and e[1] == pytest.approx(0.25)
