"""Test-time geometry: the landmark-to-face-box calculator (FaceRectCalculator of Algorithms 1 and
2), NMS and the net-input batch. IoU, box regression and the crop itself are core/geometry.py,
shared with data_prep so that training and test crops are identical.

Boxes are float (x1, y1, x2, y2) in 0-based image pixels; width = x2 - x1 (continuous coordinates,
no "+1"), everywhere in this project.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from skimage.transform import SimilarityTransform

from core.aflw21 import NUM_POINTS
from core.geometry import box_iou, crop_and_warp
from pipeline.errors import GeometryError

MEAN_SHAPE_PATH = Path(__file__).resolve().parent / "mean_shape_aflw21.json"


@functools.lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """(21, 2) mean AFLW-21 shape in unit face-box coordinates (pipeline/make_mean_shape.py)."""
    pts = np.asarray(json.loads(MEAN_SHAPE_PATH.read_text())["points"], dtype=np.float64)
    pts.setflags(write=False)
    return pts


@functools.lru_cache(maxsize=1)
def yaw_mean_shapes() -> tuple[np.ndarray, np.ndarray]:
    """Yaw centres (k,) in degrees and mean AFLW-21 shapes (k, 21, 2) in unit face-box coordinates, NaN
    where a point is too rarely visible at that yaw (pipeline/make_mean_shape.py)."""
    doc = json.loads(MEAN_SHAPE_PATH.read_text())["yaw_shapes"]
    centres = np.asarray(doc["yaw_deg"], dtype=np.float64)
    shapes = np.array([[[np.nan, np.nan] if p is None else p for p in shape] for shape in doc["points"]],
                      dtype=np.float64)
    centres.setflags(write=False)
    shapes.setflags(write=False)
    return centres, shapes


def shape_for_yaw(yaw_deg: float | None) -> np.ndarray:
    """(21, 2) unit-box mean shape for a face at this yaw (the nearest centre; clamped to the range);
    None or NaN: the frontal mean shape of faces with every point visible."""
    if yaw_deg is None or not np.isfinite(yaw_deg):
        return mean_shape()
    centres, shapes = yaw_mean_shapes()
    return shapes[int(np.argmin(np.abs(centres - float(yaw_deg))))]


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares similarity (no reflection) mapping src (n, 2) onto dst (n, 2).

    Returns (a, b, tx, ty) with dst ~ [[a, -b], [b, a]] @ src + t; the scale is hypot(a, b).
    scikit-image's SimilarityTransform.estimate (Umeyama 1991) does the fit.
    """
    tf = SimilarityTransform()
    if not tf.estimate(np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)) \
            or not np.isfinite(tf.params).all():
        raise GeometryError("landmarks are all at one point; no face box can be fitted")
    (a, _, tx), (b, _, ty) = tf.params[:2]
    return float(a), float(b), float(tx), float(ty)


def box_from_landmarks(landmarks: np.ndarray, visible: np.ndarray | None = None,
                       yaw_deg: float | None = None) -> np.ndarray:
    """Face box (4,) x1, y1, x2, y2 from AFLW-21 landmarks (21, 2) and a visibility mask (21,).

    Fits the mean AFLW-21 shape (of faces at `yaw_deg`, shape_for_yaw; None: the frontal one) to the
    visible, finite points by a least-squares similarity and returns the image of the unit face box:
    a square centred on the transformed box centre whose side is the similarity's scale (in-plane
    rotation does not change the box size). This is the face-box convention of the whole project
    (data_prep labels, IRP, L-NMS). When fewer than two visible points are finite, all finite points
    are used; fewer than two raises GeometryError. Points the yaw's shape lacks are not fitted.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(NUM_POINTS, 2)
    shape = shape_for_yaw(yaw_deg)
    finite = np.isfinite(pts).all(axis=1) & np.isfinite(shape).all(axis=1)
    use = finite if visible is None else finite & np.asarray(visible, dtype=bool).reshape(NUM_POINTS)
    if use.sum() < 2:
        use = finite
    if use.sum() < 2:
        raise GeometryError(f"need at least 2 finite landmarks to fit a face box, got {int(use.sum())}")
    a, b, tx, ty = fit_similarity(shape[use], pts[use])
    scale = float(np.hypot(a, b))
    cx = a * 0.5 - b * 0.5 + tx
    cy = b * 0.5 + a * 0.5 + ty
    return np.array([cx - scale / 2, cy - scale / 2, cx + scale / 2, cy + scale / 2])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Indices kept by greedy NMS, highest score first: a box is suppressed by a kept one when their
    IoU (core.geometry.box_iou) exceeds iou_threshold (as cv2.dnn.NMSBoxes). Equal scores keep
    their input order (stable sort), so the result is a function of the boxes and scores alone.
    limit: stop after that many kept (the first `limit` of the full result)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for rank, i in enumerate(order):
        if limit is not None and len(keep) >= limit:
            break
        if alive[rank]:
            keep.append(i)
            alive[rank + 1:] &= box_iou(boxes[i], boxes[order[rank + 1:]])[0] <= iou_threshold
    return np.asarray(keep, dtype=np.int64)


def mirror_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes (n, 4) of a width-pixel-wide image, mirrored left-right: x1, x2 -> width - x2, width - x1
    (pixel column i becomes width - 1 - i, so the crop of a mirrored box is the mirrored crop)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def make_batch(image: np.ndarray, boxes: np.ndarray, size: int, mean_bgr) -> np.ndarray:
    """(n, 3, size, size) float32 net input for the boxes: warped crops minus mean_bgr (core/net_io.py)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    crops = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for k, box in enumerate(boxes):
        crops[k] = crop_and_warp(image, box, size, mean_bgr)
    # one channel plane at a time, uint8 -> float32 minus the mean straight into the NCHW batch: 4x faster
    # than converting each HWC crop and transposing the stack (the crop thread had become the bottleneck)
    batch = np.empty((len(boxes), 3, size, size), dtype=np.float32)
    for c, m in enumerate(np.asarray(mean_bgr, dtype=np.float32)):
        np.subtract(crops[..., c], m, out=batch[:, c], dtype=np.float32)
    return batch
