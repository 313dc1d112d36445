"""The SSD proposal net's PriorBox and DetectionOutput layers in numpy, so every backend runs the
same net up to `mbox_loc` / `mbox_conf_flatten` (ONNX Runtime has no such layers) and the boxes are
decoded here, as Caffe's SSD layers do it (tests/test_ssd_decode.py checks both against pycaffe).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.geometry import box_iou
from core.net_shapes import infer_shapes, read_prototxt

LOC_BLOB, CONF_BLOB = "mbox_loc", "mbox_conf_flatten"


@dataclass(frozen=True)
class DetectionSettings:
    """detection_output_param of the deploy net."""
    num_classes: int
    background_label_id: int
    confidence_threshold: float
    nms_threshold: float
    top_k: int
    keep_top_k: int


def _aspect_ratios(param) -> list[float]:
    ratios = [1.0]
    for ar in param.aspect_ratio:
        if any(abs(ar - r) < 1e-6 for r in ratios):
            continue
        ratios.append(float(ar))
        if param.flip:
            ratios.append(1.0 / float(ar))
    return ratios


def layer_priors(param, layer_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) normalised corner boxes and (n, 4) variances of one PriorBox layer, in Caffe's order
    (row, column, then min size, sqrt(min * max), other aspect ratios)."""
    layer_h, layer_w = layer_hw
    img_h = param.img_h or param.img_size or image_hw[0]
    img_w = param.img_w or param.img_size or image_hw[1]
    step_h = param.step_h or param.step or img_h / layer_h
    step_w = param.step_w or param.step or img_w / layer_w
    offset = param.offset
    sizes = []  # (width, height) of the priors of one cell
    for k, min_size in enumerate(param.min_size):
        sizes.append((min_size, min_size))
        if len(param.max_size) > k:
            side = math.sqrt(min_size * param.max_size[k])
            sizes.append((side, side))
        for ar in _aspect_ratios(param):
            if abs(ar - 1.0) < 1e-6:
                continue
            sizes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
    sizes = np.asarray(sizes, dtype=np.float32)
    cy, cx = np.meshgrid((np.arange(layer_h, dtype=np.float32) + offset) * np.float32(step_h),
                         (np.arange(layer_w, dtype=np.float32) + offset) * np.float32(step_w), indexing="ij")
    cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)
    half_w, half_h = sizes[None, :, 0] / 2, sizes[None, :, 1] / 2
    boxes = np.stack([(cx - half_w) / img_w, (cy - half_h) / img_h,
                      (cx + half_w) / img_w, (cy + half_h) / img_h], axis=-1).reshape(-1, 4).astype(np.float32)
    if param.clip:
        boxes = boxes.clip(0.0, 1.0)
    variance = list(param.variance) or [0.1]
    variances = np.tile(np.asarray(variance if len(variance) == 4 else variance * 4, np.float32), (len(boxes), 1))
    return boxes, variances


def prior_boxes(prototxt: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Priors (P, 4) and variances (P, 4) of the net's `mbox_priorbox` Concat, in its bottom order."""
    net = read_prototxt(prototxt)
    shapes = infer_shapes(prototxt)
    by_top = {layer.top[0]: layer for layer in net.layer if layer.top}
    concat = by_top.get("mbox_priorbox")
    if concat is None:
        raise ValueError(f"{prototxt}: no mbox_priorbox blob (not an SSD net)")
    image_hw = tuple(shapes.blobs["data"][2:])
    parts = [layer_priors(by_top[b].prior_box_param, tuple(shapes.blobs[by_top[b].bottom[0]][2:]), image_hw)
             for b in concat.bottom]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def detection_settings(prototxt: str | Path) -> DetectionSettings:
    layer = next((ly for ly in read_prototxt(prototxt).layer if ly.type == "DetectionOutput"), None)
    if layer is None:
        raise ValueError(f"{prototxt}: no DetectionOutput layer")
    p = layer.detection_output_param
    if not p.share_location or p.code_type != 2 or p.variance_encoded_in_target:  # 2: CENTER_SIZE
        raise ValueError(f"{prototxt}: DetectionOutput other than shared CENTER_SIZE with variances is not supported")
    return DetectionSettings(int(p.num_classes), int(p.background_label_id), float(p.confidence_threshold),
                             float(p.nms_param.nms_threshold), int(p.nms_param.top_k) if p.nms_param.HasField("top_k") else -1,
                             int(p.keep_top_k))


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """CENTER_SIZE decoding of (P, 4) offsets against the priors (no clipping, as DetectionOutput)."""
    loc = np.asarray(loc, np.float64).reshape(-1, 4)
    pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    pcx, pcy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    cx = variances[:, 0] * loc[:, 0] * pw + pcx
    cy = variances[:, 1] * loc[:, 1] * ph + pcy
    w = np.exp(variances[:, 2] * loc[:, 2]) * pw
    h = np.exp(variances[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def detection_rows(loc: np.ndarray, conf: np.ndarray, priors: np.ndarray, variances: np.ndarray,
                   settings: DetectionSettings) -> np.ndarray:
    """DetectionOutput of one image: rows [0, label, score, x1, y1, x2, y2] (normalised), best first.

    Per class: scores above confidence_threshold, the best top_k, greedy NMS (a box is kept when its
    IoU with every kept box is <= nms_threshold, so 1.0 keeps all); then the best keep_top_k of all."""
    loc = np.asarray(loc).reshape(-1, 4)
    scores = np.asarray(conf, np.float64).reshape(len(priors), settings.num_classes)
    rows = []
    for label in range(settings.num_classes):
        if label == settings.background_label_id:
            continue
        s = scores[:, label]
        idx = np.flatnonzero(s > settings.confidence_threshold)
        if -1 < settings.top_k < len(idx):
            # only the best top_k are sorted (a 2048 canvas has ~350k candidates): those above the
            # top_k-th score, then those equal to it in prior order, as the stable sort of all would
            kth = -np.partition(-s[idx], settings.top_k - 1)[settings.top_k - 1]
            above, equal = idx[s[idx] > kth], idx[s[idx] == kth]
            idx = np.concatenate([above, equal[:settings.top_k - len(above)]])
        idx = idx[np.argsort(-s[idx], kind="stable")]
        boxes = decode_boxes(loc[idx], priors[idx], variances[idx])  # only the candidates (2048 x 2048: 524k priors)
        kept = []
        for k in range(len(idx)):
            if settings.nms_threshold >= 1.0 or not kept or \
                    (box_iou(boxes[k], boxes[kept]) <= settings.nms_threshold).all():
                kept.append(k)
        rows += [(0.0, float(label), float(s[idx[k]]), *boxes[k]) for k in kept]
    out = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    out = out[np.argsort(-out[:, 2], kind="stable")]
    if settings.keep_top_k > -1:
        out = out[:settings.keep_top_k]
    return out
