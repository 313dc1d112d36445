"""The default detection threshold: chosen on held-out results by face-eval F1, recorded in
model.json, used by the pipeline unless a caller passes another."""
import json
import shutil

import numpy as np
import pytest

from core.config import DATA_ROOT, REPO_ROOT, load_config
from core.face import Face

pytestmark = pytest.mark.skipif(not (DATA_ROOT / "wider_train").is_dir(), reason="needs ../shared/data")


def test_threshold_is_chosen_by_f1_and_used_by_the_pipeline(tmp_path):
    from benchmarks import results_io
    from benchmarks.threshold import check_choice, main as threshold_main
    from data_prep.readers import read_dataset
    from pipeline import HyperFace

    cfg = load_config()
    records = read_dataset("wider", DATA_ROOT / "wider_train", split="train-heldout", config=cfg)
    n_faces = sum(1 for r in records for f in r.faces
                  if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= cfg.benchmark.face_eval_min_gt_side)
    first = next(r for r in records if any(min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= 40 for f in r.faces))
    face = next(f for f in first.faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= 40)
    far = np.array([0, 0, 35, 35], dtype=float) if face.box[0] > 100 else np.array([400, 300, 440, 340], dtype=float)
    results = tmp_path / "results"
    # ranked TP (0.9) then FP (0.8): F1 2/(n+1) beats 2/(n+2) -> threshold 0.9, recall 1/n
    results_io.write_image_result(results, first.image_id, first.path, [Face(box=face.box, score=0.9),
                                                                        Face(box=far, score=0.8)])
    (results / "run_settings.json").write_text(json.dumps({"proposals": "ssd", "box_style": "raw"}))
    model = tmp_path / "model"
    shutil.copytree(REPO_ROOT / "models" / "hyperface", model)
    assert threshold_main(["--model", str(model), "--results", str(results)]) == 0
    doc = json.loads((model / "model.json").read_text())
    assert doc["detection_threshold"] == 0.9
    assert doc["detection_threshold_chosen"]["proposals"] == "ssd"  # the proposals of the run it was chosen on
    # ... and which proposal net: a choice made with another net does not hold for this one
    proposal_doc = json.loads((model / "proposals" / "model.json").read_text())
    assert doc["detection_threshold_chosen"]["proposal_weights_sha1"] == proposal_doc["weights_sha1"]
    assert doc["box_style"] == [0.0, 0.0, 1.0, 1.0]   # the one TP is the face box itself: no restyling
    assert doc["detection_threshold_chosen"]["faces"] == n_faces
    assert doc["detection_threshold_chosen"]["recall"] == pytest.approx(round(1 / n_faces, 4))
    assert HyperFace(model).cfg.test.detection_threshold == 0.9
    # the recorded choice, checked on the same images: the chosen detection only (the 0.8 one is below 0.9)
    checked = check_choice("wider-heldout", DATA_ROOT / "wider_train", results, cfg, doc["box_style"], 0.9, None, 0)
    assert (checked["TP"], checked["FP"], checked["faces"]) == (1, 0, n_faces)
    assert checked["recall"] == doc["detection_threshold_chosen"]["recall"]
    # leaving out the first images leaves out the image with the detection
    skipped = check_choice("wider-heldout", DATA_ROOT / "wider_train", results, cfg, doc["box_style"], 0.9, None,
                           records.index(first) + 1)
    assert skipped["TP"] == 0 and skipped["FP"] == 0
    assert HyperFace(model, detection_threshold=0.25).cfg.test.detection_threshold == 0.25


def test_restyle_boxes_hand_computed():
    from pipeline.postprocess import restyle_boxes
    # box 100 x 50 centred (50, 25): shift by (0.1, -0.2) box sizes -> centre (60, 15); scale (0.5, 2) -> 50 x 100
    out = restyle_boxes(np.array([[0, 0, 100, 50]]), (0.1, -0.2, 0.5, 2.0))
    np.testing.assert_allclose(out, [[35, -35, 85, 65]])
    np.testing.assert_allclose(restyle_boxes(np.array([[1, 2, 3, 4]]), (0, 0, 1, 1)), [[1, 2, 3, 4]])


