"""Training pieces from a model folder and hard-negative mining, with real pycaffe and the shipped model."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from core.config import DATA_ROOT, REPO_ROOT, load_config

MODEL = REPO_ROOT / "models" / "hyperface"
pytestmark = pytest.mark.skipif(not (DATA_ROOT / "wider_train").is_dir() or not (MODEL / "model.json").is_file(),
                                reason="needs ../shared/data and models/hyperface")


def _losses(net):
    return {n: float(net.blobs[n].data) for n in net.outputs if n.startswith("loss")}


def test_piece_starts_from_the_model_weights(tmp_path):
    """The first loss of a piece equals the model's own loss on the same batch, not a from-scratch loss."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from training.sampler import sampler_sets, write_spec
    from training.stage import StageSpec, prepare_run, resolve_init_weights, run_stage

    cfg = load_config()
    spec_path = write_spec(tmp_path / "sampler.json", sampler_sets(DATA_ROOT, cfg), None, None, batch_size=4, seed=3)
    stage = StageSpec("hyperface", tmp_path, tmp_path / "run", 1, 4, 1e-4, 100, MODEL, None, seed=0,
                      sampler_spec=spec_path, lr_policy="poly", lr_power=1.0)
    run_stage(stage, progress=False)
    first = {k: float(v) for k, v in next(iter(_read_csv(tmp_path / "run" / "losses.csv"))).items() if k != "iteration"}

    net_path = tmp_path / "run" / "train_val.prototxt"
    caffe.set_mode_cpu()
    caffe.set_random_seed(0)
    model_net = caffe.Net(str(net_path), str(resolve_init_weights(MODEL)), caffe.TRAIN)
    model_net.forward()
    expected = _losses(model_net)
    caffe.set_random_seed(0)
    scratch = caffe.Net(str(net_path), caffe.TRAIN)
    scratch.forward()
    from_scratch = _losses(scratch)
    for name, value in expected.items():
        assert first[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert any(abs(first[n] - from_scratch[n]) > 1e-2 for n in expected)


def _read_csv(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mining_round_keeps_exactly_the_scored_false_positives(tmp_path):
    from data_prep.readers import read_dataset
    from data_prep.readers.common import load_image
    from pipeline.backends import make_backend
    from pipeline.model_store import load_model
    from pipeline.geometry import make_batch
    from training.mining import MiningSpec, background_proposals, hard_negatives, mine_round, model_scorer, photo_rng

    cfg = load_config()
    wider = read_dataset("wider", DATA_ROOT / "wider_train", split="train-fit", config=cfg)[:2]
    free = read_dataset("face_free", DATA_ROOT / "face_free")[:1]
    records = wider + free
    probe = MiningSpec(tmp_path / "unused.jsonl", round=1, threshold=0.5, proposals_per_photo=40, keep_per_photo=40)

    # the proposals through pycaffe directly (not the pipeline's ONNX Runtime backend)
    model = load_model(MODEL)
    net = make_backend("caffe", model.prototxt, model.caffemodel)
    direct = []
    for record in records:
        image = load_image(record.path)
        boxes = background_proposals(record, image, cfg, probe, photo_rng(probe, record))
        direct.append((record, boxes, net.forward(make_batch(image, boxes, cfg.input.size,
                                                              cfg.input.mean_bgr))["detection_prob"][:, 1]))
    # the threshold halfway between the 6th and 7th highest background score: whatever the model,
    # exactly 6 regions are above it (the proposals are a function of the photo and the round only)
    ranked = np.sort(np.concatenate([p for _, _, p in direct]))[::-1]
    threshold = float(np.round((ranked[5] + ranked[6]) / 2, 6))
    spec = MiningSpec(tmp_path / "pool.jsonl", round=1, threshold=threshold, proposals_per_photo=40, keep_per_photo=40)
    counts = mine_round(records, model_scorer(MODEL, cfg), cfg, spec, progress=False)

    expected, borderline = set(), set()
    for record, boxes, probs in direct:
        for k in hard_negatives(probs, spec.threshold, spec.keep_per_photo):
            expected.add((str(record.path), tuple(np.round(boxes[k], 2))))
        borderline |= {(str(record.path), tuple(np.round(b, 2))) for b, p in zip(boxes, probs) if abs(p - spec.threshold) < 1e-3}
    got = {(d["image"], tuple(d["box"])) for d in map(json.loads, (tmp_path / "pool.jsonl").read_text().splitlines())}
    assert got - borderline == expected - borderline
    assert counts == {"threshold": threshold, "photos": 3, "regions_scored": sum(len(b) for _, b, _ in direct),
                      "kept": len(got)}
    assert len(expected) == 6 and 6 - len(borderline) <= len(got) <= 6 + len(borderline)
    # a rerun of the same round skips every finished photo and adds nothing
    again = mine_round(records, model_scorer(MODEL, cfg), cfg, spec, progress=False)
    assert again["kept"] == len(got) and len((tmp_path / "pool.jsonl").read_text().splitlines()) == len(got)


def test_make_train_hyperface_piece_from_model_resumes_and_records(repo_root, tmp_path, caffe_env):
    """`make train-hyperface` = one piece from a model folder: resumable, validated, and its export
    appends this piece to the training record of the model it started from."""
    import subprocess
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text("training:\n  batch_size: 4\n  snapshot_every: 2\n  val_every: 2\n  val_wider_photos: 2\n"
                        "  val_helen_photos: 2\n  val_landmark_crops: 4\n  val_gender_crops: 4\n")
    out = tmp_path / "piece"

    def make(iters):
        cmd = ["make", "-s", "train-hyperface", f"INIT_MODEL={MODEL}", f"TRAIN_OUT={out}", f"ITERS={iters}",
               "LR=0.0001", f"CONFIG={cfg_path}", "VAL_AFW=", f"EXPORT={out}/model"]
        return subprocess.run(cmd, cwd=repo_root, env=caffe_env, capture_output=True, text=True, timeout=600)

    first = make(2)
    assert first.returncode == 0, first.stderr[-3000:]
    second = make(4)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stderr and "hyperface_iter_2.solverstate" in second.stderr
    rows = _read_csv(out / "hyperface" / "losses.csv")
    assert [int(r["iter"]) for r in rows] == [1, 2, 3, 4]
    val = _read_csv(out / "validation.csv")
    assert [int(r["iteration"]) for r in val] == [2, 4]
    assert all(0.0 <= float(r["region_ap"]) <= 1.0 for r in val)
    meta = json.loads((out / "model" / "model.json").read_text())["meta"]
    before = json.loads((MODEL / "model.json").read_text())["meta"]
    n_before = len(before["pieces"]) if "pieces" in before else 1
    assert len(meta["pieces"]) == n_before + 1
    last = meta["pieces"][-1]
    assert last["iterations"] == 4 and last["base_lr"] == 0.0001 and last["batch_size"] == 4
    assert [int(v["iteration"]) for v in last["validation"]] == [2, 4]
    assert last["pools"]["faces"]["utkface"] == 2500
    # conv1 is frozen (a folded-BatchNorm net's conv1 weights are ~1e-4: one step wrecked them) and the
    # solver clips the gradient norm; the other layers trained
    assert last["frozen_layers"] == ["conv1"] and last["clip_gradients"] == 20.0
    assert "clip_gradients: 20.0" in (out / "hyperface" / "solver.prototxt").read_text()
    before_w, after_w = np.load(MODEL / "weights_fp16.npz"), np.load(out / "model" / "weights_fp16.npz")
    assert np.array_equal(before_w["conv1#0"], after_w["conv1#0"]) and np.array_equal(before_w["conv1#1"], after_w["conv1#1"])
    assert not np.array_equal(before_w["conv2#0"], after_w["conv2#0"])
    # a piece does not train the proposal net: the model keeps the one it started from
    assert (out / "model" / "proposals" / "model.json").read_bytes() == (MODEL / "proposals" / "model.json").read_bytes()


def test_copy_proposal_net(tmp_path):
    from core.model_store import copy_proposal_net
    src, dst = tmp_path / "a", tmp_path / "b"
    (src / "proposals").mkdir(parents=True)
    (src / "proposals" / "model.json").write_text("{}")
    (dst / "proposals").mkdir(parents=True)
    (dst / "proposals" / "stale.bin").write_text("x")
    assert copy_proposal_net(src, dst) is True
    assert sorted(p.name for p in (dst / "proposals").iterdir()) == ["model.json"]   # replaced, not merged
    assert copy_proposal_net(tmp_path / "none", dst) is False


def test_frozen_layers_get_zero_learning_rate():
    from training.stage import TrainingError, with_frozen_layers
    text = ('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
            'param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 } '
            'convolution_param { num_output: 2 kernel_size: 3 } }\n'
            'layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 2 } }\n')
    out = with_frozen_layers(text, ("conv1", "fc"))
    assert out.count("lr_mult: 0.0") == 4 and out.count("decay_mult: 0.0") == 4  # fc had no param: both added
    assert with_frozen_layers(text, ()) == text
    with pytest.raises(TrainingError, match="conv9"):
        with_frozen_layers(text, ("conv9",))
