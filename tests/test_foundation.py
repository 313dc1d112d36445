"""Foundation checks: the real Caffe built by `make setup` trains, runs Python layers,
exports models OpenCV DNN can read, has the SSD layers, and the env files agree."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures"


# ---------------------------------------------------------------- 1. training
def _toy_images(n, rng):
    """2-class toy set: class 0 bright on the left half, class 1 on the right half."""
    labels = rng.integers(0, 2, size=n)
    imgs = rng.integers(0, 60, size=(n, 1, 8, 8)).astype(np.uint8)
    for i, lab in enumerate(labels):
        cols = slice(0, 4) if lab == 0 else slice(4, 8)
        imgs[i, 0, :, cols] += 150
    return imgs, labels


TRAIN_NET = """name: "toy"
layer {{ name: "data" type: "Data" top: "data" top: "label"
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "{source}" batch_size: 32 backend: LMDB }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 16 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVER = """net: "{net}"
base_lr: 0.1
momentum: 0.9
lr_policy: "fixed"
max_iter: 50
display: 10
snapshot: 50
snapshot_prefix: "{prefix}"
random_seed: 7
solver_mode: CPU
"""


@pytest.fixture
def toy_solver(tmp_path, tmp_lmdb):
    imgs, labels = _toy_images(256, np.random.default_rng(0))
    db = tmp_lmdb(imgs, labels, name="toy_train.lmdb")
    net = tmp_path / "train.prototxt"
    net.write_text(TRAIN_NET.format(source=db))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(SOLVER.format(net=net, prefix=tmp_path / "snap" / "toy"))
    (tmp_path / "snap").mkdir()
    return solver


def test_pycaffe_trains_from_lmdb(caffe, toy_solver):
    solver = caffe.SGDSolver(str(toy_solver))
    assert solver.net.blobs["data"].data.shape == (32, 1, 8, 8)
    losses = []
    for _ in range(50):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert 0.3 < first < 2.0, losses[:3]          # ~ln 2 at the start
    assert last <= 0.5 * first, (first, last)
    # the LMDB really fed the labels: accuracy on the last batch is high
    pred = solver.net.blobs["ip2"].data.argmax(1)
    assert (pred == solver.net.blobs["label"].data.astype(int)).mean() >= 0.9


def test_caffe_tool_trains_and_snapshots(caffe_bin, caffe_env, toy_solver):
    env = dict(caffe_env, GLOG_minloglevel="0", GLOG_logtostderr="1")
    out = subprocess.run([str(caffe_bin), "train", f"--solver={toy_solver}"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    snap = toy_solver.parent / "snap"
    assert (snap / "toy_iter_50.caffemodel").stat().st_size > 0
    assert (snap / "toy_iter_50.solverstate").exists()
    losses = [float(m) for m in re.findall(r"Iteration \d+[^\n]*?, loss = ([0-9.eE+-]+)", out.stderr)]
    assert len(losses) >= 2, out.stderr[-2000:]
    assert losses[-1] <= 0.5 * losses[0], losses


# ---------------------------------------------------------------- 2. Python layer
PY_NET = """name: "pylayer"
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "affine" type: "Python" bottom: "x" top: "y"
  python_param { module: "foundation_layers" layer: "AffineLayer"
                 param_str: '{"scale": 3.0, "shift": -1.5}' } }
"""


def test_python_layer_forward_backward(caffe, tmp_path):
    sys.path.insert(0, str(FIXTURES))
    proto = tmp_path / "py.prototxt"
    proto.write_text(PY_NET)
    net = caffe.Net(str(proto), caffe.TEST)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    net.blobs["x"].data[...] = x
    y = net.forward()["y"]
    np.testing.assert_allclose(y, 3.0 * x - 1.5, rtol=0, atol=1e-6)
    assert y[1, 2] == pytest.approx(13.5)
    net.blobs["y"].diff[...] = 1.0
    net.backward(start="affine", end="affine")  # runs up to 'affine' inclusive
    np.testing.assert_allclose(net.blobs["x"].diff, np.full((2, 3), 3.0), atol=1e-6)


# ---------------------------------------------------------------- 3. OpenCV DNN
DEPLOY = """name: "deploy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 }
    bias_filler { type: "constant" value: 0.2 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_opencv_dnn_matches_pycaffe(caffe, tmp_path):
    import cv2

    proto = tmp_path / "deploy.prototxt"
    proto.write_text(DEPLOY)
    model = tmp_path / "deploy.caffemodel"
    caffe.set_random_seed(3)
    net = caffe.Net(str(proto), caffe.TEST)
    net.save(str(model))
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    ref_fc = net.blobs["fc"].data.copy()
    ref_prob = net.blobs["prob"].data.copy()
    assert np.abs(ref_fc).max() > 1e-2  # non-trivial output

    cvnet = cv2.dnn.readNetFromCaffe(str(proto), str(model))
    cvnet.setInput(x)
    fc, prob = cvnet.forward(["fc", "prob"])
    assert np.abs(fc - ref_fc).max() < 1e-4
    assert np.abs(prob.reshape(ref_prob.shape) - ref_prob).max() < 1e-4
    assert prob.sum() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- 4. SSD layers
def test_ssd_layers_registered(caffe):
    types = set(caffe.layer_type_list())
    for t in ("PriorBox", "MultiBoxLoss", "DetectionOutput", "Normalize", "Permute",
              "AnnotatedData", "Python", "Data", "HDF5Data", "ImageData"):
        assert t in types, t


# ---------------------------------------------------------------- 5. env files
CONDA_TO_PIP = {"opencv": "opencv-contrib-python-headless", "python-lmdb": "lmdb",
                "pillow": "pillow"}


def _norm(name):
    return re.split(r"[=<>~!\[ ;]", name.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_requirements(repo_root):
    req = {_norm(line) for line in (repo_root / "requirements.txt").read_text().splitlines()
           if line.strip() and not line.lstrip().startswith("#")}
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    conda = {_norm(d) for d in env["dependencies"] if isinstance(d, str)}
    assert "caffe" in conda and "conda-forge" in env["channels"]
    conda = {CONDA_TO_PIP.get(n, n) for n in conda - {"python", "caffe"}}
    assert req == conda, (sorted(req - conda), sorted(conda - req))
    assert "numpy" in req and "protobuf" in req and len(req) >= 15


# ---------------------------------------------------------------- 6. two readers, one LMDB
TWO_NETS = """
import sys, numpy as np, caffe
caffe.set_mode_cpu()
a = caffe.Net(sys.argv[1], caffe.TRAIN); a.forward()
b = caffe.Net(sys.argv[1], caffe.TRAIN); b.forward()   # same layer name + same LMDB
print("labels", a.blobs["label"].data.astype(int).tolist(), b.blobs["label"].data.astype(int).tolist())
"""


def test_two_nets_same_data_layer_do_not_hang(caffe_env, tmp_path, tmp_lmdb):
    """Each Data layer has its own LMDB cursor (the stock DataReader deadlocks here)."""
    imgs = np.zeros((6, 1, 2, 2), np.uint8)
    db = tmp_lmdb(imgs, [5, 1, 4, 2, 3, 0], name="two.lmdb")
    net = tmp_path / "two.prototxt"
    net.write_text(f'layer {{ name: "data" type: "Data" top: "data" top: "label"\n'
                   f'  data_param {{ source: "{db}" batch_size: 3 backend: LMDB }} }}\n')
    out = subprocess.run([sys.executable, "-c", TWO_NETS, str(net)], env=caffe_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "labels [5, 1, 4] [5, 1, 4]" in out.stdout


# ---------------------------------------------------------------- data folder
def test_data_root_defaults_beside_the_checkout_and_follows_hyperface_data(tmp_path):
    import os
    repo = Path(__file__).resolve().parent.parent
    probe = [sys.executable, "-c", "from core.config import DATA_ROOT; print(DATA_ROOT)"]
    env = {k: v for k, v in os.environ.items() if k != "HYPERFACE_DATA"}
    default = subprocess.run(probe, cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()
    if (repo.parent / "shared" / "data").is_dir():   # (a clone elsewhere: checked below from the origin)
        assert Path(default) == repo.parent / "shared" / "data"
    moved = subprocess.run(probe, cwd=repo, env={**env, "HYPERFACE_DATA": str(tmp_path)},
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(moved) == tmp_path
    # a local clone elsewhere (as CI clones to /tmp) finds the data beside the checkout it came from
    if (repo.parent / "shared" / "data").is_dir():
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", "HEAD", "--", "core"], check=True)
        found = subprocess.run(probe, cwd=clone, env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert Path(found) == repo.parent / "shared" / "data"
