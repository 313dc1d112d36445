"""The PyTorch mirror of the deploy net (training/torch_net.py) and the GPU piece (training/accelerated.py),
checked against real pycaffe: same outputs for the same weights, BatchNorm folding exact, the train_val
losses of Caffe reproduced on the same sampler batch, weights round-tripped into a loadable model folder."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from core.config import DATA_ROOT, REPO_ROOT, load_config

torch = pytest.importorskip("torch", reason="the GPU piece's extra (requirements-train.txt) is not installed")

DEPLOY = REPO_ROOT / "prototxt" / "hyperface" / "deploy.prototxt"
MODEL = REPO_ROOT / "models" / "hyperface"


@pytest.fixture(scope="module")
def layers():
    from training.torch_net import layer_specs
    return layer_specs(DEPLOY)


@pytest.fixture(scope="module")
def shipped_weights():
    if not (MODEL / "model.json").is_file():
        pytest.skip("no shipped model")
    from core.model_store import load_model, read_caffemodel
    return read_caffemodel(load_model(MODEL).caffemodel)


def _caffe_outputs(caffe, weights, data):
    from core.model_store import write_caffemodel
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = write_caffemodel(DEPLOY, weights, os.path.join(tmp, "w.caffemodel"))
        net = caffe.Net(str(DEPLOY), str(path), caffe.TEST)
        net.blobs["data"].reshape(*data.shape)
        net.blobs["data"].data[...] = data
        out = net.forward()
        return {k: np.array(v) for k, v in out.items()}


def test_mirror_equals_pycaffe_on_the_shipped_weights(caffe, layers, shipped_weights):
    from training.torch_net import CaffeNet
    net = CaffeNet(layers).eval()
    net.load_deploy_weights(shipped_weights)
    rng = np.random.default_rng(0)
    data = rng.uniform(-120, 130, size=(3, 3, 227, 227)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(data))
    want = _caffe_outputs(caffe, shipped_weights, data)
    assert set(want) == {"detection_prob", "landmarks", "visibility", "pose", "gender_prob"}
    for name, value in want.items():
        np.testing.assert_allclose(got[name].numpy(), value, rtol=1e-4, atol=1e-4, err_msg=name)


def test_batchnorm_folds_into_the_plain_deploy_net(caffe, layers):
    """A BN net in TEST mode (random statistics) equals the plain deploy net with the folded weights,
    in torch and in pycaffe, within 1e-4."""
    from training.torch_net import CaffeNet
    torch.manual_seed(1)
    bn_net = CaffeNet(layers, batchnorm=True)
    with torch.no_grad():
        for bn in bn_net.bns.values():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    bn_net.eval()
    folded = bn_net.deploy_weights()
    plain = CaffeNet(layers).eval()
    plain.load_deploy_weights(folded)
    data = np.random.default_rng(2).uniform(-100, 100, size=(2, 3, 227, 227)).astype(np.float32)
    with torch.no_grad():
        with_bn = bn_net(torch.from_numpy(data))
        without = plain(torch.from_numpy(data))
    caffe_out = _caffe_outputs(caffe, folded, data)
    for name in ("detection_prob", "landmarks", "visibility", "pose", "gender_prob"):
        scale = max(1.0, float(with_bn[name].abs().max()))
        np.testing.assert_allclose(without[name].numpy(), with_bn[name].numpy(), atol=1e-4 * scale, err_msg=name)
        np.testing.assert_allclose(caffe_out[name], with_bn[name].numpy(), atol=1e-4 * scale, err_msg=name)
    # the BN net really differs from the unfolded convolutions (the test can fail)
    unfolded = CaffeNet(layers).eval()
    unfolded.load_deploy_weights({n: [c.weight.detach().numpy(), c.bias.detach().numpy()]
                                  for n, c in list(bn_net.convs.items()) + list(bn_net.fcs.items())})
    with torch.no_grad():
        assert not np.allclose(unfolded(torch.from_numpy(data))["landmarks"].numpy(), with_bn["landmarks"].numpy(),
                               atol=1e-3)


def test_losses_hand_computed():
    from core.labels import LABEL_LENGTH, OFFSETS, empty_label
    from training.torch_net import hyperface_losses, weighted_total
    labels = np.stack([empty_label(), empty_label(), empty_label()]).astype(np.float32)
    labels[0, OFFSETS["detection"]] = 1
    labels[1, OFFSETS["detection"]] = 0          # sample 2 stays ignored (-1)
    lm = OFFSETS["landmarks"].start
    labels[0, OFFSETS["landmarks_mask"].start] = 1.0
    labels[0, lm] = 0.5                          # target 0.5, prediction 1.5: (1)^2 -> 1 / (2 * 3)
    labels[0, OFFSETS["gender"]] = 1
    blobs = {
        "detection_score": torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]),
        "landmarks": torch.full((3, 42), 1.5),
        "visibility": torch.ones(3, 21),          # every visibility masked out: 0
        "pose": torch.ones(3, 3),
        "gender_score": torch.tensor([[0.0, math.log(3.0)], [9.0, 9.0], [1.0, 1.0]]),
    }
    losses = hyperface_losses(blobs, torch.from_numpy(labels))
    assert labels.shape[1] == LABEL_LENGTH
    # detection: mean over the 2 valid rows of -log p: ln 2 and -log(1/4) = ln 4
    assert float(losses["detection"]) == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    assert float(losses["landmarks"]) == pytest.approx(1.0 / 6.0, rel=1e-6)
    assert float(losses["visibility"]) == 0.0 and float(losses["pose"]) == 0.0
    assert float(losses["gender"]) == pytest.approx(-math.log(3 / 4), rel=1e-6)
    cfg = load_config()
    total = float(weighted_total(losses, cfg.loss_weights))
    assert total == pytest.approx(1.0 * float(losses["detection"]) + 5.0 / 6.0 + 2.0 * -math.log(0.75), rel=1e-6)


@pytest.mark.skipif(not (DATA_ROOT / "wider_train").is_dir(), reason="needs ../shared/data")
def test_mirror_losses_equal_caffe_train_val_on_the_same_batch(caffe, tmp_path, layers, shipped_weights):
    """The Caffe train net (train_val.prototxt fed by the sampler layer) and the mirror give the same
    task losses for the shipped weights on sampler batch 0."""
    from training.sampler import sampler_from_spec, sampler_sets, write_spec
    from training.stage import StageSpec, prepare_run, resolve_init_weights
    from training.torch_net import CaffeNet, hyperface_losses
    cfg = load_config()
    spec_path = write_spec(tmp_path / "sampler.json", sampler_sets(DATA_ROOT, cfg), None, None, batch_size=6, seed=5)
    stage = StageSpec("hyperface", tmp_path, tmp_path / "run", 1, 6, 1e-4, 100, MODEL, None, seed=0,
                      sampler_spec=spec_path, lr_policy="poly", lr_power=1.0)
    prepare_run(stage)
    net = caffe.Net(str(tmp_path / "run" / "train_val.prototxt"), str(resolve_init_weights(MODEL)), caffe.TRAIN)
    net.forward()
    caffe_losses = {name[len("loss_"):]: float(net.blobs[name].data) for name in net.outputs if name.startswith("loss_")}
    data, labels = sampler_from_spec(spec_path).batch(0)
    np.testing.assert_array_equal(net.blobs["data"].data, data)   # the same batch
    mirror = CaffeNet(layers).eval()
    mirror.load_deploy_weights(shipped_weights)
    with torch.no_grad():
        got = hyperface_losses(mirror(torch.from_numpy(data)), torch.from_numpy(labels.reshape(len(labels), -1)))
    assert set(caffe_losses) == set(got)
    for name, value in caffe_losses.items():
        assert float(got[name]) == pytest.approx(value, rel=1e-3, abs=1e-5), name
    assert caffe_losses["detection"] > 0 and caffe_losses["landmarks"] > 0


def test_weight_parts_round_trip_and_lr_schedule(tmp_path, layers):
    from training.accelerated import load_weight_parts, lr_at, save_weight_parts
    from training.torch_net import CaffeNet
    weights = CaffeNet(layers).deploy_weights()
    paths = save_weight_parts(weights, tmp_path)
    # 32.4 M values in fp16 (fc_full alone is 42 MB): 4 files, each under the 16 MiB a lent machine returns
    assert len(paths) == 4 and all(p.stat().st_size < 16 * 2 ** 20 for p in paths)
    back = load_weight_parts(tmp_path)
    assert sorted(back) == sorted(weights)
    for layer, blobs in weights.items():
        for a, b in zip(blobs, back[layer]):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a.astype(np.float16).astype(np.float32), b)
    assert lr_at(0, 1000, 0.02, 100, 1.0) == pytest.approx(0.0002)
    assert lr_at(99, 1000, 0.02, 100, 1.0) == pytest.approx(0.02)
    assert lr_at(550, 1000, 0.02, 100, 1.0) == pytest.approx(0.01)
    assert lr_at(1000, 1000, 0.02, 100, 1.0) == 0.0


@pytest.mark.skipif(not (DATA_ROOT / "wider_train").is_dir(), reason="needs ../shared/data")
def test_cpu_piece_trains_exports_and_imports_a_loadable_model(tmp_path, layers):
    """A 6-iteration piece (CPU, from scratch with BN) with a mining round after iteration 3 writes its
    losses, held-out rows, mined pool and record, and imports into a model folder whose pipeline
    forward equals the mirror's with the exported (BN-folded) weights."""
    import gzip
    from pipeline.backends import make_backend
    from pipeline.model_store import load_model
    from training.accelerated import RECORD, import_piece, main
    net_json = tmp_path / "net.json"
    net_json.write_text(json.dumps(layers))
    out = tmp_path / "piece"
    rc = main(["train", "--data-root", str(DATA_ROOT), "--net", str(net_json), "--out", str(out), "--cpu",
               "--iters", "6", "--batch", "8", "--lr", "0.01", "--warmup", "1", "--workers", "0",
               "--log-every", "2", "--heldout-every", "3", "--heldout-batches", "1", "--no-prefill",
               "--mine-at", "0.5", "--mine-candidates", "512", "--mine-threshold", "0.0", "--mine-keep", "50"])
    assert rc == 0
    record = json.loads((out / RECORD).read_text())
    assert record["iterations"] == 6 and record["final"] and record["batch_size"] == 8
    assert [h["iteration"] for h in record["heldout_loss"]] == [3, 6]
    rows = (out / "losses.csv").read_text().splitlines()
    assert len(rows) == 1 + 3
    # threshold 0: every one of the 2 x 256 candidates is above it, the 50 best are kept
    assert record["mining"]["candidates"] == 512 and record["mining"]["above_threshold"] == 512
    assert record["mining"]["kept"] == 50 and record["mining"]["at_iteration"] == 3
    with gzip.open(out / "mined.jsonl.gz", "rt") as f:
        mined = [json.loads(line) for line in f]
    assert len(mined) == 50 and all((DATA_ROOT / m["image"]).is_file() for m in mined)
    assert [m["score"] for m in mined] == sorted((m["score"] for m in mined), reverse=True)
    model_dir = import_piece(out, tmp_path / "model")
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["meta"]["pieces"][0]["iterations"] == 6
    # the mined regions as a pool the next (Caffe) piece reads here: same boxes, paths under the data root
    from training.sampler import read_mined
    pool = read_mined(meta["meta"]["pieces"][0]["mined_pool"])
    assert [p for p, _b in pool] == [DATA_ROOT.resolve() / m["image"] for m in mined]
    assert all(p.is_file() for p, _b in pool)
    np.testing.assert_array_equal(np.array([b for _p, b in pool]), np.array([m["box"] for m in mined]))
    model = load_model(model_dir)
    backend = make_backend("onnxruntime", model.prototxt, model.caffemodel)
    data = np.random.default_rng(4).uniform(-100, 100, size=(2, 3, 227, 227)).astype(np.float32)
    from training.accelerated import load_weight_parts
    from training.torch_net import CaffeNet
    mirror = CaffeNet(layers).eval()
    mirror.load_deploy_weights({k: [b.astype(np.float16).astype(np.float32) for b in v]
                                for k, v in load_weight_parts(out).items()})
    with torch.no_grad():
        want = mirror(torch.from_numpy(data))
    got = backend.forward(data)
    np.testing.assert_allclose(got["landmarks"], want["landmarks"].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(got["detection_prob"], want["detection_prob"].numpy(), rtol=1e-3, atol=1e-3)
