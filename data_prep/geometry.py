"""Box geometry for region sampling: IoU, R-CNN regression targets, ground-truth jitter.

Boxes are (x1, y1, x2, y2) in pixels with width x2 - x1 (pixel-edge convention for integer region
boxes: the crop of box b is image[y1:y2, x1:x2]).
"""
from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of two (N, 4) / (M, 4) box arrays."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def bbox_targets(region: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """R-CNN regression targets (dx, dy, dw, dh) that move `region` onto `gt` (both (4,))."""
    pw, ph = region[2] - region[0], region[3] - region[1]
    gw, gh = gt[2] - gt[0], gt[3] - gt[1]
    pcx, pcy = region[0] + 0.5 * pw, region[1] + 0.5 * ph
    gcx, gcy = gt[0] + 0.5 * gw, gt[1] + 0.5 * gh
    return np.array([(gcx - pcx) / pw, (gcy - pcy) / ph, np.log(gw / pw), np.log(gh / ph)])


def apply_bbox_deltas(region: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of bbox_targets: the box that `deltas` make of `region`."""
    pw, ph = region[2] - region[0], region[3] - region[1]
    cx = region[0] + 0.5 * pw + deltas[0] * pw
    cy = region[1] + 0.5 * ph + deltas[1] * ph
    w, h = pw * np.exp(deltas[2]), ph * np.exp(deltas[3])
    return np.array([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h])


def jitter_boxes(box: np.ndarray, count: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """`count` integer boxes around `box`: centre shifted and sides scaled by N(0, scale) of its size."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = box[0] + 0.5 * w, box[1] + 0.5 * h
    noise = rng.normal(0.0, scale, size=(count, 4))
    ncx = cx + noise[:, 0] * w
    ncy = cy + noise[:, 1] * h
    nw = w * np.exp(noise[:, 2])
    nh = h * np.exp(noise[:, 3])
    out = np.stack([ncx - nw / 2, ncy - nh / 2, ncx + nw / 2, ncy + nh / 2], axis=1)
    out = np.round(out)
    out[:, 2] = np.maximum(out[:, 2], out[:, 0] + 2)
    out[:, 3] = np.maximum(out[:, 3], out[:, 1] + 2)
    return out
