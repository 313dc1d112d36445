"""Box geometry that training (data_prep) and testing (pipeline) must do identically: IoU, the
R-CNN box-regression parametrisation, and the crop of a region warped to the net's input.

Boxes are (x1, y1, x2, y2) in pixels, width x2 - x1 (pixel-edge convention: the crop of the
integer box b is image[y1:y2, x1:x2]).
"""
from __future__ import annotations

import cv2
import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of two (N, 4) / (M, 4) box arrays."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def bbox_targets(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """R-CNN regression targets (dx, dy, dw, dh), (n, 4), that move boxes (n, 4) onto gt (n, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    return np.column_stack([
        (gt[:, 0] + gw / 2 - boxes[:, 0] - w / 2) / w,
        (gt[:, 1] + gh / 2 - boxes[:, 1] - h / 2) / h,
        np.log(gw / w), np.log(gh / h)])


def apply_bbox_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of bbox_targets: the regressed boxes (n, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(deltas, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + w / 2 + d[:, 0] * w, boxes[:, 1] + h / 2 + d[:, 1] * h
    nw, nh = w * np.exp(d[:, 2]), h * np.exp(d[:, 3])
    return np.column_stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2])


def crop_and_warp(image: np.ndarray, box: np.ndarray, size: int, mean_bgr) -> np.ndarray:
    """The box of `image` (H, W, 3 uint8) warped to size x size (uint8 HWC), the same for training
    crops and test-time regions.

    The box is rounded to whole pixels; parts outside the image repeat its edge pixels
    (BORDER_REPLICATE), so a region that leaves a photo or a face chip shows no flat frame a
    classifier could key on (a mean-colour frame marked every chip positive and no negative); the
    cut is resized anisotropically with bilinear interpolation.
    A box much larger than the output is first shrunk (INTER_AREA) to twice the output size, so a
    huge region never allocates a huge padded crop.
    """
    x1, y1, x2, y2 = (int(v) for v in np.round(np.asarray(box, dtype=np.float64)))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    height, width = image.shape[:2]
    cut = image[max(y1, 0):max(min(y2, height), 0), max(x1, 0):max(min(x2, width), 0)]
    pads = [max(0, -y1), max(0, y2 - height), max(0, -x1), max(0, x2 - width)]
    fx, fy = min(1.0, 2.0 * size / (x2 - x1)), min(1.0, 2.0 * size / (y2 - y1))
    if (fx < 1.0 or fy < 1.0) and cut.size:
        cut = cv2.resize(cut, (max(1, round(cut.shape[1] * fx)), max(1, round(cut.shape[0] * fy))),
                         interpolation=cv2.INTER_AREA)
        pads = [round(pads[0] * fy), round(pads[1] * fy), round(pads[2] * fx), round(pads[3] * fx)]
    fill = np.round(np.asarray(mean_bgr, dtype=np.float64))
    if cut.size == 0:
        cut = np.empty((max(1, round((y2 - y1) * fy)), max(1, round((x2 - x1) * fx)), 3), dtype=image.dtype)
        cut[...] = fill.astype(image.dtype)
    elif any(pads):
        cut = cv2.copyMakeBorder(cut, *pads, cv2.BORDER_REPLICATE)
    return cv2.resize(cut, (size, size), interpolation=cv2.INTER_LINEAR)


def points_box(points: np.ndarray) -> np.ndarray:
    """Tight box (4,) x1, y1, x2, y2 of the finite points of `points` (n, 2): NaN rows (invisible
    or unknown points) are left out; all NaN when no point is finite. The face box of the sets
    that have no face rectangle (300-W, AFLW2000-3D)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return np.full(4, np.nan)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])
