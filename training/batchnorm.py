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


def export_folded(train_caffemodel, deploy_prototxt, out_caffemodel):
    """Fold the BN pairs of a training snapshot into a caffemodel for `deploy_prototxt`."""
    from core.model_store import read_caffemodel, write_caffemodel
    return write_caffemodel(deploy_prototxt, fold_batchnorm(read_caffemodel(train_caffemodel)), out_caffemodel)
