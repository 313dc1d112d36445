"""Pure-function tests of the pipeline's geometry, decoding (eq. 8), IRP (Algorithm 1), L-NMS
(Algorithm 2) and the NMS baseline, on hand-made network outputs with hand-computed answers."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from core import net_io
from core.aflw21 import NUM_POINTS
from core.config import load_config
from pipeline.errors import GeometryError
from core.geometry import apply_bbox_deltas, bbox_targets, box_iou
from pipeline.geometry import box_from_landmarks, make_batch, mean_shape, nms, shape_for_yaw, MEAN_SHAPE_PATH
from pipeline.postprocess import Regions, decode_outputs, iterative_region_proposals, landmark_nms, nms_faces
from pipeline.proposals import scored_ssd_boxes, ssd_boxes

TEST = load_config().test


def shape_in_box(x1, y1, side, yaw=None):
    return shape_for_yaw(yaw) * side + np.array([x1, y1])


def region(box, score, pose=(0.0, 0.0, 0.0), gender=0.5, vis=1.0):
    """A region whose landmarks are the mean shape of its yaw in its box (the test-time fit's model)."""
    x1, y1, x2, _ = box
    return Regions(np.array([box], float), np.array([score]), shape_in_box(x1, y1, x2 - x1, pose[2])[None],
                   np.full((1, NUM_POINTS), vis), np.array([pose], float), np.array([gender]), np.full((1, 4), np.nan))


def test_mean_shape_file_has_provenance_and_sane_layout():
    doc = json.loads(MEAN_SHAPE_PATH.read_text())
    assert doc["provenance"]["faces"] > 1000
    ms = mean_shape()
    assert ms.shape == (21, 2)
    assert ms[6, 0] < ms[11, 0]            # LeftEyeLeftCorner left of RightEyeRightCorner (image sides)
    assert ms[0, 1] < ms[14, 1] < ms[20, 1]  # brow above nose tip above chin
    assert ((ms > 0) & (ms < 1)).all()


def test_mean_shape_file_is_the_train_split_mean_of_the_reader(shared_data):
    """pipeline/mean_shape_aflw21.json is what make_mean_shape computes now: aflw_crops train split
    only (data_prep's reader), so the test-time face-box fit has seen no held-out face."""
    from pipeline.make_mean_shape import compute_mean_shape

    mean, n = compute_mean_shape(shared_data / "aflw_crops")
    doc = json.loads(MEAN_SHAPE_PATH.read_text())
    assert n == doc["provenance"]["faces"] == 1429
    np.testing.assert_allclose(mean_shape(), mean, atol=5e-7)


def test_box_from_landmarks_on_the_mean_shape_returns_the_scaled_unit_box():
    np.testing.assert_allclose(box_from_landmarks(shape_in_box(30, 40, 200)), [30, 40, 230, 240], atol=1e-9)
    # In-plane rotation about the box centre keeps the (square) box.
    t = np.radians(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centre = np.array([130.0, 140.0])
    pts = (shape_in_box(30, 40, 200) - centre) @ rot.T + centre
    np.testing.assert_allclose(box_from_landmarks(pts), [30, 40, 230, 240], atol=1e-9)


def test_pose_aware_fit_returns_the_box_of_a_profile_whose_points_are_its_yaw_shape():
    """A profile (yaw 60: points on the far side missing from the shape) whose visible points are the
    yaw-60 mean shape in a box gives back that box exactly; the frontal shape does not."""
    shape = shape_for_yaw(60.0)
    seen = np.isfinite(shape).all(axis=1)
    assert 15 <= seen.sum() < 21                               # the far ear is never seen at 60 degrees
    same = lambda a, b: np.array_equal(a, b, equal_nan=True)  # noqa: E731
    assert same(shape_for_yaw(62.4), shape) and same(shape_for_yaw(500.0), shape_for_yaw(100.0))  # nearest, clamped
    assert not same(shape_for_yaw(57.4), shape)
    assert shape_for_yaw(None) is mean_shape() and shape_for_yaw(float("nan")) is mean_shape()
    pts = shape * 200 + np.array([30.0, 40.0])
    np.testing.assert_allclose(box_from_landmarks(pts, seen, yaw_deg=60.0), [30, 40, 230, 240], atol=1e-9)
    frontal = box_from_landmarks(np.where(seen[:, None], pts, np.nan), seen)
    assert box_iou(frontal[None], np.array([[30, 40, 230, 240.0]]))[0, 0] < 0.8
    # L-NMS and IRP take the yaw from the regions' predicted pose; pose_aware_face_box False: frontal
    r = region([30, 40, 230, 240], 0.9, pose=(0, 0, 60))
    np.testing.assert_allclose(landmark_nms(r, TEST)[0].box, [30, 40, 230, 240], atol=1e-9)
    old = landmark_nms(r, dataclasses.replace(TEST, pose_aware_face_box=False))[0].box
    np.testing.assert_allclose(old, frontal, atol=1e-9)


def test_yaw_shapes_fit_real_profiles_better_than_the_frontal_shape(shared_data):
    """aflw_crops test split (no face of it in the shapes), true points and yaw: the fitted box's IoU
    with the face box, |yaw| 60-90 (measured: 0.57 frontal, 0.87 by yaw), and the shapes file is
    what make_mean_shape computes from the train split."""
    from data_prep.readers import read_aflw_crops
    from pipeline.geometry import yaw_mean_shapes
    from pipeline.make_mean_shape import compute_yaw_shapes

    centres, shapes, _ = compute_yaw_shapes(shared_data / "aflw_crops")
    np.testing.assert_allclose(yaw_mean_shapes()[0], centres)
    np.testing.assert_allclose(yaw_mean_shapes()[1], shapes, atol=5e-7)
    faces = [f for r in read_aflw_crops(shared_data / "aflw_crops", split="test") for f in r.faces
             if 60 <= abs(f.pose_deg[2]) < 90]
    assert len(faces) > 100
    iou = {"frontal": [], "yaw": []}
    for f in faces:
        seen = np.isfinite(f.landmarks).all(axis=1)
        iou["frontal"].append(box_iou(box_from_landmarks(f.landmarks, seen)[None], f.box[None])[0, 0])
        iou["yaw"].append(box_iou(box_from_landmarks(f.landmarks, seen, f.pose_deg[2])[None], f.box[None])[0, 0])
    assert np.mean(iou["frontal"]) < 0.62 and np.mean(iou["yaw"]) > 0.84


def test_face_box_unchanged_by_the_scikit_image_fit(shared_data):
    """fit_similarity is scikit-image's SimilarityTransform now; the face boxes of real faces are the
    ones the former closed-form Umeyama fit gave (values recorded from it, same mean shape)."""
    from data_prep.readers import read_300w, read_aflw_crops

    recs = read_aflw_crops(shared_data / "aflw_crops", split="test", limit=3) + \
        read_300w(shared_data / "helen", split="test", limit=1)
    boxes = [box_from_landmarks(r.faces[0].landmarks, r.faces[0].visibility) for r in recs]
    assert [r.image_id for r in recs] == ["image04389", "image04395", "image04447", "296814969_3"]
    np.testing.assert_allclose(boxes, [[-12.4128, -6.4071, 116.2833, 122.2889], [16.1747, 3.1002, 146.4413, 133.3668],
                                       [-8.3166, 7.0440, 115.9627, 131.3233], [149.7821, 132.4735, 398.9814, 381.6728]],
                               atol=1e-4)


def test_box_from_landmarks_ignores_invisible_and_nan_points():
    pts = shape_in_box(0, 0, 100)
    visible = np.ones(21, bool)
    pts[[3, 12]] = [[999, -999], [5000, 5000]]
    visible[[3, 12]] = False
    pts[20] = np.nan
    np.testing.assert_allclose(box_from_landmarks(pts, visible), [0, 0, 100, 100], atol=1e-9)
    with pytest.raises(GeometryError):
        box_from_landmarks(np.full((21, 2), np.nan))


def test_decode_eq8_pose_degrees_and_scores():
    box = np.array([[10.0, 20.0, 110.0, 220.0]])  # w 100, h 200, centre (60, 120)
    ab = np.zeros((1, 42))
    ab[0, 0], ab[0, 1] = 0.1, -0.25      # point 1: x = 0.1*100 + 60, y = -0.25*200 + 120
    ab[0, 40], ab[0, 41] = -0.5, 0.5     # point 21: the box's bottom-left corner
    out = {net_io.DETECTION_PROB: np.array([[0.3, 0.7]]), net_io.LANDMARKS: ab,
           net_io.VISIBILITY: np.linspace(0, 1, 21)[None], net_io.POSE: np.array([[np.pi / 2, 0, -np.pi / 4]]),
           net_io.GENDER_PROB: np.array([[0.2, 0.8]])}
    r = decode_outputs(out, box)
    np.testing.assert_allclose(r.landmarks[0, 0], [70, 70])
    np.testing.assert_allclose(r.landmarks[0, 20], [10, 220])
    np.testing.assert_allclose(r.landmarks[0, 1], [60, 120])
    np.testing.assert_allclose(r.pose_deg[0], [90, 0, -45])
    assert r.scores[0] == pytest.approx(0.7) and r.gender_prob_male[0] == pytest.approx(0.8)
    assert np.isnan(r.bbox_deltas).all()  # this net has no box regression


def test_ibug68_head_decoded_by_eq8_and_carried_to_the_faces_and_their_json():
    """A net with the iBUG-68 head (prototxt/hyperface_ibug68): its 136 outputs decode by eq. 8 like the
    21 points; L-NMS gives each face the median of its cluster's 68 points, plain NMS the kept region's;
    the JSON carries them (schema-valid) and reads back; a 21-point net's faces have none."""
    import jsonschema
    from core.face import Face
    from pipeline.detector import scale_faces
    import pipeline
    schema = json.loads((Path(pipeline.__file__).parent / "face_schema.json").read_text())
    boxes = np.array([[0.0, 0.0, 100.0, 100.0], [10.0, 0.0, 110.0, 100.0], [20.0, 0.0, 120.0, 100.0]])
    ab = np.zeros((3, 42))
    ab[:] = (mean_shape() - 0.5).ravel()                     # the mean shape in each box
    ab68 = np.zeros((3, 136))
    ab68[:, 0], ab68[:, 1] = [0.1, 0.2, 0.3], -0.25            # point 1: x = a*100 + centre, y = -0.25*100 + 50
    out = {net_io.DETECTION_PROB: np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]), net_io.LANDMARKS: ab,
           net_io.VISIBILITY: np.ones((3, 21)), net_io.POSE: np.zeros((3, 3)), net_io.GENDER_PROB: np.full((3, 2), 0.5),
           net_io.LANDMARKS68: ab68}
    r = decode_outputs(out, boxes)
    np.testing.assert_allclose(r.landmarks68[:, 0], [[60, 25], [80, 25], [100, 25]])
    np.testing.assert_allclose(r.landmarks68[:, 1], [[50, 50], [60, 50], [70, 50]])  # a = b = 0: the box centre
    faces = landmark_nms(r, TEST)                              # one cluster of the three: median of the 68
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].landmarks68[:2], [[80, 25], [60, 50]])
    np.testing.assert_allclose(nms_faces(r, dataclasses.replace(TEST, nms_iou=0.95))[1].landmarks68[0], [80, 25])
    doc = faces[0].to_dict()
    assert len(doc["landmarks68"]) == 68
    jsonschema.validate({"image": "x.jpg", "width": 200, "height": 100, "faces": [doc]},
                        {**schema, "required": ["faces"]})
    with pytest.raises(jsonschema.ValidationError):                # the schema does check the 68
        jsonschema.validate({"faces": [{**doc, "landmarks68": doc["landmarks68"][:67]}]}, {**schema, "required": ["faces"]})
    np.testing.assert_allclose(Face.from_dict(doc).landmarks68, faces[0].landmarks68)
    np.testing.assert_allclose(scale_faces([Face.from_dict(doc)], 2.0)[0].landmarks68[0], [160, 50])
    del out[net_io.LANDMARKS68]
    plain = landmark_nms(decode_outputs(out, boxes), TEST)[0]
    assert plain.landmarks68 is None and "landmarks68" not in plain.to_dict()


