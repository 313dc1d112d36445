"""data_prep labels on hand-made proposals: a tiny aflw.sqlite in AFLW's schema, hand-computed values."""
import json
import logging
import math
import sqlite3

import cv2
import numpy as np
import pytest

from core.aflw21 import FLIP_PERMUTATION
from core.config import load_config
from core.labels import IGNORE_LABEL, LABEL_LENGTH, OFFSETS
from data_prep.errors import DataPrepError
from core.geometry import apply_bbox_deltas, bbox_targets, box_iou
from data_prep.readers.aflw import read_aflw
from data_prep.regions import NEGATIVE, PARTIAL, POSITIVE, crop_region, flip_label, flip_sample, label_regions

CFG = load_config()
ROLL, PITCH, YAW = 0.1, -0.2, 0.3  # radians, as AFLW's FacePose stores them


def make_aflw(tmp_path, missing_second_image=False, drop_table=None):
    """aflw.sqlite (AFLW's real table and column names) + flickr/ images: image A 200x240 with one face."""
    data = tmp_path / "data"
    flickr = tmp_path / "flickr" / "0"
    data.mkdir(parents=True)
    flickr.mkdir(parents=True)
    cv2.imwrite(str(flickr / "imageA.jpg"), np.full((240, 200, 3), 90, np.uint8))
    if not missing_second_image:
        cv2.imwrite(str(flickr / "imageB.jpg"), np.full((100, 100, 3), 30, np.uint8))
    con = sqlite3.connect(data / "aflw.sqlite")
    con.executescript("""
        CREATE TABLE Faces (face_id INTEGER PRIMARY KEY, file_id TEXT, db_id TEXT);
        CREATE TABLE FaceImages (image_id INTEGER PRIMARY KEY, db_id TEXT, file_id TEXT, filepath TEXT,
                                 bw INTEGER, width INTEGER, height INTEGER);
        CREATE TABLE FaceRect (face_id INTEGER, x INTEGER, y INTEGER, w INTEGER, h INTEGER, annot_type_id INTEGER);
        CREATE TABLE FacePose (face_id INTEGER, roll REAL, pitch REAL, yaw REAL, annot_type_id INTEGER);
        CREATE TABLE FeatureCoords (face_id INTEGER, feature_id INTEGER, x REAL, y REAL, annot_type_id INTEGER);
        CREATE TABLE FaceMetaData (face_id INTEGER, sex TEXT, occluded INTEGER, glasses INTEGER, bw INTEGER,
                                   annot_type_id INTEGER);
    """)
    con.execute("INSERT INTO FaceImages VALUES (1, 'flickr', 'imageA.jpg', '0/imageA.jpg', 0, 200, 240)")
    con.execute("INSERT INTO FaceImages VALUES (2, 'flickr', 'imageB.jpg', '0/imageB.jpg', 0, 100, 100)")
    con.execute("INSERT INTO Faces VALUES (10, 'imageA.jpg', 'flickr')")
    con.execute("INSERT INTO Faces VALUES (20, 'imageB.jpg', 'flickr')")
    con.execute("INSERT INTO FaceRect VALUES (10, 50, 60, 80, 100, 1)")
    con.execute("INSERT INTO FaceRect VALUES (20, 10, 10, 50, 50, 1)")
    con.execute("INSERT INTO FacePose VALUES (10, ?, ?, ?, 1)", (ROLL, PITCH, YAW))
    con.execute("INSERT INTO FacePose VALUES (20, 0, 0, 0, 1)")
    # face 10: point 1 (LeftBrowLeftCorner) at (70, 90), point 15 (nose tip) at (90, 120); others missing = invisible
    con.execute("INSERT INTO FeatureCoords VALUES (10, 1, 70, 90, 1)")
    con.execute("INSERT INTO FeatureCoords VALUES (10, 15, 90, 120, 1)")
    con.execute("INSERT INTO FeatureCoords VALUES (20, 15, 30, 30, 1)")
    con.execute("INSERT INTO FaceMetaData VALUES (10, 'm', 0, 0, 0, 1)")
    con.execute("INSERT INTO FaceMetaData VALUES (20, 'f', 0, 0, 0, 1)")
    if drop_table:
        con.execute(f"DROP TABLE {drop_table}")
    con.commit()
    con.close()
    return data / "aflw.sqlite"


