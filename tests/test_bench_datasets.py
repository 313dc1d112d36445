"""Benchmark loaders on the real samples in ../shared/data, and their clear errors."""
import numpy as np
import pytest

from benchmarks.datasets.afw import count_afw, load_afw
from benchmarks.datasets.fddb import load_fddb
from benchmarks.datasets.pascal import load_pascal_faces
from benchmarks.errors import BenchmarkDataError
from benchmarks.metrics.landmarks import AFW6_FROM_AFLW21
from core.config import DATA_ROOT

DATA = DATA_ROOT
AFW = DATA / "afw_sample"
FDDB = DATA / "fddb_sample"


def test_afw_counts_and_sample_faces():
    assert count_afw(AFW) == (205, 468)
    recs = load_afw(AFW)
    assert len(recs) == 10 and sum(len(r.faces) for r in recs) == 16
    assert sorted(r.image_id for r in recs)[:2] == ["1004109301", "1051618982"]
    f = recs[0].faces[0]
    assert recs[0].image_id == "1004109301"
    np.testing.assert_allclose(f.box, [195, 290, 471, 554], atol=1e-6)     # MATLAB [196 291; 472 555] - 1
    np.testing.assert_allclose(f.pose_deg, [15, 0, -45])                    # AFW yaw +45 -> AFLW -45
    np.testing.assert_allclose(f.landmarks[AFW6_FROM_AFLW21][0], [312, 351], atol=1e-6)
    assert np.isnan(f.landmarks[0]).all()                                   # non-AFW points unknown
    two = next(r for r in recs if r.image_id == "111076519")
    assert len(two.faces) == 2 and two.faces[1].pose_deg[2] == -15.0
    assert all(r.path.is_file() for r in recs)


def test_afw_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(BenchmarkDataError, match=r"anno\.mat: not found; expected AFW"):
        load_afw(tmp_path)


def test_fddb_sample():
    imgs = load_fddb(FDDB)
    assert len(imgs) == 7 and sum(len(i.ellipses) for i in imgs) == 11
    first = imgs[0]
    assert first.image_id == "2002/08/11/big/img_591" and first.fold == 1 and first.path.is_file()
    np.testing.assert_allclose(first.ellipses[0], [123.5833, 85.5495, 1.265839, 269.6934, 161.7812])


def test_fddb_malformed(tmp_path):
    (tmp_path / "FDDB-folds").mkdir()
    (tmp_path / "FDDB-folds" / "FDDB-fold-01.txt").write_text("a/b\n")
    (tmp_path / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt").write_text("a/b\n2\n1 2 3 4 5 1\n")
    with pytest.raises(BenchmarkDataError, match="FDDB-fold-01-ellipseList.txt: malformed entry for 'a/b'"):
        load_fddb(tmp_path)


def test_pascal_toolbox_format(tmp_path):
    from scipy.io import savemat

    ann = np.zeros((2,), dtype=[("imgname", object), ("objects", object)])
    ann[0] = ("img1.jpg", np.array([[11, 21, 110, 140, 0, 0], [1, 1, 20, 20, 0, 1]], float))
    ann[1] = ("img2.jpg", np.array([[5, 6, 50, 60]], float))
    savemat(tmp_path / "Annotations_Face_PASCALLayout_large_fixed.mat", {"Annotations": ann})
    recs, ign = load_pascal_faces(tmp_path)
    assert [r.image_id for r in recs] == ["img1", "img2"]
    np.testing.assert_allclose(recs[0].faces[0].box, [10, 20, 109, 139])
    assert ign["img1"].tolist() == [False, True] and ign["img2"].tolist() == [False]
