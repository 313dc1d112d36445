"""Batched forward passes through a deploy net, with interchangeable backends:

* "openvino": the same converted ONNX graph compiled by OpenVINO's CPU plugin with bf16 inference
  precision, which CPUs with AMX or AVX512_BF16 compute natively (4x the fp32 regions/s on this
  project's Xeon; benchmarks/SPEED.md, accuracy in benchmarks/engines.py); CPUs without bf16 units
  run it in fp32. Default when openvino is importable.
* "openvino-fp32": OpenVINO with fp32 inference precision (equal to "onnxruntime" within float error).
* "onnxruntime": the deploy.prototxt + caffemodel converted to ONNX at load time
  (pipeline/caffe_to_onnx.py, cached) and run by onnxruntime's CPU provider. Default when
  onnxruntime is importable and openvino is not.
  With either engine, a net with a layer the converter does not support falls back to "opencv".
* "opencv": cv2.dnn.readNetFromCaffe (same deploy.prototxt + caffemodel; needs no pycaffe). Default
  when neither openvino nor onnxruntime is installed.
* "caffe":  pycaffe (caffe.Net in TEST phase, CPU mode).

All take an (N, 3, H, W) float32 batch and return {output blob name: (N, ...) float32 array}.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from core.net_io import INPUT_BLOB
from pipeline.errors import ModelError
from core.net_shapes import infer_shapes

log = logging.getLogger(__name__)
BACKENDS = ("openvino", "openvino-fp32", "onnxruntime", "opencv", "caffe")


_NEEDS = {"openvino": ("openvino", "onnx"), "openvino-fp32": ("openvino", "onnx"),
          "onnxruntime": ("onnxruntime", "onnx"), "opencv": ("cv2",), "caffe": ("caffe",)}


def installed_backends() -> list[str]:
    """The BACKENDS whose Python modules are importable here, in BACKENDS order."""
    return [b for b in BACKENDS if all(importlib.util.find_spec(m) for m in _NEEDS[b])]


# the fastest installed (benchmarks/SPEED.md): OpenVINO bf16, ONNX Runtime, OpenCV DNN
DEFAULT_BACKEND = next(b for b in ("openvino", "onnxruntime", "opencv") if b in installed_backends())


def net_outputs(prototxt: str | Path) -> list[str]:
    """Blob names no layer consumes (the net's outputs), in prototxt order."""
    from core.net_shapes import read_prototxt  # noqa: PLC0415
    net = read_prototxt(prototxt)
    consumed, produced = set(), []
    for layer in net.layer:
        consumed.update(b for b in layer.bottom if b not in layer.top)
        produced += [t for t in layer.top if t not in produced]
    return [t for t in produced if t not in consumed and t != INPUT_BLOB]


class OpenCVBackend:
    name = "opencv"

    def __init__(self, prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None):
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        except cv2.error as err:
            raise ModelError(caffemodel, f"OpenCV DNN cannot load the net ({str(err).strip().splitlines()[-1]})") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.outputs = outputs or net_outputs(prototxt)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.net.setInput(np.ascontiguousarray(batch, dtype=np.float32), INPUT_BLOB)
        outs = self.net.forward(self.outputs)
        return {name: np.array(o, dtype=np.float32) for name, o in zip(self.outputs, outs)}


class CaffeBackend:
    name = "caffe"

    def __init__(self, prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None):
        try:
            import caffe  # noqa: PLC0415
        except ImportError as err:
            raise ModelError(None, f"backend 'caffe' needs pycaffe ({err}); source scripts/env.sh "
                                   "or use --backend opencv") from None
        caffe.set_mode_cpu()
        self.net = caffe.Net(str(prototxt), str(caffemodel), caffe.TEST)
        self.outputs = outputs or list(self.net.outputs)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        data = self.net.blobs[INPUT_BLOB]
        if data.data.shape != batch.shape:
            data.reshape(*batch.shape)
            self.net.reshape()
        data.data[...] = batch
        self.net.forward()
        return {name: np.array(self.net.blobs[name].data, dtype=np.float32) for name in self.outputs}


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None,
                 threads: int | None = None):
        try:
            import onnxruntime as ort  # noqa: PLC0415
            from pipeline.caffe_to_onnx import cached_onnx  # noqa: PLC0415 (imports onnx)
        except ImportError as err:
            raise ModelError(None, f"backend 'onnxruntime' needs onnxruntime and onnx ({err}); "
                                   "pip install -r requirements.txt or use --backend opencv") from None
        self.outputs = outputs or net_outputs(prototxt)
        path = cached_onnx(prototxt, caffemodel, self.outputs)
        opts = ort.SessionOptions()
        # $HYPERFACE_THREADS: a Dask worker's share of its machine's cores (pipeline/dask_runner.py)
        opts.intra_op_num_threads = threads or int(os.environ.get("HYPERFACE_THREADS") or 0) or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # worker threads sleep instead of spinning between ops: faster when the cores are shared
        # (A/B in benchmarks/SPEED.md), about equal on idle cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types
            raise ModelError(path, f"onnxruntime cannot load the converted net ({str(err).strip().splitlines()[-1]})") from None

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(self.outputs, {INPUT_BLOB: np.ascontiguousarray(batch, dtype=np.float32)})
        return {name: np.asarray(o, dtype=np.float32) for name, o in zip(self.outputs, outs)}


