"""Region proposals: OpenCV selective search (HyperFace) and the SSD proposal net (Fast-HyperFace)."""
from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np

from core.config import InputConfig, TestConfig
from core.proposals import SS_MODES, selective_search  # noqa: F401  (the one selective search, shared with data_prep)
from pipeline.backends import input_shape, make_backend
from pipeline.model_store import Model
from pipeline.ssd_decode import CONF_BLOB, LOC_BLOB, detection_rows, detection_settings, prior_boxes

log = logging.getLogger(__name__)


class SSDProposer:
    """The single-shot proposal net of Fast-HyperFace: the net runs up to its loc/conf outputs in any
    backend (ONNX Runtime included), its PriorBox + DetectionOutput are decoded in numpy
    (pipeline/ssd_decode.py) with the config's DetectionOutput settings (test.ssd_threshold,
    ssd_pre_nms_top_k, ssd_nms_iou, ssd_max_proposals) in place of the deploy net's; boxes best first."""

    def __init__(self, model: Model, backend: str, input_cfg: InputConfig, test_cfg: TestConfig):
        self.backend = make_backend(backend, model.prototxt, model.caffemodel, [LOC_BLOB, CONF_BLOB])
        self.priors, self.variances = prior_boxes(model.prototxt)
        self.detection = dataclasses.replace(
            detection_settings(model.prototxt), confidence_threshold=test_cfg.ssd_threshold,
            top_k=test_cfg.ssd_pre_nms_top_k, nms_threshold=test_cfg.ssd_nms_iou, keep_top_k=test_cfg.ssd_max_proposals)
        _, _, self.height, self.width = input_shape(model.prototxt)
        self.mean = np.asarray(input_cfg.mean_bgr, dtype=np.float32)
        self.test = test_cfg

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.decode(self.forward(image), image.shape[1], image.shape[0])

    def forward(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The net's loc and conf outputs for one BGR image (warped to the net's input)."""
        x = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR).astype(np.float32) - self.mean
        return self.backend.forward(x.transpose(2, 0, 1)[None])

    def decode(self, out: dict[str, np.ndarray], width: int, height: int, nms_iou: float | None = None) -> np.ndarray:
        """Proposal boxes (n, 4) in pixels of a width x height image from forward()'s outputs; nms_iou
        replaces test.ssd_nms_iou (the proposal benchmark's sweep)."""
        settings = self.detection if nms_iou is None else dataclasses.replace(self.detection, nms_threshold=nms_iou)
        det = detection_rows(out[LOC_BLOB][0], out[CONF_BLOB][0], self.priors, self.variances, settings)
        return ssd_boxes(det, width, height, self.test)


def ssd_boxes(det: np.ndarray, width: int, height: int, test: TestConfig) -> np.ndarray:
    """Boxes (n, 4) in pixels from DetectionOutput rows [image_id, label, score, x1, y1, x2, y2] (normalised)."""
    det = np.asarray(det, dtype=np.float64).reshape(-1, 7)
    det = det[(det[:, 0] >= 0) & (det[:, 1] >= 1) & (det[:, 2] >= test.ssd_threshold)]
    det = det[np.argsort(-det[:, 2], kind="stable")][:test.ssd_max_proposals]
    boxes = det[:, 3:7] * np.array([width, height, width, height], dtype=np.float64)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes[(boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)]
