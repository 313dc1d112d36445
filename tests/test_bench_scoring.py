"""End to end without the pipeline: ground truth written as results is scored perfectly, the raw
result formats round-trip, and the report and PNGs are written."""
from pathlib import Path

import numpy as np
import pytest

from benchmarks import results_io
from benchmarks.cli import main
from benchmarks.datasets.afw import load_afw
from benchmarks.datasets.fddb import load_fddb
from benchmarks.score import score_runs
from core.config import DATA_ROOT, load_config
from core.face import Face

DATA = DATA_ROOT
CFG = load_config()


def _afw_truth_as_results(out: Path):
    for i, rec in enumerate(load_afw(DATA / "afw_sample")):
        faces = [Face(box=f.box.copy(), score=0.99 - 0.01 * k, landmarks=np.nan_to_num(f.landmarks, nan=0.0),
                      visibility=np.ones(21), visible=np.ones(21, bool), pose_deg=f.pose_deg.copy(), gender_prob_male=0.7)
                 for k, f in enumerate(rec.faces)]
        results_io.write_image_result(out, rec.image_id, rec.path, faces)
    results = results_io.read_results(out)
    results_io.write_face_eval(out / results_io.FACE_EVAL_TXT, results)
    return results


def test_afw_truth_scores_perfectly_and_report(tmp_path):
    _afw_truth_as_results(tmp_path / "res")
    m = score_runs("afw", DATA / "afw_sample", {"truth": tmp_path / "res"}, tmp_path / "bench", CFG)["truth"]
    assert m["AP"] == pytest.approx(1.0) and m["AP_calibrated"] == pytest.approx(1.0)
    assert m["faces"] == 16 and m["detected"] == 16
    assert m["NME_box"] == pytest.approx(0.0) and m["MAE_yaw_deg"] == pytest.approx(0.0)
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "| truth |" in report and "1.0000" in report and "afw_pr.png" in report
    for name in ("afw_pr.png", "afw_ced_landmarks.png", "afw_ced_yaw.png"):
        assert (tmp_path / "bench" / name).stat().st_size > 1000
    lines = (tmp_path / "res" / results_io.FACE_EVAL_TXT).read_text().splitlines()
    assert len(lines) == 16 and lines[0].split()[0].isdigit() and len(lines[0].split()) == 6
    dets = results_io.read_face_eval(tmp_path / "res" / results_io.FACE_EVAL_TXT)
    np.testing.assert_allclose(dets["1004109301"][0][0], [195, 290, 471, 554])


def test_score_cli_two_models_on_one_plot(tmp_path):
    _afw_truth_as_results(tmp_path / "a")
    res = results_io.read_results(tmp_path / "a")
    for k, faces in res.items():                       # model b: every face shifted by half its width -> misses
        for f in faces:
            f.box = f.box + np.array([1, 0, 1, 0]) * (f.box[2] - f.box[0]) * 0.6
        results_io.write_image_result(tmp_path / "b", k, "x.jpg", faces)
    rc = main(["score", "afw", "--data", str(DATA / "afw_sample"), "--results", str(tmp_path / "a"),
               "--results", str(tmp_path / "b"), "--label", "good", "--label", "shifted", "--out", str(tmp_path / "o")])
    assert rc == 0
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| good |" in report and "| shifted |" in report


def test_fddb_truth_boxes_and_files(tmp_path):
    imgs = load_fddb(DATA / "fddb_sample")
    for im in imgs:
        faces = []
        for ra, rb, ang, cx, cy in im.ellipses:   # axis-aligned box of the ellipse: IoU ~ pi/4 > 0.5
            hx = np.hypot(ra * np.cos(ang), rb * np.sin(ang))
            hy = np.hypot(ra * np.sin(ang), rb * np.cos(ang))
            faces.append(Face(box=np.array([cx - hx, cy - hy, cx + hx, cy + hy]), score=0.9))
        results_io.write_image_result(tmp_path / "res", im.image_id, im.path, faces)
    m = score_runs("fddb", DATA / "fddb_sample", {"truth": tmp_path / "res"}, tmp_path / "o", CFG)["truth"]
    assert m["faces"] == 11 and m["TPR@1000FP_discrete"] == pytest.approx(1.0)
    assert 0.5 < m["TPR@1000FP_continuous"] < 0.85
    assert (tmp_path / "o" / "DiscROC.txt").read_text().split() == ["1.000000", "0"]
    results_io.write_fddb(tmp_path / "d.txt", results_io.read_results(tmp_path / "res"), [i.image_id for i in imgs])
    lines = (tmp_path / "d.txt").read_text().splitlines()
    assert lines[0] == "2002/08/11/big/img_591" and lines[1] == "1" and len(lines[2].split()) == 5


def test_cli_missing_dataset_message(tmp_path, caplog):
    assert main(["fddb", "--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no FDDB-fold-XX.txt found; expected FDDB" in caplog.text


def _ibug_folder(tmp_path: Path, n: int = 3) -> Path:
    """The first n HELEN testset photos with their .pts, as an iBUG-style folder (links, no copies)."""
    folder = tmp_path / "ibug"
    folder.mkdir()
    for pts in sorted((DATA / "helen" / "testset").glob("*.pts"))[:n]:
        for f in (pts, pts.with_suffix(".jpg")):
            (folder / f.name).symlink_to(f)
    return folder


def test_ibug_scores_the_19_aflw_points_of_a_21_point_model_and_the_68_of_a_68_point_one(tmp_path):
    """iBUG ground truth written as results: 21 points from the 68 (data_prep.ibug68) score NME19 0 and
    the 68 score NME 0; moving one face's points d px right costs d / its inter-ocular distance, / 3
    faces. A 21-point model's run has no 68-point NME (it was NaN for every model before)."""
    from benchmarks.datasets.ibug import load_ibug
    from benchmarks.metrics.landmarks import normaliser
    from data_prep.ibug68 import aflw21_from_68

    folder = _ibug_folder(tmp_path)
    records = load_ibug(folder)
    shift = 4.0
    for with68, out in ((False, tmp_path / "res21"), (True, tmp_path / "res68")):
        for i, rec in enumerate(records):
            f = rec.faces[0]
            lm = np.nan_to_num(aflw21_from_68(f.landmarks68)[0], nan=-100.0)  # ears: not in the ground truth
            lm68 = f.landmarks68.copy()
            if i == 0:
                lm, lm68 = lm + [shift, 0.0], lm68 + [shift, 0.0]
            results_io.write_image_result(out, rec.image_id, rec.path, [Face(
                box=f.box.copy(), score=0.9, landmarks=lm, visibility=np.ones(21), visible=np.ones(21, bool),
                landmarks68=lm68 if with68 else None)])
    scored = score_runs("ibug", folder, {"21": tmp_path / "res21", "68": tmp_path / "res68"}, tmp_path / "bench", CFG)
    gt68 = records[0].faces[0].landmarks68[None]
    io, ip = normaliser("inter_ocular", gt68)[0], normaliser("inter_pupil", gt68)[0]
    for label in ("21", "68"):
        m = scored[label]
        assert m["faces"] == 3 and m["detected"] == 3
        assert m["NME19_inter_ocular"] == pytest.approx(shift / io / 3)
        assert m["NME19_inter_pupil"] == pytest.approx(shift / ip / 3)
    assert "NME_inter_pupil" not in scored["21"]
    assert scored["68"]["NME_inter_pupil"] == pytest.approx(shift / ip / 3)
    assert (tmp_path / "bench" / "ibug_ced_landmarks19.png").stat().st_size > 1000
