"""BatchNorm for from-scratch Caffe training, folded into the convolutions at export.

A net of prototxt/ trains with `BatchNorm` + `Scale` after the convolutions named here (Caffe's
BatchNorm normalises only; the learned gain and shift are the Scale layer's), so it converges from
random weights on 2 CPU cores at a learning rate that diverges without it. At export each pair is
folded into its convolution,

    W' = W * k,   b' = (b - mean) * k + beta,   k = gamma / sqrt(var + eps),

so the deploy net is the hand-written one of prototxt/ (no BatchNorm) and equals the BN net in TEST
mode (global statistics) up to float rounding (tests/test_batchnorm.py).
"""
from __future__ import annotations

import numpy as np

from core.caffe_proto import caffe_pb2

BN_SUFFIX, SCALE_SUFFIX = "_bn", "_scale"
BN_EPS = 1e-5  # Caffe's BatchNormParameter default; written explicitly so the fold uses the same value


def base_convolutions(net) -> list[str]:
    """Convolutions of the feature extractor: those whose output goes through a ReLU (SSD's loc/conf
    heads and HyperFace's score layers are linear and keep no BatchNorm)."""
    relu_inputs = {layer.bottom[0] for layer in net.layer if layer.type == "ReLU"}
    return [layer.name for layer in net.layer
            if layer.type == "Convolution" and layer.top[0] in relu_inputs]


def with_batchnorm(net, convolutions: list[str] | None = None):
    """A copy of NetParameter `net` with BatchNorm + Scale (in place on the convolution's top) after
    each named convolution (default: base_convolutions)."""
    names = set(base_convolutions(net) if convolutions is None else convolutions)
    out = caffe_pb2().NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    found = set()
    for layer in net.layer:
        out.layer.add().CopyFrom(layer)
        if layer.type != "Convolution" or layer.name not in names:
            continue
        found.add(layer.name)
        top = layer.top[0]
        bn = out.layer.add(name=layer.name + BN_SUFFIX, type="BatchNorm", bottom=[top], top=[top])
        bn.batch_norm_param.eps = BN_EPS
        for _ in range(3):  # mean, variance, scale factor: statistics, not learned by SGD
            bn.param.add(lr_mult=0, decay_mult=0)
        scale = out.layer.add(name=layer.name + SCALE_SUFFIX, type="Scale", bottom=[top], top=[top])
        scale.scale_param.bias_term = True
        scale.param.add(lr_mult=1, decay_mult=0)
        scale.param.add(lr_mult=1, decay_mult=0)
    missing = names - found
    if missing:
        raise ValueError(f"no convolution named {sorted(missing)} in net {net.name!r}")
    return out


def fold_batchnorm(weights: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Weights of the BN training net -> weights of the deploy net: every `<conv>_bn` / `<conv>_scale`
    pair folded into `<conv>` (float32) and dropped; other layers unchanged."""
    out = {}
    for name, blobs in weights.items():
        if name.endswith(BN_SUFFIX) or name.endswith(SCALE_SUFFIX):
            continue
        if name + BN_SUFFIX not in weights:
            out[name] = [np.asarray(b, dtype=np.float32) for b in blobs]
            continue
        mean, var, factor = (np.asarray(b, dtype=np.float64) for b in weights[name + BN_SUFFIX])
        factor = float(factor.ravel()[0])
        factor = 0.0 if factor == 0 else 1.0 / factor  # Caffe stores sums scaled by this factor
        gamma, beta = (np.asarray(b, dtype=np.float64) for b in weights[name + SCALE_SUFFIX])
        k = gamma / np.sqrt(var * factor + BN_EPS)
        w = np.asarray(blobs[0], dtype=np.float64)
        b = np.asarray(blobs[1], dtype=np.float64) if len(blobs) > 1 else np.zeros(w.shape[0])
        out[name] = [(w * k[:, None, None, None]).astype(np.float32),
                     ((b - mean * factor) * k + beta).astype(np.float32)]
    return out


def recompute_statistics(train_prototxt, caffemodel, batches: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Weights of `caffemodel` with every BatchNorm's statistics replaced by the plain average over
    `batches` training batches of the final weights ("precise BN").

    Why: Caffe keeps a moving average (fraction 0.999, about the last 1,000 iterations), which lags far
    behind weights that still change fast: after 1,000 SSD iterations from scratch the TEST-mode net's
    conv4_1 outputs were 50 % off the batch-normalised net's on the same training batch, and its boxes
    landed away from the faces; with recomputed statistics the class scores differed by 1.6 %.
    With moving_average_fraction 1 Caffe's running sums become plain sums over the batches run here.
    """
    import os
    import tempfile
    from pathlib import Path

    from google.protobuf import text_format

    from prototxt.netspec_utils import read_net

    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    net_param = read_net(train_prototxt)
    bn_layers = [layer.name for layer in net_param.layer if layer.type == "BatchNorm"]
    if not bn_layers:
        raise ValueError(f"{train_prototxt}: no BatchNorm layer")
    for layer in net_param.layer:
        if layer.type == "BatchNorm":
            layer.batch_norm_param.moving_average_fraction = 1.0
            layer.batch_norm_param.use_global_stats = False
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_precise_bn.prototxt"
        path.write_text(text_format.MessageToString(net_param))
        net = caffe.Net(str(path), caffe.TRAIN, weights=str(caffemodel))
    for name in bn_layers:
        for blob in net.params[name]:
            blob.data[...] = 0
    last = max(list(net._layer_names).index(name) for name in bn_layers)
    for _ in range(batches):
        net.forward(end=net._layer_names[last])  # the loss (SSD's MultiBoxLoss) is not needed
    return {name: [np.array(b.data, dtype=np.float32) for b in blobs] for name, blobs in net.params.items()}
