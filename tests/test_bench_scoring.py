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
