"""HF-ResNet: the committed prototxts equal generate.py's output; one deploy build checks the
2048-d fused feature, the fusion shapes and parity with OpenCV DNN."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np

from test_nets_support import caffe, randomize

from core import net_io
from prototxt import PROTOTXT_DIR, model_path
from prototxt.netspec_utils import read_net


def _generator():
    spec = importlib.util.spec_from_file_location("hf_resnet_generate", PROTOTXT_DIR / "hf_resnet" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_equal_generator_output():
    for name, text in _generator().generate().items():
        committed = (PROTOTXT_DIR / "hf_resnet" / name).read_text()
        assert committed == text, f"prototxt/hf_resnet/{name} drifted; rerun prototxt/hf_resnet/generate.py"


def test_resnet101_structure_and_no_dropout():
    net = read_net(model_path("hf_resnet", "train_val"))
    names = [layer.name for layer in net.layer]
    convs = [l for l in net.layer if l.type == "Convolution" and (l.name == "conv1" or "_branch" in l.name)]
    assert len(convs) == 1 + 3 * (3 + 4 + 23 + 3) + 4  # conv1, 33 bottlenecks of 3 convs, 4 projections
    assert {"res2c", "res3b3", "res4b22", "res5c", "fuse3", "fuse4", "fuse5"} <= set(names)
    assert not any(l.type == "Dropout" for l in net.layer)
    deploy = read_net(model_path("hf_resnet"))
    assert all(l.batch_norm_param.use_global_stats for l in deploy.layer if l.type == "BatchNorm")


def test_deploy_fused_feature_and_opencv(tmp_path):
    net = caffe.Net(str(model_path("hf_resnet")), caffe.TEST)
    shapes = {"res2c": (256, 57, 57), "res3b3": (512, 29, 29), "fuse3": (512, 29, 29), "fuse4": (1024, 15, 15),
              "fuse5": (2048, 8, 8), "pool_fused": (2048, 1, 1), "fc_pose": (512,)}
    for blob, shape in shapes.items():
        assert net.blobs[blob].data.shape == (1, *shape), blob
    assert set(net.outputs) == set(net_io.HYPERFACE_OUTPUTS)
    randomize(net, gain=0.5)
    for name, blobs in net.params.items():  # BatchNorm: mean 0, variance 1, scale factor 1
        if name.startswith("bn"):
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0.0, 1.0, 1.0
    weights = tmp_path / "hf_resnet.caffemodel"
    net.save(str(weights))
    x = np.random.default_rng(2).normal(0, 40, net.blobs["data"].data.shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    cv_net = cv2.dnn.readNetFromCaffe(str(model_path("hf_resnet")), str(weights))
    cv_net.setInput(x)
    names = list(net.outputs)
    for name, theirs in zip(names, cv_net.forward(names)):
        ours = net.blobs[name].data
        scale = max(1.0, float(np.abs(ours).max()))
        assert np.abs(ours - theirs.reshape(ours.shape)).max() / scale < 1e-4, name
