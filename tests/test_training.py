"""The training chain of Section 4: loss log helpers, and `make train-hyperface` end to end at a
tiny size (data_prep on a few images of each set, both stages, snapshots, a resume, the export)."""
import csv
import subprocess

import numpy as np
import pytest

from training.loss_log import LossLog, moving_average, read_log, truncate_log


def test_moving_average_hand_computed():
    np.testing.assert_allclose(moving_average(np.array([2.0, 4.0, 6.0, 8.0]), 2), [2.0, 3.0, 5.0, 7.0])


def test_loss_log_truncates_on_resume(tmp_path):
    path = tmp_path / "losses.csv"
    log = LossLog(path, ["loss_a", "loss_b"])
    for it in range(1, 6):
        log.append(it, {"loss_a": it, "loss_b": 10 * it})
    log.close()
    truncate_log(path, 3)              # a resume from the iteration-3 snapshot
    log = LossLog(path, ["loss_a", "loss_b"])
    log.append(4, {"loss_a": 40, "loss_b": 400})
    log.close()
    iters, losses = read_log(path)
    np.testing.assert_array_equal(iters, [1, 2, 3, 4])
    np.testing.assert_array_equal(losses["loss_a"], [1, 2, 3, 40])


def _make(repo_root, out, hyperface_iters, caffe_env):
    cmd = ["make", "-s", "train-hyperface-scratch", f"SCRATCH_OUT={out}", "TRAIN_MIX=aflw_crops=4,wider=2,helen=2,utkface=4",
           "RCNN_ITERS=2", f"HYPERFACE_ITERS={hyperface_iters}", "TRAIN_BATCH=4", "SNAPSHOT_EVERY=2",
           f"SCRATCH_EXPORT={out}/model"]
    return subprocess.run(cmd, cwd=repo_root, env=caffe_env, capture_output=True, text=True, timeout=600)


def test_make_train_hyperface_scratch_tiny_end_to_end_and_resume(repo_root, tmp_path, caffe_env):
    out = tmp_path / "run"
    first = _make(repo_root, out, 2, caffe_env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "lmdb" / "manifest.json").exists()
    assert (out / "rcnn_face" / "rcnn_face_final.caffemodel").exists()
    assert sorted(p.name for p in (out / "hyperface" / "snapshots").iterdir()) == [
        "hyperface_iter_2.caffemodel", "hyperface_iter_2.solverstate"]
    # Resume: asking for 4 HyperFace iterations continues from the iteration-2 snapshot.
    second = _make(repo_root, out, 4, caffe_env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stderr and "hyperface_iter_2.solverstate" in second.stderr
    with (out / "hyperface" / "losses.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "iter" and {"loss_detection", "loss_landmarks", "loss_pose"} <= set(rows[0])
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]      # nothing lost, nothing twice
    assert (out / "hyperface" / "losses.png").stat().st_size > 1000
    model = out / "model"
    assert {"deploy.prototxt", "model.json", "weights_fp16.npz"} <= {p.name for p in model.iterdir()}
    # Every layer that surgery did not copy keeps the train net's fillers: no weight blob is all
    # zeros (the deploy net that surgery builds has no fillers, so copying its zeros would kill them).
    from pipeline.model_store import read_caffemodel
    weights = read_caffemodel(out / "hyperface" / "hyperface_final.caffemodel")
    assert {"conv1", "conv1a", "conv3a", "conv_all", "fc_full", "fc_landmarks"} <= set(weights)
    assert [name for name, blobs in weights.items() if not np.abs(blobs[0]).max() > 0] == []
    rcnn = read_caffemodel(out / "rcnn_face" / "rcnn_face_final.caffemodel")
    init = read_caffemodel(out / "hyperface_init.caffemodel")
    np.testing.assert_array_equal(init["conv3"][0], rcnn["conv3"][0])      # surgery copied the trunk


def test_stage_fails_clearly_without_lmdb(tmp_path):
    from training.stage import StageSpec, TrainingError, prepare_run
    with pytest.raises(TrainingError, match="images_lmdb: LMDB not found"):
        prepare_run(StageSpec("hyperface", tmp_path / "nowhere", tmp_path / "run", 1))


def test_diverged_loss_stops_the_stage(tmp_path):
    from training.stage import TrainingError, check_finite_losses
    check_finite_losses({"loss_a": 0.5, "loss_b": 1e3}, 7, tmp_path)           # finite: nothing happens
    with pytest.raises(TrainingError, match=r"diverged at iteration 7 \(loss_b not finite\)"):
        check_finite_losses({"loss_a": 0.5, "loss_b": float("nan")}, 7, tmp_path)