def test_aflw_reader_values(tmp_path):
    records = read_aflw(make_aflw(tmp_path), split="all")
    assert [r.image_id for r in records] == ["imageA.jpg", "imageB.jpg"]
    face = records[0].faces[0]
    np.testing.assert_array_equal(face.box, [50, 60, 130, 160])
    np.testing.assert_allclose(face.pose_deg, np.degrees([ROLL, PITCH, YAW]))
    assert face.gender == "m" and records[1].faces[0].gender == "f"
    np.testing.assert_array_equal(face.landmarks[0], [70, 90])
    np.testing.assert_array_equal(face.landmarks[14], [90, 120])
    assert face.visibility.sum() == 2 and face.visibility[0] == 1 and face.visibility[1] == 0
    assert (records[0].width, records[0].height) == (200, 240)


def test_aflw_split_and_missing_images(tmp_path, caplog):
    sqlite_path = make_aflw(tmp_path, missing_second_image=True)
    with caplog.at_level(logging.WARNING):
        records = read_aflw(sqlite_path, split="all")
    assert [r.image_id for r in records] == ["imageA.jpg"]
    assert "1 of 2 images" in caplog.text
    split_file = tmp_path / "split.json"
    (tmp_path / "one_test.yaml").write_text("sampling:\n  aflw_test_images: 1\n")
    cfg = load_config(tmp_path / "one_test.yaml")
    sqlite_b = make_aflw(tmp_path / "b")
    train = read_aflw(sqlite_b, split="train", split_file=split_file, config=cfg)
    test = read_aflw(sqlite_b, split="test", config=cfg)
    assert len(train) == 1 and len(test) == 1
    assert {train[0].image_id, test[0].image_id} == {"imageA.jpg", "imageB.jpg"}
    saved = json.loads(split_file.read_text())
    assert saved["test"] == [test[0].image_id] and saved["train"] == [train[0].image_id]
    # the default config holds out 1000 images: with 2 images, both are test
    assert len(read_aflw(sqlite_b, split="test")) == 2


def test_aflw_missing_table_is_one_line_error(tmp_path):
    path = make_aflw(tmp_path, drop_table="FacePose")
    with pytest.raises(DataPrepError) as err:
        read_aflw(path)
    assert str(err.value) == f"{path}: missing table FacePose"


