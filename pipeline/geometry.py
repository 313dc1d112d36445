"""Box geometry shared by the pipeline and data_prep: the landmark-to-face-box calculator
(FaceRectCalculator of Algorithms 1 and 2), IoU, R-CNN box regression and crop warping.

Boxes are float (x1, y1, x2, y2) in 0-based image pixels; width = x2 - x1 (continuous coordinates,
no "+1"), everywhere in this project.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import numpy as np

from core.aflw21 import NUM_POINTS
from pipeline.errors import GeometryError

MEAN_SHAPE_PATH = Path(__file__).resolve().parent / "mean_shape_aflw21.json"


@functools.lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """(21, 2) mean AFLW-21 shape in unit face-box coordinates (pipeline/make_mean_shape.py)."""
    pts = np.asarray(json.loads(MEAN_SHAPE_PATH.read_text())["points"], dtype=np.float64)
    pts.setflags(write=False)
    return pts


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares similarity (no reflection) mapping src (n, 2) onto dst (n, 2).

    Returns (a, b, tx, ty) with dst ~ [[a, -b], [b, a]] @ src + t; the scale is hypot(a, b).
    Closed form (Umeyama 1991 restricted to 2-D): centre both sets, then a, b from the sums.
    """
    src_c = src - src.mean(axis=0)
    dst_c = dst - dst.mean(axis=0)
    denom = float((src_c ** 2).sum())
    if denom <= 0:
        raise GeometryError("landmarks are all at one point; no face box can be fitted")
    a = float((src_c * dst_c).sum()) / denom
    b = float((src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum()) / denom
    t = dst.mean(axis=0) - np.array([[a, -b], [b, a]]) @ src.mean(axis=0)
    return a, b, float(t[0]), float(t[1])


def box_from_landmarks(landmarks: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Face box (4,) x1, y1, x2, y2 from AFLW-21 landmarks (21, 2) and a visibility mask (21,).

    Fits the mean AFLW-21 shape to the visible, finite points by a least-squares similarity and
    returns the image of the unit face box: a square centred on the transformed box centre whose
    side is the similarity's scale (in-plane rotation does not change the box size). This is the
    face-box convention of the whole project (data_prep labels, IRP, L-NMS). When fewer than two
    visible points are finite, all finite points are used; fewer than two raises GeometryError.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(NUM_POINTS, 2)
    finite = np.isfinite(pts).all(axis=1)
    use = finite if visible is None else finite & np.asarray(visible, dtype=bool).reshape(NUM_POINTS)
    if use.sum() < 2:
        use = finite
    if use.sum() < 2:
        raise GeometryError(f"need at least 2 finite landmarks to fit a face box, got {int(use.sum())}")
    a, b, tx, ty = fit_similarity(mean_shape()[use], pts[use])
    scale = float(np.hypot(a, b))
    cx = a * 0.5 - b * 0.5 + tx
    cy = b * 0.5 + a * 0.5 + ty
    return np.array([cx - scale / 2, cy - scale / 2, cx + scale / 2, cy + scale / 2])


def boxes_from_landmarks(landmarks: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(n, 4) face boxes for (n, 21, 2) landmarks and (n, 21) visibility masks."""
    return np.array([box_from_landmarks(l, v) for l, v in zip(landmarks, visible)]).reshape(-1, 4)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union of boxes a (n, 4) and b (m, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS (cv2.dnn.NMSBoxes), highest score first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    # NMSBoxes drops scores <= score_threshold (which must be >= 0): shift so every box takes part.
    shifted = np.asarray(scores, dtype=np.float64) - float(np.min(scores)) + 1.0
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), shifted.tolist(), score_threshold=0.0,
                            nms_threshold=float(iou_threshold))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def bbox_targets(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """R-CNN regression targets (dx, dy, dw, dh) from boxes (n, 4) to their matched gt boxes (n, 4)."""
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
    """The box cut from image (H, W, 3 uint8) and warped to size x size, as float32 HWC.

    The box is rounded outward to whole pixels; parts outside the image are padded with the mean
    colour (zero after mean subtraction), as R-CNN does; the cut is warped anisotropically
    (cv2.resize: INTER_AREA when shrinking, INTER_LINEAR when enlarging).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    ix1, iy1 = int(np.floor(x1)), int(np.floor(y1))
    ix2, iy2 = max(int(np.ceil(x2)), ix1 + 1), max(int(np.ceil(y2)), iy1 + 1)
    h, w = image.shape[:2]
    cut = image[max(iy1, 0):max(min(iy2, h), 0), max(ix1, 0):max(min(ix2, w), 0)]
    pad = [max(0, -iy1), max(0, iy2 - h), max(0, -ix1), max(0, ix2 - w)]
    fill = tuple(float(v) for v in mean_bgr)
    # A box far larger than the output is shrunk before padding, so huge boxes never allocate huge crops.
    fx, fy = min(1.0, 2.0 * size / (ix2 - ix1)), min(1.0, 2.0 * size / (iy2 - iy1))
    if (fx < 1.0 or fy < 1.0) and cut.size:
        cut = cv2.resize(cut, (max(1, round(cut.shape[1] * fx)), max(1, round(cut.shape[0] * fy))),
                         interpolation=cv2.INTER_AREA)
    pad = [round(pad[0] * fy), round(pad[1] * fy), round(pad[2] * fx), round(pad[3] * fx)]
    if cut.size == 0:
        cut = np.empty((max(1, round((iy2 - iy1) * fy)), max(1, round((ix2 - ix1) * fx)), 3), image.dtype)
        cut[...] = np.asarray(mean_bgr, dtype=np.float64).round().astype(image.dtype)
    elif any(pad):
        cut = cv2.copyMakeBorder(cut, *pad, cv2.BORDER_CONSTANT, value=fill)
    interp = cv2.INTER_AREA if (cut.shape[0] > size and cut.shape[1] > size) else cv2.INTER_LINEAR
    return cv2.resize(cut, (size, size), interpolation=interp).astype(np.float32)


def make_batch(image: np.ndarray, boxes: np.ndarray, size: int, mean_bgr) -> np.ndarray:
    """(n, 3, size, size) float32 net input for the boxes: warped crops minus mean_bgr (core/net_io.py)."""
    mean = np.asarray(mean_bgr, dtype=np.float32).reshape(1, 1, 3)
    crops = [crop_and_warp(image, b, size, mean_bgr) - mean for b in np.asarray(boxes).reshape(-1, 4)]
    if not crops:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))
