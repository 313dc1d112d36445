"""data_prep readers on real files of ../shared/data, and their one-line errors on bad input."""
import numpy as np
import pytest
import scipy.io

from core.config import load_config
from data_prep.errors import DataPrepError
from data_prep.ibug68 import FLIP_PERMUTATION_68, aflw21_from_68, pose_from_68
from data_prep.readers import read_aflw2000, read_aflw_crops, read_300w, read_utkface, read_wider
from data_prep.readers.common import load_image
from data_prep.readers.pts300w import read_pts
from data_prep.readers.wider import is_ignore


@pytest.fixture(scope="module")
def data(shared_data):
    if not shared_data.is_dir():
        pytest.skip(f"{shared_data} not present")
    return shared_data


def test_300w_points_and_mapping(data):
    records = read_300w(data / "helen", split="train", limit=3)
    assert len(records) == 3 and records[0].image_id == "100032540_1"
    face = records[0].faces[0]
    pts68 = face.landmarks68
    assert pts68.shape == (68, 2)
    np.testing.assert_allclose(pts68[0], [174.993, 221.258])          # first .pts line 175.993 222.258, minus 1
    np.testing.assert_allclose(pts68[8], [246.935, 335.726])          # iBUG 9 (chin)
    lm = face.landmarks
    np.testing.assert_allclose(lm[20], pts68[8])                      # ChinCenter = iBUG 9
    np.testing.assert_allclose(lm[0], pts68[17])                      # LeftBrowLeftCorner = iBUG 18
    np.testing.assert_allclose(lm[6], pts68[36])                      # LeftEyeLeftCorner = iBUG 37
    np.testing.assert_allclose(lm[7], pts68[36:42].mean(axis=0))      # LeftEyeCenter = mean of iBUG 37-42
    np.testing.assert_allclose(lm[10], pts68[42:48].mean(axis=0))
    np.testing.assert_allclose(lm[14], pts68[30])                     # nose tip = iBUG 31
    np.testing.assert_allclose(lm[17], pts68[48])
    np.testing.assert_allclose(lm[19], pts68[54])
    # image sides: AFLW "Left" points lie left of the "Right" ones on a near-frontal face
    assert lm[0, 0] < lm[5, 0] and lm[6, 0] < lm[11, 0] and lm[17, 0] < lm[19, 0]
    assert face.landmarks_labelled.sum() == 19 and not face.landmarks_labelled[[12, 16]].any()
    assert np.isnan(lm[[12, 16]]).all() and face.visibility[[12, 16]].sum() == 0
    np.testing.assert_allclose(face.box, [pts68[:, 0].min(), pts68[:, 1].min(), pts68[:, 0].max(), pts68[:, 1].max()])
    assert face.gender == "f"                                         # gender.csv: trainset/100032540_1.jpg,f
    assert (records[0].width, records[0].height) == (512, 482)
    assert np.isfinite(face.pose_deg).all() and abs(face.pose_deg[2]) < 45


def test_ibug_flip_permutation_is_an_involution():
    assert sorted(FLIP_PERMUTATION_68) == list(range(68))
    np.testing.assert_array_equal(FLIP_PERMUTATION_68[FLIP_PERMUTATION_68], np.arange(68))
    assert FLIP_PERMUTATION_68[36] == 45 and FLIP_PERMUTATION_68[30] == 30 and FLIP_PERMUTATION_68[0] == 16
    # mirroring 68 points then mapping = mapping then AFLW's flip
    from core.aflw21 import FLIP_PERMUTATION
    pts = np.random.default_rng(1).normal(size=(68, 2))
    mirrored = np.empty_like(pts)
    mirrored[FLIP_PERMUTATION_68] = pts * [-1, 1]
    a, known = aflw21_from_68(pts)
    b, _ = aflw21_from_68(mirrored)
    expected = np.empty_like(a)
    expected[FLIP_PERMUTATION] = a * [-1, 1]
    np.testing.assert_allclose(b[known], expected[known])


def test_pose_from_68_agrees_with_aflw2000(data):
    """solvePnP pose on AFLW2000-3D's fitted 68 points vs its Pose_Para: signs and rough size."""
    yaw_err, signs_ok, n = [], 0, 0
    for mat_path in sorted((data / "aflw2000_sample").glob("*.mat")):
        mat = scipy.io.loadmat(str(mat_path))
        pitch, yaw, roll = np.degrees(mat["Pose_Para"].ravel()[:3])
        est = pose_from_68(mat["pt3d_68"][:2].T, 450, 450)
        yaw_err.append(abs(est[2] - yaw))
        if abs(yaw) > 10:
            n += 1
            signs_ok += np.sign(est[2]) == np.sign(yaw)
    assert n >= 8 and signs_ok == n
    assert np.mean(yaw_err) < 10


