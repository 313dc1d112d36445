"""Region proposals: OpenCV selective search (HyperFace) and the SSD proposal net (Fast-HyperFace)."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np

from core.config import InputConfig, TestConfig
from core.proposals import SS_MODES, selective_search  # noqa: F401  (the one selective search, shared with data_prep)
from pipeline.backends import input_shape, make_backend
from pipeline.geometry import nms
from pipeline.model_store import Model
from pipeline.ssd_decode import CONF_BLOB, LOC_BLOB, detection_rows, detection_settings, prior_boxes

log = logging.getLogger(__name__)


class SSDProposer:
    """The single-shot proposal net of Fast-HyperFace: the net runs up to its loc/conf outputs in any
    backend (ONNX Runtime included), its PriorBox + DetectionOutput are decoded in numpy
    (pipeline/ssd_decode.py) with the config's DetectionOutput settings (test.ssd_threshold,
    ssd_pre_nms_top_k, ssd_nms_iou) in place of the deploy net's; boxes best first.

    test.ssd_scales: canvas sides S; at each, the photo is resized to fit S x S (aspect kept, placed at
    the top-left, the rest the mean colour) and the net, reshaped to S x S (its PriorBox steps are
    fixed, so the priors tile the larger input), scores its boxes; test.ssd_merge "score" keeps the
    best ssd_max_proposals of all scales by score (ties: the earlier scale first) after one NMS at
    test.ssd_nms_iou over all of them, "quota" the best ssd_max_proposals / len(scales) of each
    (NMS per scale), concatenated in scale order. Empty: the deploy net's own
    input (the photo warped to 512 x 512, as in training). Larger canvases make small faces larger
    than the 512 warp does (a 30 px face of a 1024 px photo is 15 px there); a smaller one fits faces
    larger than the largest prior."""

    def __init__(self, model: Model, backend: str, input_cfg: InputConfig, test_cfg: TestConfig):
        self.model, self.backend_name = model, backend
        self.detection = dataclasses.replace(
            detection_settings(model.prototxt), confidence_threshold=test_cfg.ssd_threshold,
            top_k=test_cfg.ssd_pre_nms_top_k, nms_threshold=test_cfg.ssd_nms_iou, keep_top_k=test_cfg.ssd_max_proposals)
        self.mean = np.asarray(input_cfg.mean_bgr, dtype=np.float32)
        self.test = test_cfg
        self.scales: tuple[int | None, ...] = tuple(int(s) for s in test_cfg.ssd_scales) or (None,)
        self._nets: dict = {}  # canvas side (None: the deploy net's input) -> (backend, priors, variances)
        self.backend = self._net(self.scales[0])[0]

    def _net(self, side: int | None):
        if side not in self._nets:
            proto = self.model.prototxt if side is None else resized_prototxt(self.model.prototxt, side)
            self._nets[side] = (make_backend(self.backend_name, proto, self.model.caffemodel, [LOC_BLOB, CONF_BLOB]),
                                *prior_boxes(proto))
        return self._nets[side]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.decode(self.forward(image), image.shape[1], image.shape[0])

    def forward(self, image: np.ndarray) -> list[tuple[int | None, float, dict[str, np.ndarray]]]:
        """Per scale: (canvas side, resize factor, the net's loc and conf outputs) for one BGR image."""
        h, w = image.shape[:2]
        outs = []
        for side in self.scales:
            backend = self._net(side)[0]
            if side is None:
                _, _, net_h, net_w = input_shape(self.model.prototxt)
                x = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_LINEAR).astype(np.float32) - self.mean
                outs.append((None, 1.0, backend.forward(x.transpose(2, 0, 1)[None])))
                continue
            factor = side / max(h, w)
            nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
            canvas = np.zeros((1, 3, side, side), np.float32)  # zero after mean subtraction: the mean colour
            # blobFromImage: mean subtraction and HWC -> CHW in one C++ pass (a numpy transpose of a 2048-px
            # canvas cost more than the forward of the 512-px one)
            photo = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            canvas[:, :, :nh, :nw] = cv2.dnn.blobFromImage(photo, 1.0, (nw, nh), tuple(float(m) for m in self.mean),
                                                           swapRB=False, crop=False)
            outs.append((side, factor, backend.forward(canvas)))
        return outs

    def decode(self, outs, width: int, height: int, nms_iou: float | None = None) -> np.ndarray:
        """Proposal boxes (n, 4) in pixels of a width x height image from forward()'s outputs; nms_iou
        replaces test.ssd_nms_iou (the proposal benchmark's sweep)."""
        most, by_score = self.test.ssd_max_proposals, self.test.ssd_merge == "score"
        quota = None if by_score else max(1, most // len(outs))
        nms_iou = self.test.ssd_nms_iou if nms_iou is None else nms_iou
        # by score, the NMS runs once over the boxes of all scales (a face seen at two scales is one box);
        # the limit is taken after clipping (ssd_boxes)
        settings = dataclasses.replace(self.detection, nms_threshold=1.0 if by_score else nms_iou, keep_top_k=-1)
        boxes, scores = [], []
        for side, factor, out in outs:
            _, priors, variances = self._net(side)
            det = detection_rows(out[LOC_BLOB][0], out[CONF_BLOB][0], priors, variances, settings)
            b, s = scored_ssd_boxes(det, width, height, self.test.ssd_threshold, side, factor)
            boxes.append(b[:quota])
            scores.append(s[:quota])
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        if not by_score:
            return boxes
        order = nms(boxes, scores, nms_iou, most) if nms_iou < 1.0 else np.argsort(-scores, kind="stable")
        return boxes[order[:most]]


def resized_prototxt(prototxt: Path, side: int) -> Path:
    """The deploy net with a side x side input, written once into the model cache."""
    from core.caffe_proto import cache_dir
    from core.model_store import atomic_write_bytes
    from core.net_shapes import read_prototxt
    from google.protobuf import text_format

    text = Path(prototxt).read_bytes()
    path = cache_dir() / "ssd_inputs" / f"{hashlib.sha1(text).hexdigest()[:16]}_{side}.prototxt"
    if not path.is_file():
        net = read_prototxt(prototxt)
        shape = next(layer for layer in net.layer if layer.type == "Input").input_param.shape[0]
        shape.dim[2], shape.dim[3] = side, side
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text_format.MessageToString(net).encode())
    return path


