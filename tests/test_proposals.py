"""Proposals (issue 12 item 3, issue 13 item 3, issue 14): the face filter on hand-made boxes, the
near-duplicate merge, the canonical order, one selective search for data_prep and the pipeline, the
IRP seed suppression, and the proposal-recall metric on a hand-computed case."""
import dataclasses

import cv2
import numpy as np
import pytest

from benchmarks.metrics.proposals import best_iou_at_counts, proposal_recall
from core.config import REPO_ROOT, load_config
from core.proposals import (aspect_slack, can_hold_face, canonical_order, finish_proposals, merge_near_duplicates,
                            raw_selective_search, selective_search)
from core.config import DATA_ROOT  # noqa: E402

CFG = load_config()
DATA = DATA_ROOT
PHOTO = DATA / "afw_sample" / "1224897301.jpg"
needs_photo = pytest.mark.skipif(not PHOTO.is_file(), reason="shared data not here")


def _ss(**changes):
    return dataclasses.replace(CFG.selective_search, **changes)


def test_aspect_slack_is_the_iou_bound():
    assert aspect_slack(0.5) == pytest.approx(2.25)
    # a 1.5x wide, 1/1.5 high centred region (ratio factor 2.25) reaches IoU 0.5 with its face exactly:
    # inter = w * h / 1.5, union = w * h + w * h - inter
    face = np.array([[0, 0, 90, 90.0]])
    region = np.array([[-22.5, 15, 112.5, 75.0]])
    from core.geometry import box_iou
    assert box_iou(face, region)[0, 0] == pytest.approx(0.5)


def test_can_hold_face_keeps_and_drops_hand_made_boxes():
    ss = _ss(match_iou=0.5, min_face_side=30.0, face_aspect_min=0.5, face_aspect_max=2.0, min_box_side=10)
    # ratio bounds 0.5 / 2.25 = 0.2222 and 2 * 2.25 = 4.5; side >= 15; area >= 450
    boxes = np.array([
        [0, 0, 30, 30],      # a 30 px square: kept
        [0, 0, 22, 22],      # area 484 >= 450: kept (IoU 0.538 with a centred 30 px face)
        [0, 0, 21, 21],      # area 441 < 450: dropped
        [0, 0, 14, 40],      # side 14 < 15: dropped
        [0, 0, 90, 20],      # ratio 4.5: kept (the bound itself)
        [0, 0, 91, 20],      # ratio 4.55: dropped
        [0, 0, 20, 90],      # ratio 0.2222 = 0.5 / 2.25: kept
        [0, 0, 20, 91],      # ratio 0.2198: dropped
        [0, 0, 9, 300],      # under min_box_side: dropped
    ], dtype=np.float64)
    assert can_hold_face(boxes, ss).tolist() == [True, True, False, False, True, False, True, False, False]
    # match_iou 0 turns the face filter off: only min_box_side counts
    assert can_hold_face(boxes, dataclasses.replace(ss, match_iou=0.0)).tolist() == [True] * 8 + [False]
    # the config's own bounds: 0.33 / 2.25 and 1.8 * 2.25
    own = can_hold_face(np.array([[0, 0, 40, 100.0], [0, 0, 40, 300.0], [0, 0, 160, 40.0], [0, 0, 170, 40.0]]),
                        CFG.selective_search)
    assert own.tolist() == [True, False, True, False]


def test_merge_near_duplicates_and_canonical_order():
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 96], [50, 50, 150, 150], [1, 0, 100, 100]], dtype=np.float64)
    # IoU: 0-1 0.96, 0-3 0.99, 1-3 9504 / 9996 = 0.9508; box 2 overlaps nothing by >= 0.9
    order = canonical_order(boxes, 0.9)
    assert order.tolist() == [1, 0, 3, 2]   # three neighbours each (itself included), then x1, y1, x2, y2
    kept = merge_near_duplicates(boxes[order], 0.9)
    assert kept.tolist() == [0, 3]          # box 1 absorbs boxes 0 and 3
    assert merge_near_duplicates(boxes, 1.0).tolist() == [0, 1, 2, 3]
    # the order depends on the set only
    perm = [2, 3, 0, 1]
    assert boxes[perm][canonical_order(boxes[perm], 0.9)].tolist() == boxes[order].tolist()


def test_finish_proposals_rounds_clips_and_is_order_free():
    raw = np.array([[-5.4, 10.6, 60.2, 80.0], [10, 10, 70, 90], [10.2, 9.8, 70.4, 90.1], [0, 0, 5, 300]])
    ss = _ss(merge_iou=0.9, max_proposals=10)
    out = finish_proposals(raw, 64, 100, ss)
    assert out.tolist() == [[0, 11, 60, 80], [10, 10, 64, 90]]  # rounded, clipped, exact duplicate once, thin box gone
    assert finish_proposals(raw[::-1], 64, 100, ss).tolist() == out.tolist()


def _photo():
    return cv2.imread(str(PHOTO))


