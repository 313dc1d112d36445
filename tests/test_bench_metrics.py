"""Hand-computed cases for the benchmark metrics (pure numpy)."""
import numpy as np
import pytest

from benchmarks.metrics.detection import (calibrate_boxes, face_eval_ap, iou_plus1, match_boxes,
                                          min_detection_side, score_summary, voc_ap)
from benchmarks.metrics.fddb import ellipse_box_iou, ellipse_boxes, fddb_roc, match_image, write_roc_files
from benchmarks.metrics.gender import gender_accuracy
from benchmarks.metrics.landmarks import (balanced_yaw_subset, ced, mean_abs_angle_error, nme, nme_per_yaw_group,
                                          normaliser, visibility_accuracy, yaw_group)
from core.config import load_config

CFG = load_config().benchmark


def test_iou_plus1_convention():
    # 10x10 boxes (0..9) shifted by 5: inter 5*10 = 50, union 150
    assert iou_plus1([[0, 0, 9, 9]], [[5, 0, 14, 9]])[0, 0] == pytest.approx(50 / 150)
    assert iou_plus1([[0, 0, 9, 9]], [[20, 20, 29, 29]])[0, 0] == 0.0


def test_voc_ap_envelope():
    # recall 0.5 @ p1, then a FP, then recall 1.0 @ p 2/3: AP = 0.5*1 + 0.5*2/3
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 1 / 3)