def test_labels_of_hand_made_proposals(tmp_path):
    face = read_aflw(make_aflw(tmp_path), split="all")[0].faces[0]  # box (50, 60, 130, 160)
    regions = np.array([
        [50, 60, 130, 160],    # IoU 1
        [50, 60, 130, 210],    # IoU 8000/12000 = 0.667 -> positive
        [50, 60, 130, 310],    # IoU 8000/20000 = 0.4 -> landmarks only
        [150, 0, 200, 50],     # IoU 0 -> negative
        [50, 60, 130, 270],    # IoU 8000/16800 = 0.476 -> landmarks only
        [50, 60, 130, 360],    # IoU 8000/24000 = 0.333 -> negative
    ], dtype=np.float64)
    np.testing.assert_allclose(box_iou(regions, face.box[None])[:, 0], [1, 2 / 3, 0.4, 0, 8000 / 16800, 1 / 3])
    out = label_regions(regions, [face], CFG)
    assert [kind for kind, _, _ in out] == [POSITIVE, POSITIVE, PARTIAL, NEGATIVE, PARTIAL, NEGATIVE]
    full, tall, partial, neg = out[0][2], out[1][2], out[2][2], out[3][2]
    assert full.shape == (LABEL_LENGTH,)

    # region = face box: centre (90, 110), w 80, h 100
    lm = full[OFFSETS["landmarks"]].reshape(21, 2)
    np.testing.assert_allclose(lm[0], [(70 - 90) / 80, (90 - 110) / 100])   # -0.25, -0.2
    np.testing.assert_allclose(lm[14], [0.0, (120 - 110) / 100])
    assert not lm[1:14].any() and not lm[15:].any()                         # invisible: target 0
    mask = full[OFFSETS["landmarks_mask"]].reshape(21, 2)
    assert mask[0].tolist() == [1, 1] and mask[14].tolist() == [1, 1] and mask.sum() == 4
    vis = full[OFFSETS["visibility"]]
    assert vis[0] == 1 and vis[14] == 1 and vis.sum() == 2
    assert full[OFFSETS["visibility_mask"]].sum() == 21                     # AFLW: every point's visibility known
    np.testing.assert_allclose(full[OFFSETS["pose"]], [ROLL, PITCH, YAW], rtol=1e-6)
    assert full[OFFSETS["pose_mask"]].tolist() == [1, 1, 1]
    assert full[OFFSETS["detection"]][0] == 1 and full[OFFSETS["gender"]][0] == 1
    np.testing.assert_allclose(full[OFFSETS["bbox_targets"]], 0, atol=1e-7)
    assert full[OFFSETS["bbox_mask"]].tolist() == [1, 1, 1, 1]
    assert not full[OFFSETS["landmarks68_mask"]].any()

    # tall region (50, 60, 130, 210): centre (90, 135), h 150
    np.testing.assert_allclose(tall[OFFSETS["landmarks"]][:2], [-0.25, (90 - 135) / 150], rtol=1e-6)
    np.testing.assert_allclose(tall[OFFSETS["bbox_targets"]], [0, (110 - 135) / 150, 0, math.log(100 / 150)],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(apply_bbox_deltas(regions[1], tall[OFFSETS["bbox_targets"]])[0], face.box, atol=1e-4)

    # IoU 0.4: landmarks and visibility, detection ignored, no pose/gender/bbox
    assert partial[OFFSETS["detection"]][0] == IGNORE_LABEL
    np.testing.assert_allclose(partial[OFFSETS["landmarks"]][:2], [-0.25, (90 - 185) / 250], rtol=1e-6)
    assert partial[OFFSETS["visibility"]].sum() == 2
    assert not partial[OFFSETS["pose_mask"]].any() and partial[OFFSETS["gender"]][0] == IGNORE_LABEL
    assert not partial[OFFSETS["bbox_mask"]].any()

    # negative: detection 0, every other task masked
    assert neg[OFFSETS["detection"]][0] == 0 and neg[OFFSETS["gender"]][0] == IGNORE_LABEL
    for name in ("landmarks_mask", "visibility_mask", "pose_mask", "bbox_mask", "landmarks68_mask"):
        assert not neg[OFFSETS[name]].any()


def test_negatives_avoid_ignored_faces():
    from core.records import FaceRecord
    real = FaceRecord(box=[0, 0, 100, 100], face_id="a")
    tiny = FaceRecord(box=[200, 200, 210, 210], face_id="b", ignore=True)
    out = label_regions(np.array([[200, 200, 212, 212], [300, 300, 350, 350], [0, 0, 100, 100]]), [real, tiny], CFG)
    assert [k for k, _, _ in out] == [None, NEGATIVE, POSITIVE]


def test_flip_twice_is_identity_and_swaps_points(tmp_path):
    face = read_aflw(make_aflw(tmp_path), split="all")[0].faces[0]
    label = label_regions(np.array([[50, 60, 130, 210]], float), [face], CFG)[0][2]
    crop = np.random.default_rng(0).integers(0, 255, (227, 227, 3), dtype=np.uint8)
    fcrop, flabel = flip_sample(crop, label)
    # point 1 (LeftBrowLeftCorner, a=-0.25) becomes point 6 (RightBrowRightCorner) at a=+0.25
    assert FLIP_PERMUTATION[0] == 5
    np.testing.assert_allclose(flabel[OFFSETS["landmarks"]].reshape(21, 2)[5], [0.25, -0.3], rtol=1e-6)
    assert flabel[OFFSETS["visibility"]][5] == 1 and flabel[OFFSETS["visibility"]][0] == 0
    np.testing.assert_allclose(flabel[OFFSETS["pose"]], [-ROLL, PITCH, -YAW], rtol=1e-6)
    np.testing.assert_array_equal(fcrop[:, 0], crop[:, -1])
    crop2, label2 = flip_sample(fcrop, flabel)
    np.testing.assert_array_equal(crop2, crop)
    np.testing.assert_array_equal(label2, label)
    np.testing.assert_array_equal(flip_label(flip_label(label)), label)


def test_crop_region_repeats_the_edge_outside_the_image():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :] = (10, 20, 30)
    image[:, 0] = (90, 80, 70)                                           # the left edge column
    crop = crop_region(image, np.array([-100, 0, 100, 200]), CFG.input)   # left half outside the image
    assert crop.shape == (CFG.input.size, CFG.input.size, 3)
    np.testing.assert_array_equal(crop[5, 5], (90, 80, 70))              # replicated edge, not the mean colour
    np.testing.assert_array_equal(crop[50, 200], (10, 20, 30))


def test_bbox_targets_round_trip():
    region, gt = np.array([10.0, 20, 60, 120]), np.array([15.0, 10, 75, 100])
    np.testing.assert_allclose(apply_bbox_deltas(region, bbox_targets(region, gt))[0], gt)