class OpenVINOBackend:
    """The converted ONNX graph (pipeline/caffe_to_onnx.py) compiled by OpenVINO for the CPU; precision
    "bf16" (a hint: CPUs without bf16 units run fp32) or "f32". One compiled model with a dynamic batch
    dimension, one infer request reused for every batch."""

    def __init__(self, prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None,
                 threads: int | None = None, precision: str = "bf16"):
        try:
            import openvino as ov  # noqa: PLC0415
            from pipeline.caffe_to_onnx import cached_onnx  # noqa: PLC0415 (imports onnx)
        except ImportError as err:
            raise ModelError(None, f"backend 'openvino' needs openvino and onnx ({err}); "
                                   "pip install -r requirements.txt or use --backend onnxruntime") from None
        self.name = "openvino" if precision == "bf16" else "openvino-fp32"
        self.outputs = outputs or net_outputs(prototxt)
        path = cached_onnx(prototxt, caffemodel, self.outputs)
        threads = threads or int(os.environ.get("HYPERFACE_THREADS") or 0) or os.cpu_count() or 1
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", {
                "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY"})
        except RuntimeError as err:
            raise ModelError(path, f"openvino cannot compile the converted net ({str(err).strip().splitlines()[0]})") from None
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "bf16" or "f32"
        self.request = self.compiled.create_infer_request()
        self._ports = [self.compiled.output(name) for name in self.outputs]

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        # share_inputs: the request reads the caller's array instead of copying it (it is not kept)
        self.request.infer({INPUT_BLOB: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        return {name: np.array(self.request.get_tensor(port).data, dtype=np.float32)
                for name, port in zip(self.outputs, self._ports)}


def make_backend(name: str, prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None):
    """The backend called `name` (one of BACKENDS) for a deploy net and its weights.

    "openvino" / "onnxruntime" on a net with a layer type the ONNX converter does not support (among the layers
    the requested outputs need) logs a warning and returns the "opencv" backend.
    """
    if name in ("onnxruntime", "openvino", "openvino-fp32"):
        try:
            if name == "onnxruntime":
                return OnnxRuntimeBackend(prototxt, caffemodel, outputs)
            return OpenVINOBackend(prototxt, caffemodel, outputs, precision="bf16" if name == "openvino" else "f32")
        except ModelError as err:
            converter = sys.modules.get("pipeline.caffe_to_onnx")
            if converter is None or not isinstance(err, converter.UnsupportedLayerError):
                raise
            log.warning("%s; using backend 'opencv' for this net", err)
            return OpenCVBackend(prototxt, caffemodel, outputs)
    if name == "opencv":
        return OpenCVBackend(prototxt, caffemodel, outputs)
    if name == "caffe":
        return CaffeBackend(prototxt, caffemodel, outputs)
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


def input_shape(prototxt: str | Path) -> tuple:
    """(N, C, H, W) of the deploy net's `data` input."""
    shape = infer_shapes(prototxt).blobs.get(INPUT_BLOB)
    if shape is None or len(shape) != 4:
        raise ModelError(prototxt, f"no 4-D input blob {INPUT_BLOB!r}")
    return shape