def test_irp_adds_boxes_from_predicted_landmarks():
    calls = []

    def evaluate(boxes):  # a "net" that sees every face 10 px right of its box, and faces only left of x=200
        calls.append(len(boxes))
        parts = [region(b + [10, 0, 10, 0], 0.9 if b[0] < 200 else 0.2) for b in boxes]
        out = Regions.concat(parts)
        out.boxes = np.asarray(boxes, float)
        return out

    proposals = np.array([[0, 0, 100, 100], [300, 0, 400, 100.0]])
    one = iterative_region_proposals(proposals, evaluate, TEST, iterations=1)
    np.testing.assert_allclose(one.boxes, [[0, 0, 100, 100], [10, 0, 110, 100]], atol=1e-9)
    assert calls == [2, 1]
    two = iterative_region_proposals(proposals, evaluate, TEST, iterations=2)
    np.testing.assert_allclose(two.boxes[:, 0], [0, 10, 20], atol=1e-9)
    assert len(iterative_region_proposals(proposals, evaluate, TEST, iterations=0)) == 1


def lnms_case():
    return Regions.concat([
        region([0, 0, 100, 100], 0.9, pose=(10, 0, 0), gender=0.8),  # one yaw: one mean shape for the box fits
        region([5, 0, 105, 100], 0.8, pose=(20, 0, 0), gender=0.6),
        region([10, 0, 110, 100], 0.7, pose=(30, 0, 0), gender=0.4),
        region([300, 300, 350, 350], 0.6, pose=(0, 5, 0), gender=0.1),
    ])