def test_points_box_leaves_out_invisible_points():
    from core.geometry import points_box

    pts = np.array([[3.0, 7.0], [np.nan, np.nan], [10.0, 2.0], [5.0, 9.5], [-100.0, np.nan]])
    np.testing.assert_array_equal(points_box(pts), [3.0, 2.0, 10.0, 9.5])   # NaN rows (even half-NaN) skipped
    assert np.isnan(points_box(np.full((21, 2), np.nan))).all()


def test_aflw2000_reader(data):
    records = read_aflw2000(data / "aflw2000_sample")
    assert len(records) == 16
    invisible = sum(int((1 - r.faces[0].visibility).sum()) for r in records)
    assert invisible == 57                                            # README: 57 points at (-1, 452)
    first = records[0]
    mat = scipy.io.loadmat(str(data / "aflw2000_sample" / "image00050.mat"))
    pitch, yaw, roll = np.degrees(mat["Pose_Para"].ravel()[:3])
    np.testing.assert_allclose(first.faces[0].pose_deg, [roll, pitch, yaw], rtol=1e-5)
    vis = first.faces[0].visibility.astype(bool)
    np.testing.assert_allclose(first.faces[0].landmarks[vis], mat["pt2d"].T[vis])
    assert (first.width, first.height) == (450, 450)
    shown = mat["pt2d"].T[vis]                                         # the face box: box of the visible points
    np.testing.assert_allclose(first.faces[0].box, [*shown.min(axis=0), *shown.max(axis=0)])


def test_aflw_crops_reader(data):
    records = read_aflw_crops(data / "aflw_crops", split="all")
    assert len(records) == 18585 - 52                                 # 52 bad crops skipped (README)
    face = records[0].faces[0]
    assert records[0].image_id == "image04378"
    np.testing.assert_array_equal(face.box, [0, 0, 120, 120])
    np.testing.assert_allclose(face.landmarks[0], [22.60, 27.03])
    assert np.isnan(face.landmarks[5]).all() and face.visibility[5] == 0   # x6,y6 = -1,-1
    assert np.isnan(face.pose_deg[:2]).all() and face.pose_deg[2] == pytest.approx(6.87)
    assert len(read_aflw_crops(data / "aflw_crops", limit=5)) == 5


def test_wider_reader(data):
    records = read_wider(data / "wider_train", config=load_config())
    assert len(records) == 1239
    faces = [f for r in records for f in r.faces]
    assert len(faces) == 6590 - 18                                    # invalid=1 faces skipped
    first = records[0]
    assert first.image_id == "1--Handshaking/1_Handshaking_Handshaking_1_409.jpg"
    np.testing.assert_array_equal(first.faces[0].box, [234, 48, 290, 122])
    tiny = [f for f in faces if is_ignore(f)]
    assert all(f.ignore for f in tiny) and first.faces[0].face_id == f"{first.image_id}#0"   # a field, not an id prefix
    sides = np.array([min(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces])
    assert len(tiny) == int((sides < load_config().sampling.min_face_side).sum()) > 1000
    assert first.path.is_file()


def test_utkface_reader(data):
    records = read_utkface(data / "utkface", split="all")
    assert len(records) == 3000
    assert sum(r.faces[0].gender == "m" for r in records) == 1500
    assert records[0].faces[0].gender == "f"
    np.testing.assert_allclose(records[0].faces[0].box, [12.8, 12.8, 115.2, 115.2])


def test_bad_inputs_give_one_line_errors(tmp_path):
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"\xff\xd8not a jpeg")
    with pytest.raises(DataPrepError) as err:
        load_image(corrupt)
    assert str(err.value).startswith(f"{corrupt}: corrupt") and "\n" not in str(err.value)
    with pytest.raises(DataPrepError, match="image file not found"):
        load_image(tmp_path / "missing.jpg")
    pts = tmp_path / "face.pts"
    pts.write_text("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "nan 3\n}\n")
    with pytest.raises(DataPrepError) as err:
        read_pts(pts)
    assert str(err.value) == f"{pts}: NaN or infinite landmark coordinates"
    crops = tmp_path / "crops"
    crops.mkdir()
    header = "image,yaw_deg," + ",".join(f"x{k},y{k}" for k in range(1, 22))
    (crops / "annotations.csv").write_text(header + "\nimages/a.jpg,3.0," + ",".join(["10"] * 41) + ",\n")
    with pytest.raises(DataPrepError, match="NaN landmark coordinate in row 2"):
        read_aflw_crops(crops)
