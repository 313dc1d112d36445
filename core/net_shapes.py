"""Blob and parameter shapes of a deploy prototxt, inferred from the prototxt alone (no Caffe).

Used to count FLOPs (benchmarks/speed.py), to make random or fixed weights for tests, and to check
weights against the net when exporting. Covers the layer types of this project's nets (AlexNet
family, R-CNN heads, SSD heads); a layer of another type gets unknown (None) output shapes, which is
an error only if a layer with parameters needs them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from core.caffe_proto import caffe_pb2
from core.errors import ModelError

SAME_SHAPE = {"ReLU", "Dropout", "LRN", "Softmax", "Sigmoid", "TanH", "Eltwise", "BatchNorm", "Scale",
              "Normalize", "PReLU", "Power", "AbsVal", "ELU", "Bias"}


@dataclass
class NetShapes:
    name: str
    blobs: dict[str, tuple | None] = field(default_factory=dict)        # blob name -> shape (N, ...) or None
    params: dict[str, list[tuple]] = field(default_factory=dict)         # layer name -> parameter blob shapes
    layer_types: dict[str, str] = field(default_factory=dict)
    flops: dict[str, int] = field(default_factory=dict)                  # layer -> multiply-add*2 per batch

    @property
    def total_flops(self) -> int:
        return int(sum(self.flops.values()))


def read_prototxt(path: str | Path):
    """NetParameter parsed from a text prototxt; ModelError naming the file on failure."""
    path = Path(path)
    net = caffe_pb2().NetParameter()
    try:
        text_format.Merge(path.read_text(), net)
    except FileNotFoundError:
        raise ModelError(path, "prototxt not found") from None
    except text_format.ParseError as err:
        raise ModelError(path, f"not a valid Caffe prototxt ({err})") from None
    return net


def _rep(values, default, n=2):
    values = list(values)
    if not values:
        return [default] * n
    return values * n if len(values) == 1 else values[:n]


def infer_shapes(prototxt: str | Path, batch: int | None = None) -> NetShapes:
    """Shapes of every blob and parameter of a deploy net (batch overrides the input's N)."""
    net = read_prototxt(prototxt)
    out = NetShapes(name=net.name)
    shapes = out.blobs
    for i, name in enumerate(net.input):  # legacy input: / input_shape / input_dim
        if net.input_shape:
            dims = tuple(net.input_shape[i].dim)
        else:
            dims = tuple(net.input_dim[4 * i:4 * i + 4])
        shapes[name] = ((batch,) + dims[1:]) if batch else dims
    for layer in net.layer:
        if any(inc.phase == caffe_pb2().TRAIN for inc in layer.include):
            continue
        t = layer.type
        out.layer_types[layer.name] = t
        ins = [shapes.get(b) for b in layer.bottom]
        x = ins[0] if ins else None
        tops: list[tuple | None] = [None] * len(layer.top)
        params: list[tuple] = []
        if t == "Input":
            for k, top in enumerate(layer.top):
                dims = tuple(layer.input_param.shape[min(k, len(layer.input_param.shape) - 1)].dim)
                tops[k] = ((batch,) + dims[1:]) if batch else dims
        elif t in ("Convolution", "Deconvolution") or t == "InnerProduct" or t == "Normalize" or t == "Scale":
            if x is None:
                raise ModelError(prototxt, f"layer {layer.name!r}: input shape unknown (bottom {layer.bottom[0]!r})")
            if t == "Convolution":
                p = layer.convolution_param
                kh, kw = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else _rep(p.kernel_size, 1)
                sh, sw = (p.stride_h, p.stride_w) if p.HasField("stride_h") else _rep(p.stride, 1)
                ph, pw = (p.pad_h, p.pad_w) if p.HasField("pad_h") else _rep(p.pad, 0)
                dh, dw = _rep(p.dilation, 1)
                g = p.group or 1
                oh = (x[2] + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
                ow = (x[3] + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
                tops[0] = (x[0], p.num_output, oh, ow)
                params = [(p.num_output, x[1] // g, kh, kw)] + ([(p.num_output,)] if p.bias_term else [])
                out.flops[layer.name] = 2 * x[0] * p.num_output * oh * ow * (x[1] // g) * kh * kw
            elif t == "InnerProduct":
                p = layer.inner_product_param
                axis = p.axis if p.HasField("axis") else 1
                fan_in = int(np.prod(x[axis:]))
                tops[0] = tuple(x[:axis]) + (p.num_output,)
                params = [(p.num_output, fan_in)] + ([(p.num_output,)] if p.bias_term else [])
                out.flops[layer.name] = 2 * int(np.prod(x[:axis])) * fan_in * p.num_output
            elif t == "Normalize":
                tops[0] = x
                params = [(1,) if layer.norm_param.channel_shared else (x[1],)]
            else:  # Scale with a learned scale (and optional bias)
                tops[0] = x
                params = [(x[1],)] + ([(x[1],)] if layer.scale_param.bias_term else [])
        elif t == "BatchNorm" and x is not None:
            tops[0] = x
            params = [(x[1],), (x[1],), (1,)]
        elif t in SAME_SHAPE:
            tops = [x] * len(layer.top)
        elif t == "Split":
            tops = [x] * len(layer.top)
        elif t == "Pooling" and x is not None:
            p = layer.pooling_param
            if p.global_pooling:
                tops[0] = (x[0], x[1], 1, 1)
            else:
                kh, kw = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size, p.kernel_size)
                sh, sw = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
                ph, pw = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
                oh = int(math.ceil((x[2] + 2 * ph - kh) / sh)) + 1  # Caffe rounds pooling up
                ow = int(math.ceil((x[3] + 2 * pw - kw) / sw)) + 1
                if ph and (oh - 1) * sh >= x[2] + ph:
                    oh -= 1
                if pw and (ow - 1) * sw >= x[3] + pw:
                    ow -= 1
                tops[0] = (x[0], x[1], oh, ow)
        elif t == "Concat" and all(s is not None for s in ins):
            axis = layer.concat_param.axis if layer.concat_param.HasField("axis") else 1
            merged = list(ins[0])
            merged[axis] = sum(s[axis] for s in ins)
            tops[0] = tuple(merged)
        elif t == "Flatten" and x is not None:
            axis = layer.flatten_param.axis if layer.flatten_param.HasField("axis") else 1
            tops[0] = tuple(x[:axis]) + (int(np.prod(x[axis:])),)
        elif t == "Permute" and x is not None:
            tops[0] = tuple(x[o] for o in layer.permute_param.order) + tuple(x[len(layer.permute_param.order):])
        elif t == "Reshape" and x is not None and layer.reshape_param.axis == 0 and layer.reshape_param.num_axes == -1:
            dims = [x[k] if d == 0 else int(d) for k, d in enumerate(layer.reshape_param.shape.dim)]
            if dims.count(-1) == 1:  # Caffe: 0 copies the input's dimension, -1 takes what is left
                dims[dims.index(-1)] = int(np.prod(x)) // int(np.prod([d for d in dims if d != -1]))
            tops[0] = tuple(dims)
        for top, shape in zip(layer.top, tops):
            shapes[top] = shape
        if params:
            out.params[layer.name] = params
    return out


def random_weights(prototxt: str | Path, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Random float32 weights for every parameter layer (He-normal weights, small biases)."""
    rng = np.random.default_rng(seed)
    shapes = infer_shapes(prototxt)
    weights = {}
    for layer, blob_shapes in shapes.params.items():
        blobs = []
        for k, shape in enumerate(blob_shapes):
            if k == 0 and len(shape) > 1:
                fan_in = int(np.prod(shape[1:]))
                blobs.append(rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32))
            elif shapes.layer_types[layer] in ("Normalize", "Scale") and k == 0:
                blobs.append(np.full(shape, 20.0 if shapes.layer_types[layer] == "Normalize" else 1.0, np.float32))
            else:
                blobs.append(rng.normal(0.0, 0.1, shape).astype(np.float32))
        weights[layer] = blobs
    return weights