def test_landmark_nms_medians_of_top_k():
    faces = landmark_nms(lnms_case(), TEST)  # k = 5: all three overlapping boxes
    assert [f.score for f in faces] == [0.9, 0.6]
    np.testing.assert_allclose(faces[0].box, [5, 0, 105, 100], atol=1e-9)
    np.testing.assert_allclose(faces[0].landmarks, shape_in_box(5, 0, 100, 0.0), atol=1e-9)
    assert faces[0].pose_deg[0] == pytest.approx(20) and faces[0].gender_prob_male == pytest.approx(0.6)
    assert faces[0].visible.all()
    np.testing.assert_allclose(faces[1].box, [300, 300, 350, 350], atol=1e-9)
    assert faces[1].gender == "f"
    top2 = landmark_nms(lnms_case(), dataclasses.replace(TEST, lnms_top_k=2))  # median of 2 = mean of A and B
    np.testing.assert_allclose(top2[0].box, [2.5, 0, 102.5, 100], atol=1e-9)
    assert top2[0].pose_deg[0] == pytest.approx(15) and top2[0].gender_prob_male == pytest.approx(0.7)


def test_landmark_nms_fuses_the_ssd_boxes_of_its_cluster():
    r = lnms_case()
    r.boxes[0], r.boxes[1] = [0, 10, 100, 90], [10, 10, 110, 90]  # A and B: SSD proposals, boxes unlike their landmarks
    from_ssd = np.array([True, True, False, False])
    faces = landmark_nms(r, TEST, from_ssd)  # ssd_box_weight 0.5: median of A, B = [5, 10, 105, 90]
    np.testing.assert_allclose(faces[0].box, [5, 5, 105, 95], atol=1e-9)
    np.testing.assert_allclose(faces[1].box, [300, 300, 350, 350], atol=1e-9)  # D: no SSD box, landmark box
    quarter = landmark_nms(r, dataclasses.replace(TEST, ssd_box_weight=0.25), from_ssd)
    np.testing.assert_allclose(quarter[0].box, [5, 2.5, 105, 97.5], atol=1e-9)
    top1 = landmark_nms(r, dataclasses.replace(TEST, lnms_top_k=1), from_ssd)  # A alone: [0,10,100,90] and [0,0,100,100]
    np.testing.assert_allclose(top1[0].box, [0, 5, 100, 95], atol=1e-9)
    # the landmark box is styled first (shift 0.1 box widths right, half as wide), the SSD box is not
    styled = landmark_nms(r, dataclasses.replace(TEST, box_style=(0.1, 0.0, 0.5, 1.0)), from_ssd)
    np.testing.assert_allclose(styled[0].box, [22.5, 5, 97.5, 95], atol=1e-9)
    np.testing.assert_allclose(styled[1].box, [317.5, 300, 342.5, 350], atol=1e-9)
    # weight 0, or no SSD region: the paper's landmark box
    for none in (landmark_nms(r, dataclasses.replace(TEST, ssd_box_weight=0.0), from_ssd), landmark_nms(r, TEST)):
        np.testing.assert_allclose(none[0].box, [5, 0, 105, 100], atol=1e-9)