def test_box_style_is_calibrated_from_raw_boxes_only(tmp_path, caplog):
    """Results made with the model's box style would give a correction of that style, recorded as if
    it were the whole style: refused with one line. A raw-box run's settings pass."""
    from benchmarks.cli import check_run_settings
    from benchmarks.threshold import main as threshold_main
    results = tmp_path / "results"
    settings = {"model": "m", "box_style": "model", "detection_threshold": 0.3}
    check_run_settings(results, settings)
    model = tmp_path / "model"
    shutil.copytree(REPO_ROOT / "models" / "hyperface", model)
    before = (model / "model.json").read_text()
    assert threshold_main(["--model", str(model), "--results", str(results)]) == 2
    assert "--box-style raw" in caplog.text and (model / "model.json").read_text() == before


def test_results_folder_refuses_a_resume_with_other_settings(tmp_path):
    from benchmarks.cli import check_run_settings
    from benchmarks.errors import BenchmarkDataError
    settings = {"model": "m", "box_style": "raw", "detection_threshold": 0.3}
    check_run_settings(tmp_path, settings)
    check_run_settings(tmp_path, dict(settings))                        # same settings: a resume
    with pytest.raises(BenchmarkDataError, match=r"other settings \(box_style: raw -> model; detection_threshold: 0.3 -> 0.5\)"):
        check_run_settings(tmp_path, {"model": "m", "box_style": "model", "detection_threshold": 0.5})


def test_caller_box_style_replaces_the_models():
    from core.errors import ModelError
    from pipeline import HyperFace
    model = REPO_ROOT / "models" / "hyperface"
    assert json.loads((model / "model.json").read_text())["box_style"] != [0.0, 0.0, 1.0, 1.0]
    assert HyperFace(model, box_style=(0.0, 0.0, 1.0, 1.0)).cfg.test.box_style == (0.0, 0.0, 1.0, 1.0)
    with pytest.raises(ModelError, match="box_style must be"):
        HyperFace(model, box_style=(0.0, 0.0, -1.0, 1.0))


def test_a_results_folder_refuses_a_resume_after_recalibration_or_a_new_default(tmp_path):
    """Results made before `make calibrate-threshold` rewrote model.json, or before a default of the
    test procedure changed, would be resumed as if current: the folder records the pipeline's own
    settings, and such a resume stops with one line naming what changed."""
    import dataclasses

    from benchmarks.cli import check_run_settings
    from benchmarks.errors import BenchmarkDataError
    from pipeline import HyperFace

    model = tmp_path / "model"
    shutil.copytree(REPO_ROOT / "models" / "hyperface", model)
    results, base = tmp_path / "results", {"model": str(model), "box_style": "model", "detection_threshold": 0.3}
    check_run_settings(tmp_path / "older", base)   # a folder made before the pipeline's settings were recorded
    with pytest.raises(BenchmarkDataError, match="made before results folders recorded the pipeline's settings"):
        check_run_settings(tmp_path / "older", base, HyperFace(model, detection_threshold=0.3))
    check_run_settings(results, base, HyperFace(model, detection_threshold=0.3))
    check_run_settings(results, base, HyperFace(model, detection_threshold=0.3))  # same settings: resumes
    cfg = load_config()
    changed_default = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, lnms_suppress_output=False))
    with pytest.raises(BenchmarkDataError, match=r"other settings \(pipeline\.config\.test\.lnms_suppress_output: "
                                                 r"True -> False\)"):
        check_run_settings(results, base, HyperFace(model, config=changed_default, detection_threshold=0.3))
    meta = json.loads((model / "model.json").read_text())
    meta["box_style"] = [0.0, -0.1, 0.6, 0.85]
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BenchmarkDataError, match=r"pipeline\.config\.test\.box_style: \[.*\] -> \[0\.0, -0\.1, 0\.6, 0\.85\]"):
        check_run_settings(results, base, HyperFace(model, detection_threshold=0.3))
