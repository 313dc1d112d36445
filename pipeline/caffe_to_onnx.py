"""Caffe deploy.prototxt + caffemodel -> ONNX graph, for the onnxruntime backend (pipeline/backends.py).

A small converter written with the `onnx` helper API and caffe_pb2 (core/caffe_proto.py), for
exactly the layer types this project's deploy nets use:

  Input, Convolution (group, pad, stride; dilation), ReLU (and leaky slope), LRN ACROSS_CHANNELS
  (Caffe and ONNX both scale alpha by 1/local_size; written by default as square -> 1x1 conv with a
  banded channel matrix -> pow -> multiply, because onnxruntime's LRN kernel is single-threaded and
  took more than half of the HyperFace forward), Pooling MAX/AVE (Caffe's ceil rounding: ONNX
  ceil_mode=1; AVE windows that overhang input + padding rescaled to Caffe's clipped divisor;
  checked numerically in tests/test_onnx_backend.py),
  global pooling, Concat, InnerProduct (Flatten + Gemm), Softmax, Eltwise SUM (coeffs)/PROD/MAX,
  BatchNorm (Caffe's scale factor folded in), Scale (learned, optional bias), Flatten, Dropout and
  Split (identities); and for the SSD proposal net: Normalize (L2 over channels or the whole map,
  learned scale), Permute (Transpose) and Reshape (Caffe's 0 / -1 dims are ONNX's). Only the layers
  the requested outputs depend on are converted, so the SSD net converts up to `mbox_loc` /
  `mbox_conf_flatten`; its PriorBox and DetectionOutput run in numpy (pipeline/ssd_decode.py).

Any other layer type raises UnsupportedLayerError naming the prototxt, the layer and its type.
Blob names are kept: the graph input is `data` (batch dimension symbolic) and each output carries
the Caffe blob name. In-place layers (ReLU top == bottom) get fresh tensor names.

    onnx_path = cached_onnx(prototxt, caffemodel)   # converted once, cached under caffe_proto.cache_dir()
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.caffe_proto import cache_dir, caffe_pb2
from pipeline.errors import ModelError
from core.model_store import atomic_write_bytes, read_caffemodel
from core.net_shapes import infer_shapes, read_prototxt

log = logging.getLogger(__name__)
OPSET = 17
CONVERTER_VERSION = 5  # bump when the conversion changes, so cached .onnx files are rebuilt
SUPPORTED = ("Input", "Convolution", "ReLU", "LRN", "Pooling", "Concat", "InnerProduct", "Softmax",
             "Eltwise", "BatchNorm", "Scale", "Flatten", "Dropout", "Split", "Normalize", "Permute", "Reshape")


class UnsupportedLayerError(ModelError):
    """A layer the Caffe -> ONNX converter cannot express (type or parameter)."""


def _pair(values, default: int, h=None, w=None) -> list[int]:
    """Caffe's repeated kernel/stride/pad value, or its _h/_w form, as [h, w]."""
    if h is not None:
        return [int(h), int(w)]
    values = list(values)
    if not values:
        return [default, default]
    return [int(values[0])] * 2 if len(values) == 1 else [int(v) for v in values[:2]]


class _Graph:
    """Builder: tracks the ONNX tensor currently holding each Caffe blob."""

    def __init__(self, prototxt: Path):
        self.prototxt = prototxt
        self.nodes: list = []
        self.inits: list = []
        self.current: dict[str, str] = {}
        self.used: set[str] = set()

    def name(self, wanted: str) -> str:
        out, k = wanted, 1
        while out in self.used:
            out, k = f"{wanted}#{k}", k + 1
        self.used.add(out)
        return out

    def const(self, name: str, array: np.ndarray) -> str:
        name = self.name(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def bottom(self, layer, k: int = 0) -> str:
        blob = layer.bottom[k]
        if blob not in self.current:
            raise ModelError(self.prototxt, f"layer {layer.name!r}: bottom blob {blob!r} is not produced before it")
        return self.current[blob]

    def node(self, op: str, inputs: list[str], top: str, layer_name: str, **attrs) -> str:
        out = self.name(top)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(f"{layer_name}/{op}"), **attrs))
        return out


def _unsupported(prototxt, layer, what: str):
    return UnsupportedLayerError(prototxt, f"layer {layer.name!r} ({layer.type}): {what} is not supported "
                                           f"by the ONNX converter; use backend 'opencv' or 'caffe'")