def test_landmark_nms_drops_a_face_whose_output_box_lands_on_a_better_face():
    # A and B: landmark boxes 60 px apart (IoU 40/160 = 0.25 < lnms_iou 0.5), so Algorithm 2 keeps both;
    # their SSD boxes are the same face box, and with ssd_box_weight 0.5 the output boxes are
    # [20, 0, 120, 100] and [50, 0, 150, 100]: IoU 70/130 = 0.54 > 0.5, one face, the better one
    r = Regions.concat([region([0, 0, 100, 100], 0.9), region([60, 0, 160, 100], 0.8)])
    r.boxes[:] = [40, 0, 140, 100]
    from_ssd = np.array([True, True])
    faces = landmark_nms(r, TEST, from_ssd)
    assert [f.score for f in faces] == [0.9]
    np.testing.assert_allclose(faces[0].box, [20, 0, 120, 100], atol=1e-9)
    both = landmark_nms(r, dataclasses.replace(TEST, lnms_suppress_output=False), from_ssd)
    assert [f.score for f in both] == [0.9, 0.8]
    np.testing.assert_allclose(both[1].box, [50, 0, 150, 100], atol=1e-9)
    # output boxes that overlap by no more than lnms_iou (IoU 0.54 <= 0.6) all stay
    assert len(landmark_nms(r, dataclasses.replace(TEST, lnms_iou=0.6), from_ssd)) == 2


