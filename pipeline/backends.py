"""Batched forward passes through a deploy net, with two interchangeable backends:

* "opencv": cv2.dnn.readNetFromCaffe (same deploy.prototxt + caffemodel; needs no pycaffe). Default:
  it was the faster of the two on this project's CPU (benchmarks/speed.py measures both).
* "caffe":  pycaffe (caffe.Net in TEST phase, CPU mode).

Both take an (N, 3, H, W) float32 batch and return {output blob name: (N, ...) float32 array}.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from core.net_io import INPUT_BLOB
from pipeline.errors import ModelError
from pipeline.net_shapes import infer_shapes

log = logging.getLogger(__name__)
BACKENDS = ("opencv", "caffe")
DEFAULT_BACKEND = "opencv"


def net_outputs(prototxt: str | Path) -> list[str]:
    """Blob names no layer consumes (the net's outputs), in prototxt order."""
    from pipeline.net_shapes import read_prototxt  # noqa: PLC0415
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


def make_backend(name: str, prototxt: str | Path, caffemodel: str | Path, outputs: list[str] | None = None):
    """The backend called `name` ("opencv" or "caffe") for a deploy net and its weights."""
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