def _convert_layer(g: _Graph, layer, blobs: list[np.ndarray], shapes, lrn_as_conv: bool) -> None:
    t, pb = layer.type, caffe_pb2()
    p_path = g.prototxt
    top = layer.top[0] if layer.top else None
    if t == "Convolution":
        p = layer.convolution_param
        kernel = _pair(p.kernel_size, 1, *((p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (None, None)))
        stride = _pair(p.stride, 1, *((p.stride_h, p.stride_w) if p.HasField("stride_h") else (None, None)))
        pad = _pair(p.pad, 0, *((p.pad_h, p.pad_w) if p.HasField("pad_h") else (None, None)))
        dilation = _pair(p.dilation, 1)
        group = int(p.group or 1)
        if p.axis != 1 or len(kernel) != 2:
            raise _unsupported(p_path, layer, "axis != 1 or non-2D convolution")
        in_ch = shapes.blobs[layer.bottom[0]][1]
        w = blobs[0].reshape(p.num_output, in_ch // group, *kernel)
        inputs = [g.bottom(layer), g.const(f"{layer.name}.weight", w)]
        if p.bias_term:
            inputs.append(g.const(f"{layer.name}.bias", blobs[1].reshape(-1)))
        g.current[top] = g.node("Conv", inputs, top, layer.name, kernel_shape=kernel, strides=stride,
                                pads=pad + pad, dilations=dilation, group=group)
    elif t == "ReLU":
        slope = float(layer.relu_param.negative_slope)
        if slope:
            g.current[top] = g.node("LeakyRelu", [g.bottom(layer)], top, layer.name, alpha=slope)
        else:
            g.current[top] = g.node("Relu", [g.bottom(layer)], top, layer.name)
    elif t == "LRN":
        p = layer.lrn_param
        if p.norm_region != pb.LRNParameter.ACROSS_CHANNELS:
            raise _unsupported(p_path, layer, "LRN WITHIN_CHANNEL")
        if not lrn_as_conv:
            g.current[top] = g.node("LRN", [g.bottom(layer)], top, layer.name, size=int(p.local_size),
                                    alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k))
            return
        # b = x * (k + alpha/n * sum_{|c'-c| <= n/2} x_c'^2)^-beta, the window sum as a 1x1 convolution
        # with a banded CxC matrix (multithreaded GEMM; onnxruntime's LRN kernel runs on one core)
        x, ch, half = g.bottom(layer), shapes.blobs[layer.bottom[0]][1], int(p.local_size) // 2
        band = np.abs(np.subtract.outer(np.arange(ch), np.arange(ch))) <= half
        weight = (band * np.float32(p.alpha / p.local_size)).astype(np.float32).reshape(ch, ch, 1, 1)
        sq = g.node("Mul", [x, x], f"{layer.name}/sq", layer.name)
        scale = g.node("Conv", [sq, g.const(f"{layer.name}.band", weight),
                                g.const(f"{layer.name}.k", np.full(ch, p.k, np.float32))],
                       f"{layer.name}/scale", layer.name, kernel_shape=[1, 1])
        if np.float32(p.beta) == np.float32(0.75):  # AlexNet's beta: s^0.75 = sqrt(s) * sqrt(sqrt(s)), 2x faster than Pow
            root = g.node("Sqrt", [scale], f"{layer.name}/sqrt", layer.name)
            root4 = g.node("Sqrt", [root], f"{layer.name}/sqrt4", layer.name)
            power = g.node("Mul", [root, root4], f"{layer.name}/pow", layer.name)
            g.current[top] = g.node("Div", [x, power], top, layer.name)
        else:
            power = g.node("Pow", [scale, g.const(f"{layer.name}.beta", np.float32(-p.beta))],
                           f"{layer.name}/pow", layer.name)
            g.current[top] = g.node("Mul", [x, power], top, layer.name)
    elif t == "Pooling":
        p = layer.pooling_param
        if p.pool not in (pb.PoolingParameter.MAX, pb.PoolingParameter.AVE):
            raise _unsupported(p_path, layer, "pooling method STOCHASTIC")
        x = g.bottom(layer)
        if p.global_pooling:
            op = "GlobalMaxPool" if p.pool == pb.PoolingParameter.MAX else "GlobalAveragePool"
            g.current[top] = g.node(op, [x], top, layer.name)
            return
        kernel = _pair([p.kernel_size], 1, *((p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (None, None)))
        stride = _pair([p.stride], 1, *((p.stride_h, p.stride_w) if p.HasField("stride_h") else (None, None)))
        pad = _pair([p.pad], 0, *((p.pad_h, p.pad_w) if p.HasField("pad_h") else (None, None)))
        if p.pool == pb.PoolingParameter.MAX:
            g.current[top] = g.node("MaxPool", [x], top, layer.name, kernel_shape=kernel, strides=stride,
                                    pads=pad + pad, ceil_mode=1)
        else:
            # onnxruntime (count_include_pad=1, ceil_mode=1) divides every window by kh*kw; Caffe divides
            # by the window clipped to input + padding (padding counted, the ceil overhang not), so the
            # windows that overhang are rescaled by a constant map. (Pad + count_include_pad=0 would
            # express it directly, but onnxruntime's PadFusion rewrites that wrongly.)
            size = shapes.blobs[layer.bottom[0]][2:]
            out = g.node("AveragePool", [x], f"{layer.name}/avg" if _overhangs(size, kernel, stride, pad) else top,
                         layer.name, kernel_shape=kernel, strides=stride, pads=pad + pad, ceil_mode=1,
                         count_include_pad=1)
            if _overhangs(size, kernel, stride, pad):
                ratio = np.float32(kernel[0] * kernel[1]) / _caffe_pool_sizes(size, kernel, stride, pad)
                out = g.node("Mul", [out, g.const(f"{layer.name}.rescale", ratio[None, None].astype(np.float32))],
                             top, layer.name)
            g.current[top] = out
    elif t == "Concat":
        p = layer.concat_param
        axis = int(p.axis) if p.HasField("axis") else (int(p.concat_dim) if p.HasField("concat_dim") else 1)
        ins = [g.bottom(layer, k) for k in range(len(layer.bottom))]
        g.current[top] = g.node("Concat", ins, top, layer.name, axis=axis)
    elif t == "InnerProduct":
        p = layer.inner_product_param
        axis = int(p.axis) if p.HasField("axis") else 1
        if p.transpose:
            raise _unsupported(p_path, layer, "InnerProduct transpose: true")
        flat = g.node("Flatten", [g.bottom(layer)], f"{layer.name}/flat", layer.name, axis=axis)
        inputs = [flat, g.const(f"{layer.name}.weight", blobs[0].reshape(p.num_output, -1))]
        if p.bias_term:
            inputs.append(g.const(f"{layer.name}.bias", blobs[1].reshape(-1)))
        g.current[top] = g.node("Gemm", inputs, top, layer.name, transB=1)
    elif t == "Softmax":
        axis = int(layer.softmax_param.axis) if layer.softmax_param.HasField("axis") else 1
        g.current[top] = g.node("Softmax", [g.bottom(layer)], top, layer.name, axis=axis)
    elif t == "Eltwise":
        p = layer.eltwise_param
        ins = [g.bottom(layer, k) for k in range(len(layer.bottom))]
        if p.operation == pb.EltwiseParameter.SUM:
            coeffs = list(p.coeff) or [1.0] * len(ins)
            ins = [x if c == 1.0 else g.node("Mul", [x, g.const(f"{layer.name}.coeff{k}", np.float32(c))],
                                             f"{layer.name}/scaled{k}", layer.name)
                   for k, (x, c) in enumerate(zip(ins, coeffs))]
            g.current[top] = g.node("Sum", ins, top, layer.name)
        elif p.operation == pb.EltwiseParameter.PROD:
            out = ins[0]
            for k, x in enumerate(ins[1:]):
                out = g.node("Mul", [out, x], top if k == len(ins) - 2 else f"{layer.name}/prod{k}", layer.name)
            g.current[top] = out
        else:  # MAX
            g.current[top] = g.node("Max", ins, top, layer.name)
    elif t == "BatchNorm":
        p = layer.batch_norm_param
        factor = float(blobs[2].ravel()[0]) if len(blobs) > 2 else 1.0
        factor = 0.0 if factor == 0 else 1.0 / factor
        mean, var = blobs[0].ravel() * factor, blobs[1].ravel() * factor
        eps = float(p.eps) if p.HasField("eps") else 1e-5
        ch = mean.size
        ins = [g.bottom(layer), g.const(f"{layer.name}.gamma", np.ones(ch, np.float32)),
               g.const(f"{layer.name}.beta", np.zeros(ch, np.float32)),
               g.const(f"{layer.name}.mean", mean.astype(np.float32)),
               g.const(f"{layer.name}.var", var.astype(np.float32))]
        g.current[top] = g.node("BatchNormalization", ins, top, layer.name, epsilon=eps)
    elif t == "Scale":
        p = layer.scale_param
        if len(layer.bottom) != 1 or p.axis != 1 or p.num_axes != 1:
            raise _unsupported(p_path, layer, "Scale with two bottoms or axis/num_axes other than 1")
        rank = len(shapes.blobs[layer.bottom[0]])
        shape = (-1,) + (1,) * (rank - 2)
        out = g.node("Mul", [g.bottom(layer), g.const(f"{layer.name}.scale", blobs[0].reshape(shape))],
                     f"{layer.name}/mul" if p.bias_term else top, layer.name)
        if p.bias_term:
            out = g.node("Add", [out, g.const(f"{layer.name}.bias", blobs[1].reshape(shape))], top, layer.name)
        g.current[top] = out
    elif t == "Flatten":
        axis = int(layer.flatten_param.axis) if layer.flatten_param.HasField("axis") else 1
        if layer.flatten_param.HasField("end_axis") and layer.flatten_param.end_axis != -1:
            raise _unsupported(p_path, layer, "Flatten end_axis")
        g.current[top] = g.node("Flatten", [g.bottom(layer)], top, layer.name, axis=axis)
    elif t in ("Dropout", "Split"):
        for name in layer.top:
            g.current[name] = g.bottom(layer)
    elif t == "Normalize":
        # Caffe (SSD): x / sqrt(sum x^2 + eps) per position (across_spatial: false) or per image, times scale
        p = layer.norm_param
        eps = float(p.eps) if p.HasField("eps") else 1e-10
        across = p.across_spatial if p.HasField("across_spatial") else True
        shared = p.channel_shared if p.HasField("channel_shared") else True
        x = g.bottom(layer)
        sq = g.node("ReduceSumSquare", [x], f"{layer.name}/sumsq", layer.name, axes=[1, 2, 3] if across else [1], keepdims=1)
        norm = g.node("Sqrt", [g.node("Add", [sq, g.const(f"{layer.name}.eps", np.float32(eps))],
                                      f"{layer.name}/sumsq_eps", layer.name)], f"{layer.name}/norm", layer.name)
        unit = g.node("Div", [x, norm], f"{layer.name}/unit", layer.name)
        scale = blobs[0].reshape(()) if shared else blobs[0].reshape(1, -1, 1, 1)
        g.current[top] = g.node("Mul", [unit, g.const(f"{layer.name}.scale", scale.astype(np.float32))], top, layer.name)
    elif t == "Permute":
        order = [int(o) for o in layer.permute_param.order]
        rank = len(shapes.blobs[layer.bottom[0]])
        order += [k for k in range(rank) if k not in order]
        g.current[top] = g.node("Transpose", [g.bottom(layer)], top, layer.name, perm=order)
    elif t == "Reshape":
        p = layer.reshape_param
        if p.axis != 0 or p.num_axes != -1:
            raise _unsupported(p_path, layer, "Reshape with axis/num_axes")
        dims = np.asarray(list(p.shape.dim), dtype=np.int64)
        g.current[top] = g.node("Reshape", [g.bottom(layer), g.const(f"{layer.name}.shape", dims)], top, layer.name)
    else:
        raise _unsupported(p_path, layer, "layer type")


def _needed_layers(layers: list, outputs: list[str]) -> list:
    """The layers (in net order) that the output blobs depend on, Input layers always."""
    needed, keep = set(outputs), set()
    for k in range(len(layers) - 1, -1, -1):
        layer = layers[k]
        if layer.type == "Input" or needed & set(layer.top):
            keep.add(k)
            needed.update(layer.bottom)
    return [layer for k, layer in enumerate(layers) if k in keep]


def _caffe_pool_sizes(size, kernel, stride, pad) -> np.ndarray:
    """(OH, OW) divisors of Caffe's AVE pooling: each window clipped to input + padding."""
    per_axis = []
    for n, k, s, p in zip(size, kernel, stride, pad):
        o = int(np.ceil((n + 2 * p - k) / s)) + 1  # Caffe rounds up ...
        if p and (o - 1) * s >= n + p:  # ... but drops a last window that starts in the padding
            o -= 1
        start = np.arange(o) * s - p
        per_axis.append((np.minimum(start + k, n + p) - start).astype(np.float32))
    return np.outer(per_axis[0], per_axis[1])


def _overhangs(size, kernel, stride, pad) -> bool:
    return bool((_caffe_pool_sizes(size, kernel, stride, pad) != kernel[0] * kernel[1]).any())


def convert(prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None,
            lrn_as_conv: bool = True) -> onnx.ModelProto:
    """The ONNX model (opset 17, batch dimension 'N') of a deploy net and its weights.

    outputs: blobs to expose (default: those no layer consumes). lrn_as_conv: write LRN as
    x * (k + conv1x1(x^2, alpha/n band))^-beta (same values; LRN ~5x faster in onnxruntime on this CPU)
    instead of the ONNX LRN operator.
    """
    from pipeline.backends import net_outputs  # noqa: PLC0415 (backends imports this module lazily)
    prototxt = Path(prototxt)
    net = read_prototxt(prototxt)
    shapes = infer_shapes(prototxt)
    pb = caffe_pb2()
    layers = [ly for ly in net.layer if not any(inc.phase == pb.TRAIN for inc in ly.include)]
    output_blobs = list(outputs or net_outputs(prototxt))
    layers = _needed_layers(layers, output_blobs)
    for layer in layers:  # fail before reading weights
        if layer.type not in SUPPORTED:
            raise _unsupported(prototxt, layer, "layer type")
    weights = read_caffemodel(caffemodel)
    g = _Graph(prototxt)
    g.used.update(output_blobs)  # reserved for the graph outputs (see the renaming below)
    inputs = []
    legacy = [(name, tuple(net.input_shape[i].dim) if net.input_shape else tuple(net.input_dim[4 * i:4 * i + 4]))
              for i, name in enumerate(net.input)]
    for name, dims in legacy + [(top, tuple(shapes.blobs[top])) for ly in layers if ly.type == "Input" for top in ly.top]:
        g.current[name] = g.name(name)
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *dims[1:]]))
    for layer in layers:
        if layer.type == "Input":
            continue
        expected = len(shapes.params.get(layer.name, []))
        blobs = weights.get(layer.name, [])
        if len(blobs) < expected:
            raise ModelError(caffemodel, f"layer {layer.name!r}: {len(blobs)} weight blob(s), the net needs {expected}")
        _convert_layer(g, layer, blobs, shapes, lrn_as_conv)
    outs, rename = [], {}
    for blob in output_blobs:
        if blob not in g.current:
            raise ModelError(prototxt, f"output blob {blob!r} is not produced by the net")
        rename[g.current[blob]] = blob  # the last tensor of an in-place chain takes the blob's name
    for node in g.nodes:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    for blob in output_blobs:
        shape = shapes.blobs.get(blob)
        outs.append(helper.make_tensor_value_info(blob, TensorProto.FLOAT, ["N", *shape[1:]] if shape else None))
    graph = helper.make_graph(g.nodes, net.name or prototxt.parent.name, inputs, outs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hyperface.caffe_to_onnx", producer_version=str(CONVERTER_VERSION))
    model.ir_version = 8  # onnxruntime >= 1.14 reads IR 8
    onnx.checker.check_model(model)
    return model


def cached_onnx(prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None,
                lrn_as_conv: bool = True) -> Path:
    """Path of the converted .onnx for (prototxt, caffemodel, outputs), converting on first use.

    Cached as $HYPERFACE_MODEL_CACHE/models/<sha1 of prototxt, weights, outputs, converter>/model.onnx,
    beside the float32 caffemodels that model_store expands from fp16 weights.
    """
    prototxt, caffemodel = Path(prototxt), Path(caffemodel)
    try:
        digest = hashlib.sha1(prototxt.read_bytes())
        digest.update(caffemodel.read_bytes())
    except FileNotFoundError as err:
        raise ModelError(err.filename, "not found") from None
    digest.update(f"{outputs}|{lrn_as_conv}|{CONVERTER_VERSION}|{OPSET}".encode())
    path = cache_dir() / "models" / f"onnx-{digest.hexdigest()[:16]}" / "model.onnx"
    if not path.is_file():
        model = convert(prototxt, caffemodel, outputs, lrn_as_conv)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, model.SerializeToString())
        log.info("converted %s + %s to %s", prototxt, caffemodel.name, path)
    return path