@needs_photo
def test_selective_search_same_boxes_same_order_on_two_calls():
    image = _photo()
    first, second = selective_search(image, CFG.selective_search), selective_search(image, CFG.selective_search)
    assert len(first) > 100
    assert first.tolist() == second.tolist()
    assert (first == np.round(first)).all() and first.dtype == np.float64
    # OpenCV alone: the same set, but (as issue 13 found) not necessarily the same order
    a, b = raw_selective_search(image, CFG.selective_search), raw_selective_search(image, CFG.selective_search)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))


@needs_photo
def test_fast_mode_segmentation_k_comes_from_the_config():
    """fast_base_k / fast_inc_k reach OpenCV: 150 / 150 gives exactly OpenCV's default fast mode (as a
    set: OpenCV's order varies), and the shipped 75 / 75 (finer segments) more boxes than that."""
    image = cv2.imread(str(DATA / "afw_sample" / "1004109301.jpg"))  # 600 x 800: resized for SS
    scale = CFG.selective_search.max_side / max(image.shape[:2])
    assert scale < 1
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(small)
    ss.switchToSelectiveSearchFast()
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)
    opencv = np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]]) / scale
    default_k = raw_selective_search(image, _ss(fast_base_k=150, fast_inc_k=150), "fast")
    assert sorted(map(tuple, default_k.round(6).tolist())) == sorted(map(tuple, opencv.round(6).tolist()))
    assert (CFG.selective_search.fast_base_k, CFG.selective_search.fast_inc_k) == (75, 75)
    assert len(raw_selective_search(image, CFG.selective_search, "fast")) > 1.2 * len(default_k)


@needs_photo
def test_data_prep_and_pipeline_share_one_selective_search(tmp_path):
    from data_prep.regions import cached_proposals, selective_search as data_prep_ss
    from pipeline.proposals import selective_search as pipeline_ss

    image = _photo()
    expected = pipeline_ss(image, CFG.selective_search)
    assert data_prep_ss(image, CFG.selective_search).tolist() == expected.tolist()
    path = PHOTO
    assert cached_proposals(image, path, tmp_path, CFG.selective_search).tolist() == expected.tolist()
    assert cached_proposals(image, path, tmp_path, CFG.selective_search).tolist() == expected.tolist()  # from the cache
    # another setting is another cache file
    other = dataclasses.replace(CFG.selective_search, merge_iou=1.0)
    assert len(cached_proposals(image, path, tmp_path, other)) > len(expected)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_proposal_recall_hand_computed():
    faces = [np.array([[0, 0, 40, 40], [100, 100, 200, 200], [0, 0, 10, 10]]),  # A (size 40), B (100), C ignored
             np.array([[0, 0, 300, 300]]),                                        # D (300)
             np.array([[0, 0, 50, 50]])]                                          # E (50), no proposals
    proposals = [np.array([[100, 100, 160, 200], [0, 0, 40, 40], [100, 100, 190, 200]]),  # IoU B .6, A 1, B .9
                 np.array([[0, 0, 150, 300], [0, 0, 300, 210], [0, 0, 300, 240]]),       # IoU D .5, .7, .8
                 np.zeros((0, 4))]
    assert best_iou_at_counts(proposals[1], faces[1], [0, 1, 2, 3, 9]).ravel().tolist() == pytest.approx(
        [0, 0.5, 0.7, 0.8, 0.8])
    r = proposal_recall(proposals, faces, [1, 2, 3, 10])
    assert r["bins"] == ["30-60", "60-120", ">120", "all"]
    assert r["n_faces"] == {"30-60": 2, "60-120": 1, ">120": 1, "all": 4}
    assert r["recall"][0.5] == {"30-60": [0, 0.5, 0.5, 0.5], "60-120": [1, 1, 1, 1], ">120": [0, 1, 1, 1],
                                "all": [0.25, 0.75, 0.75, 0.75]}   # IoU exactly 0.5 does not count
    assert r["recall"][0.7] == {"30-60": [0, 0.5, 0.5, 0.5], "60-120": [0, 0, 1, 1], ">120": [0, 0, 1, 1],
                                "all": [0, 0.25, 0.75, 0.75]}      # nor exactly 0.7


def test_prior_coverage_of_the_ssd_net_hand_made(tmp_path):
    """One face equal to a prior of the SSD net (conv5_1: step 32, min size 64; cell row 1, column 2 is
    centred at (80, 48)) and one 30x300 face that no prior overlaps by IoU > 0.5 (the best, the 0.5
    wide/tall prior of area 128^2, 90.5 x 181, shares at most 30 x 181 of it: IoU <= 0.27)."""
    from benchmarks.proposals import prior_coverage

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((512, 512, 3), np.uint8))
    faces = np.array([[48.0, 16.0, 112.0, 80.0], [200.0, 100.0, 230.0, 400.0]])
    r = prior_coverage(REPO_ROOT / "prototxt" / "fast_hyperface_ssd" / "deploy.prototxt", [("p", photo, faces)])
    assert r["n_faces"]["all"] == 2
    assert r["recall"][0.5]["all"][0] == 0.5 and r["recall"][0.7]["all"][0] == 0.5
    assert r["n_faces"]["60-120"] == 2  # sizes sqrt(64 * 64) = 64 and sqrt(30 * 300) = 94.9
