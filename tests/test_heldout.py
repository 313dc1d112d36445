"""Held-out evaluation (benchmarks/gt_box_eval.py): the new metric functions on hand-computed
cases, scoring with ground truth as prediction (NME 0, accuracy 1), and the GT-box forward end to
end with a random-weight HyperFace deploy net (real OpenCV DNN backend, real shared data)."""
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gt_box_eval as gbe
from core.config import load_config
from core.face import Face

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CFG = load_config()


# ----------------------------------------------------------------------------- pure metrics
def test_score_summary_hand_computed():
    s = gbe.score_summary(np.array([0.2, 0.6, 0.9, 0.5]), 0.5)
    assert s["score_mean"] == pytest.approx(0.55)
    assert s["score_median"] == pytest.approx(0.55)
    assert s["frac_above"] == pytest.approx(0.5)          # 0.5 itself is not above
    assert s["n"] == 4
    assert np.isnan(gbe.score_summary(np.zeros(0), 0.5)["score_mean"])


def test_visibility_accuracy_hand_computed():
    pred = np.array([[0.9, 0.2, 0.6], [0.4, 0.5, 0.1]])   # >= 0.5: [T F T], [F T F]
    gt = np.array([[1, 0, 0], [1, 1, 0]])
    lab = np.array([[True, True, True], [True, False, True]])
    # agreement [T T F], [F T T]; labelled picks T T F F T -> 3 / 5
    assert gbe.visibility_accuracy(pred, gt, lab, 0.5) == pytest.approx(0.6)
    assert np.isnan(gbe.visibility_accuracy(pred, gt, np.zeros_like(lab), 0.5))


def test_mean_abs_angle_error_wraps_and_skips_unknown():
    # 170 vs -170 is 20 degrees apart (wrapped), 10 vs 40 is 30, the NaN pair is skipped
    assert gbe.mean_abs_angle_error(np.array([170.0, 10.0, np.nan]), np.array([-170.0, 40.0, 5.0])) == pytest.approx(25.0)
    assert np.isnan(gbe.mean_abs_angle_error(np.array([np.nan]), np.array([1.0])))


def test_ellipse_boxes_hand_computed():
    e = np.array([[10.0, 5.0, 0.0, 50.0, 60.0], [10.0, 5.0, np.pi / 2, 50.0, 60.0]])
    np.testing.assert_allclose(gbe.ellipse_boxes(e), [[40, 55, 60, 65], [45, 50, 55, 70]], atol=1e-9)


# ----------------------------------------------------------------------------- perfect predictions
def _perfect(faces):
    lm = np.stack([f.landmarks if f.landmarks is not None else np.full((21, 2), np.nan) for f in faces])
    vis = np.stack([f.visibility if f.visibility is not None else np.zeros(21) for f in faces])
    male = np.array([1.0 if f.gender == "m" else 0.0 for f in faces])
    return gbe.Predictions(np.ones(len(faces)), lm, vis, np.stack([f.pose_deg for f in faces]), male)


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
    assert a["NME_box"] == 0.0 and a["NME_pts_box"] == 0.0 and a["MAE_yaw_deg"] == 0.0
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


def test_evaluate_end_to_end_and_cache(random_model, tmp_path):
    sets = ("aflw_crops", "helen", "utkface", "fddb")
    res = gbe.evaluate(random_model, DATA, tmp_path, sets, CFG, limit=4)
    assert set(res) == set(sets)
    for name in sets:
        m = res[name]["metrics"]
        assert m["faces"] == 4 and 0.0 <= m["score>thr"] <= 1.0 and 0.0 <= m["score_mean"] <= 1.0
        assert (tmp_path / "gt_boxes" / f"{name}.npz").is_file()
    assert np.isfinite(res["aflw_crops"]["metrics"]["NME_box"]) and res["aflw_crops"]["metrics"]["NME_box"] > 0
    assert 0.0 <= res["aflw_crops"]["metrics"]["visibility_acc"] <= 1.0
    assert res["aflw_crops"]["metrics"]["yaw_subset_faces"] == 4
    assert res["helen"]["metrics"]["NME_inter_ocular"] > 0 and res["utkface"]["metrics"]["gender_acc"] in (0, .25, .5, .75, 1)
    again = gbe.evaluate(random_model, DATA, tmp_path, sets, CFG, limit=4)        # from the cache
    assert again["helen"]["metrics"] == res["helen"]["metrics"]
    report = gbe.write_heldout_report(tmp_path, random_model, res, {}, {}, {"note": "test"}, CFG)
    text = report.read_text()
    assert "| NME_inter_ocular |" in text and "model.json meta" in text
    assert (tmp_path / "heldout_ced_NME_box.png").stat().st_size > 1000


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