def test_rows_in_finds_the_proposals_among_regions():
    from pipeline.detector import rows_in

    ssd = np.array([[0, 0, 10, 10], [5, 5, 20, 20.0]])
    regions = np.array([[5, 5, 20, 20], [5, 5, 20, 20.000001], [0, 0, 10, 10], [1, 1, 2, 2]])
    assert rows_in(regions, ssd).tolist() == [True, False, True, False]
    assert rows_in(regions, np.zeros((0, 4))).tolist() == [False] * 4


def test_landmark_nms_suppression_threshold():
    # IoU of A and C is 90/110 = 0.818: a threshold above it keeps C as its own face.
    faces = landmark_nms(lnms_case(), dataclasses.replace(TEST, lnms_iou=0.85, lnms_suppress_output=False))
    assert [f.score for f in faces] == [0.9, 0.7, 0.6]
    np.testing.assert_allclose(faces[1].box, [7.5, 0, 107.5, 100], atol=1e-9)  # median of C and B
    # ... but C's output box overlaps A's ([2.5, 0, 102.5, 100], median of A and B) by IoU 0.905 > 0.85
    assert [f.score for f in landmark_nms(lnms_case(), dataclasses.replace(TEST, lnms_iou=0.85))] == [0.9, 0.6]


def test_nms_and_box_regression_baseline():
    r = lnms_case()
    r.bbox_deltas = np.zeros((4, 4))
    r.bbox_deltas[3] = [0.1, 0.0, np.log(2), 0.0]  # D: shift 5 px right, double width
    faces = nms_faces(r, TEST)  # nms_iou 0.3: A suppresses B and C
    assert [f.score for f in faces] == [0.9, 0.6]
    np.testing.assert_allclose(faces[1].box, [280, 300, 380, 350])
    b = np.array([[0, 0, 10, 10.0]])
    g = np.array([[2, 3, 14, 12.0]])
    np.testing.assert_allclose(bbox_targets(b, g), [[0.3, 0.25, np.log(1.2), np.log(0.9)]])
    np.testing.assert_allclose(apply_bbox_deltas(b, bbox_targets(b, g)), g)