def test_face_eval_ap_ignore_and_duplicate():
    assert min_detection_side(CFG.face_eval_min_gt_side) == 21
    gts = {"a": np.array([[0, 0, 99, 99], [200, 200, 219, 219]]),    # second face is 19 px: ignore
           "b": np.array([[0, 0, 59, 59]])}
    dets = {
        "a": (np.array([[0, 0, 99, 99],        # 0.9 TP
                        [1, 1, 99, 99],        # 0.8 duplicate of the same face: FP
                        [200, 200, 222, 222],  # 0.7 matches the ignore face: neither
                        [300, 300, 310, 310]]),  # 0.95 too small (11 px): dropped
              np.array([0.9, 0.8, 0.7, 0.95])),
        "b": (np.array([[0, 0, 59, 59]]), np.array([0.6])),  # 0.6 TP
    }
    r = face_eval_ap(dets, gts, CFG.face_eval_min_gt_side, CFG.eval_iou)
    assert r.n_positives == 2 and r.n_tp == 2 and r.n_fp == 1
    np.testing.assert_allclose(r.recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(r.precision, [1.0, 0.5, 2 / 3])
    assert r.ap == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_ground_truth_as_detections_gives_ap_one_and_calibration_identity():
    gts = {"a": np.array([[10, 10, 89, 109], [200, 50, 259, 119]]), "b": np.array([[5, 5, 44, 54]])}
    dets = {k: (v.astype(float), np.linspace(1, 0.5, len(v))) for k, v in gts.items()}
    assert face_eval_ap(dets, gts, CFG.face_eval_min_gt_side, CFG.eval_iou).ap == pytest.approx(1.0)
    cal, t = calibrate_boxes(dets, gts, CFG.face_eval_min_gt_side, CFG.eval_iou, 2)
    np.testing.assert_allclose(t, [0, 0, 1, 1], atol=1e-12)
    np.testing.assert_allclose(cal["a"][0], gts["a"], atol=1e-9)


def test_calibration_recovers_a_scale():
    gts = {"a": np.array([[0, 0, 100, 100]]), "b": np.array([[50, 50, 150, 150]])}
    dets = {k: (np.array([[v[0, 0] + 5, v[0, 1] + 5, v[0, 2] - 5, v[0, 3] - 5]], float), np.ones(1)) for k, v in gts.items()}
    _, t = calibrate_boxes(dets, gts, CFG.face_eval_min_gt_side, CFG.eval_iou, 1)
    np.testing.assert_allclose(t, [0, 0, 100 / 90, 100 / 90])


def test_calibration_total_reproduces_its_boxes_after_several_rounds():
    """The returned style, applied once to the input boxes, gives the calibrated boxes, also when the
    rounds both shift and scale (a shift of a later round is in units of the scaled box)."""
    from pipeline.postprocess import restyle_boxes
    gts = {"a": np.array([[191.0, 81, 234, 132]]), "b": np.array([[274.0, 182, 358, 283]]),
           "c": np.array([[245.0, 1, 336, 111]])}
    # detections 1.2-1.5x wider and shifted, unequally: `b` (IoU 0.47) is matched only after the first round, so later rounds still move the boxes
    dets = {"a": (np.array([[191.0, 81, 242, 142]]), np.ones(1)), "b": (np.array([[265.0, 168, 388, 316]]), np.ones(1)),
            "c": (np.array([[241.0, 0, 352, 133]]), np.ones(1))}
    cal, total = calibrate_boxes(dets, gts, CFG.face_eval_min_gt_side, CFG.eval_iou, 3)
    for k, (boxes, _) in dets.items():
        np.testing.assert_allclose(restyle_boxes(boxes, total), cal[k][0], atol=1e-9)
    assert abs(total[2] - 1) > 1e-2      # a case that scales


def test_composed_box_styles_equal_applying_both():
    from benchmarks.metrics.detection import compose_box_styles
    from pipeline.postprocess import restyle_boxes
    boxes = np.array([[10.0, 20, 110, 220], [0, 0, 30, 40]])
    first, then = (-0.05, -0.1, 0.63, 0.88), (0.02, 0.01, 0.95, 0.9)
    np.testing.assert_allclose(restyle_boxes(restyle_boxes(boxes, first), then),
                               restyle_boxes(boxes, compose_box_styles(first, then)), atol=1e-9)
    # hand-computed: tx = -0.05 + 0.02 * 0.63, sx = 0.63 * 0.95
    np.testing.assert_allclose(compose_box_styles(first, then), [-0.0374, -0.0912, 0.5985, 0.792], atol=1e-12)


def test_match_boxes_one_to_one():
    gt = np.array([[0, 0, 99, 99], [300, 300, 399, 399]])
    det = np.array([[2, 2, 99, 99], [0, 0, 99, 99], [500, 500, 560, 560]])
    np.testing.assert_array_equal(match_boxes(gt, det, CFG.eval_iou), [1, -1])


def test_fddb_ellipse_box_iou_known_value():
    # a circle of radius 20 vs its bounding square: area pi*400 / 1600 = pi/4 (raster ~ 0.785)
    iou = ellipse_box_iou(np.array([[20, 20, 0.0, 50, 50]]), np.array([[30, 30, 71, 71]]))
    assert iou[0, 0] == pytest.approx(np.pi / 4, abs=0.03)
    # rotation by 90 degrees of an elongated ellipse swaps its axes
    tall = ellipse_box_iou(np.array([[30, 10, np.pi / 2, 50, 50]]), np.array([[40, 20, 61, 81]]))[0, 0]
    wide = ellipse_box_iou(np.array([[30, 10, 0.0, 50, 50]]), np.array([[40, 20, 61, 81]]))[0, 0]
    assert tall > 0.7 and wide < 0.3


def test_fddb_matching_and_roc():
    assert sorted(match_image(np.array([[0.9, 0.8], [0.85, 0.1]]))) == pytest.approx([0.8, 0.85])  # max total weight
    ious = [np.array([[0.9, 0.0, 0.3]]), np.array([[0.6], [0.0]])]
    scores = [np.array([0.9, 0.8, 0.1]), np.array([0.5])]
    roc = fddb_roc(ious, scores, CFG.eval_iou)
    assert roc.n_faces == 3
    np.testing.assert_allclose(roc.thresholds, [0.9, 0.8, 0.5, 0.1])
    np.testing.assert_allclose(roc.fp, [0, 1, 1, 2])
    np.testing.assert_allclose(roc.tpr_discrete, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(roc.tpr_continuous, [0.3, 0.3, 0.5, 0.5])
    assert roc.tpr_at(1) == pytest.approx(2 / 3) and roc.tpr_at(0) == pytest.approx(1 / 3)


def test_fddb_roc_files(tmp_path):
    roc = fddb_roc([np.array([[0.9]])], [np.array([0.7])], CFG.eval_iou)
    d, c = write_roc_files(roc, tmp_path)
    assert d.read_text() == "1.000000 0\n" and c.read_text() == "0.900000 0\n"


def test_ced_small_array():
    np.testing.assert_allclose(ced(np.array([0.01, 0.05, 0.1, np.nan]), np.array([0, 0.05, 0.2])), [0, 0.5, 0.75])


def test_inter_pupil_normaliser_and_nme():
    pts = np.zeros((1, 68, 2))
    pts[0, 36:42] = [[0, 0], [2, 0], [0, 2], [2, 2], [1, 0], [1, 2]]      # mean (1, 1)
    pts[0, 42:48] = pts[0, 36:42] + [10, 0]                                  # mean (11, 1)
    assert normaliser("inter_pupil", pts)[0] == pytest.approx(10.0)
    assert normaliser("box", pts, np.array([[0, 0, 40, 90]]))[0] == pytest.approx(60.0)
    gt = np.array([[[0, 0], [10, 0], [np.nan, np.nan]]])
    pred = np.array([[[3, 4], [10, 0], [100, 100]]])                           # errors 5, 0, skipped
    assert nme(pred, gt, np.array([10.0]))[0] == pytest.approx(0.25)


def test_inter_ocular_normaliser_is_the_outer_eye_corner_distance():
    """iBUG 37 and 46 (1-based): the outer corners, not the eye centres or the inner corners."""
    pts = np.zeros((2, 68, 2))
    pts[:, 36:48] = 50.0                       # every other eye point far from the outer corners
    pts[0, 36], pts[0, 45] = [10, 20], [40, 60]  # 3-4-5 triangle scaled by 10: distance 50
    pts[1, 36], pts[1, 45] = [5, 5], [5, 17]     # vertical: distance 12
    pts[1, 39], pts[1, 42] = [0, 0], [100, 0]    # inner corners (40, 43) do not count
    np.testing.assert_allclose(normaliser("inter_ocular", pts), [50.0, 12.0])
    gt = pts[:, :2].copy()
    pred = gt + np.array([[[6.0, 8.0]], [[0.0, 3.0]]])                        # errors 10 and 3 px
    np.testing.assert_allclose(nme(pred, gt, normaliser("inter_ocular", pts)), [10 / 50, 3 / 12])


def test_visibility_accuracy_hand_computed():
    pred = np.array([[0.9, 0.2, 0.6], [0.4, 0.5, 0.1]])   # >= 0.5: [T F T], [F T F]
    gt = np.array([[1, 0, 0], [1, 1, 0]])
    lab = np.array([[True, True, True], [True, False, True]])
    # agreement [T T F], [F T T]; labelled picks T T F F T -> 3 / 5
    assert visibility_accuracy(pred, gt, lab, 0.5) == pytest.approx(0.6)
    assert np.isnan(visibility_accuracy(pred, gt, np.zeros_like(lab), 0.5))


def test_mean_abs_angle_error_wraps_and_skips_unknown():
    # 170 vs -170 is 20 degrees apart (wrapped), 10 vs 40 is 30, the NaN pair is skipped
    assert mean_abs_angle_error(np.array([170.0, 10.0, np.nan]), np.array([-170.0, 40.0, 5.0])) == pytest.approx(25.0)
    assert np.isnan(mean_abs_angle_error(np.array([np.nan]), np.array([1.0])))


def test_score_summary_hand_computed():
    s = score_summary(np.array([0.2, 0.6, 0.9, 0.5]), 0.5)
    assert s["score_mean"] == pytest.approx(0.55)
    assert s["score_median"] == pytest.approx(0.55)
    assert s["frac_above"] == pytest.approx(0.5)          # 0.5 itself is not above
    assert s["n"] == 4
    assert np.isnan(score_summary(np.zeros(0), 0.5)["score_mean"])


def test_ellipse_boxes_hand_computed():
    e = np.array([[10.0, 5.0, 0.0, 50.0, 60.0], [10.0, 5.0, np.pi / 2, 50.0, 60.0]])
    np.testing.assert_allclose(ellipse_boxes(e), [[40, 55, 60, 65], [45, 50, 55, 70]], atol=1e-9)


def test_nme_per_yaw_group_and_balanced_subset():
    edges = CFG.yaw_group_edges
    yaw = np.array([0, -30, 31, -59, 60.5, 90, 95])
    np.testing.assert_array_equal(yaw_group(yaw, edges), [0, 0, 1, 1, 2, 2, -1])
    err = np.array([0.1, 0.3, 0.2, np.nan, 0.4, 0.6, 9.0])
    g = nme_per_yaw_group(err, yaw, edges)
    assert g["[0,30]"] == pytest.approx(0.2) and g["(30,60]"] == pytest.approx(0.2) and g["(60,90]"] == pytest.approx(0.5)
    assert g["all"] == pytest.approx(0.3)
    rng_yaw = np.concatenate([np.full(10, 5.0), np.full(10, 45.0), np.full(10, -75.0)])
    idx = balanced_yaw_subset(rng_yaw, edges, 9, 0)
    assert len(idx) == 9 and np.bincount(yaw_group(rng_yaw[idx], edges)).tolist() == [3, 3, 3]
    np.testing.assert_array_equal(idx, balanced_yaw_subset(rng_yaw, edges, 9, 0))


def test_gender_accuracy():
    r = gender_accuracy(np.array(["m", "f", "", "m"], dtype=object), np.array(["m", "m", "f", "m"], dtype=object))
    assert r["accuracy"] == pytest.approx(0.5) and r["accuracy_detected"] == pytest.approx(2 / 3) and r["coverage"] == 0.75


def test_miss_causes_hand_made_image():
    from benchmarks.metrics.misses import miss_causes

    # faces A, B, C, D (100 x 100 with the +1 convention) and E, a 10-px face that is ignored
    faces = np.array([[0, 0, 99, 99], [200, 0, 299, 99], [400, 0, 499, 99], [600, 0, 699, 99], [800, 0, 809, 9]])
    ignored = np.array([False, False, False, False, True])
    # the net saw A (0.9), B (0.2: below), C (0.95: above, yet no detection keeps it); nothing on D
    regions = np.array([[0, 0, 99, 99], [200, 0, 299, 99], [400, 0, 499, 99]])
    region_scores = np.array([0.9, 0.2, 0.95])
    dets = np.array([[0, 0, 99, 99],         # 0.90 matches A
                     [5, 5, 104, 104],       # 0.80 A again: duplicate
                     [400, 60, 499, 159],    # 0.70 IoU with C = 4000 / 16000 = 0.25: near a face
                     [1000, 1000, 1099, 1099],  # 0.85 background
                     [800, 0, 809, 9],       # 0.99 the ignored face: neither
                     [200, 0, 299, 99]])     # 0.30 on B but under the threshold: not a detection
    scores = np.array([0.9, 0.8, 0.7, 0.85, 0.99, 0.3])
    face_causes, fp_causes = miss_causes(faces, ignored, regions, region_scores, dets, scores, threshold=0.5)
    assert face_causes == ["found", "scored below threshold", "lost after scoring", "no proposal"]
    assert fp_causes == ["background", "duplicate", "near a face"]
    # a threshold above every score: nothing found, no false positive; A was scored only below 0.999
    face_causes, fp_causes = miss_causes(faces, ignored, regions, region_scores, dets, scores, threshold=0.999)
    assert face_causes == ["scored below threshold"] * 3 + ["no proposal"] and fp_causes == []
    # no faces at all: every detection at the threshold is background
    assert miss_causes(np.zeros((0, 4)), np.zeros(0, bool), regions, region_scores, dets, scores, 0.5) == (
        [], ["background"] * 5)