def ssd_boxes(det: np.ndarray, width: int, height: int, test: TestConfig, limit: int | None = None,
              canvas: int | None = None, factor: float = 1.0) -> np.ndarray:
    """The best `limit` (default test.ssd_max_proposals) boxes (n, 4) in pixels of a width x height
    photo from DetectionOutput rows [image_id, label, score, x1, y1, x2, y2], normalised to the photo
    or, with `canvas`, to a canvas x canvas input holding the photo resized by `factor`. Boxes that
    clip to under a pixel (off the photo) do not count."""
    boxes, _ = scored_ssd_boxes(det, width, height, test.ssd_threshold, canvas, factor)
    return boxes[:test.ssd_max_proposals if limit is None else limit]


def scored_ssd_boxes(det: np.ndarray, width: int, height: int, threshold: float, canvas: int | None = None,
                     factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """ssd_boxes without the limit, with their scores: (boxes (n, 4), scores (n,)), best first."""
    det = np.asarray(det, dtype=np.float64).reshape(-1, 7)
    det = det[(det[:, 0] >= 0) & (det[:, 1] >= 1) & (det[:, 2] >= threshold)]
    det = det[np.argsort(-det[:, 2], kind="stable")]
    scale = np.array([width, height, width, height], np.float64) if canvas is None else np.full(4, canvas / factor)
    boxes = det[:, 3:7] * scale
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
    return boxes[keep], det[keep, 2]