def test_iou_and_nms_hand_cases():
    a = np.array([[0, 0, 10, 10.0]])
    b = np.array([[5, 0, 15, 10.0], [20, 20, 30, 30.0]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0]])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]])
    assert nms(boxes, [0.7, 0.8, 0.1], 0.5).tolist() == [1, 2]
    assert nms(boxes, [0.7, 0.8, 0.1], 0.5, limit=1).tolist() == [1]
    assert nms(boxes, [0.7, 0.8, 0.1], 1.0, limit=2).tolist() == [1, 0]


def test_ssd_rows_to_boxes():
    det = np.array([[0, 1, 0.9, 0.1, 0.2, 0.5, 0.6], [0, 1, 0.005, 0, 0, 1, 1],   # below 0.01
                    [-1, 0, 0, 0, 0, 0, 0], [0, 1, 0.3, -0.1, 0.5, 0.2, 1.2]])   # padding row; clipped box
    np.testing.assert_allclose(ssd_boxes(det, 200, 100, TEST), [[20, 20, 100, 60], [0, 50, 40, 100]])
    # a 200 x 100 photo resized by 0.5 onto a 100 x 100 canvas (rows 50-99 padding): canvas pixels / 0.5;
    # the second box lies in the padding (photo rows 140-180), clips to nothing and does not count
    on_canvas = np.array([[0, 1, 0.9, 0.1, 0.2, 0.5, 0.6], [0, 1, 0.95, 0.1, 0.7, 0.3, 0.9]])
    np.testing.assert_allclose(ssd_boxes(on_canvas, 200, 100, TEST, canvas=100, factor=0.5), [[20, 40, 100, 100]])
    assert len(ssd_boxes(det, 200, 100, TEST, limit=1)) == 1
    boxes, scores = scored_ssd_boxes(on_canvas, 200, 100, 0.01, canvas=100, factor=0.5)
    np.testing.assert_allclose(boxes, [[20, 40, 100, 100]])
    np.testing.assert_allclose(scores, [0.9])  # the padding box (0.95) went with its box


def test_make_batch_subtracts_mean_and_replicates_edges():
    size, mean = load_config().input.size, load_config().input.mean_bgr
    img = np.full((50, 60, 3), 200, np.uint8)
    x = make_batch(img, np.array([[-50, 0, 50, 50], [0, 0, 60, 50.0]]), size, mean)
    assert x.shape == (2, 3, size, size) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 10, 5], 200 - np.array(mean))           # outside: the replicated edge
    np.testing.assert_allclose(x[0, :, 10, size - 5], 200 - np.array(mean))     # inside the image
    np.testing.assert_allclose(x[1], np.broadcast_to((200 - np.array(mean))[:, None, None], (3, size, size)))
