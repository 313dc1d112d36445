"""The one selective search of the project (training regions in data_prep and test-time proposals in
the pipeline both call `selective_search`), and the proposal filters that make it cheap without
changing what it can find (issue 12 item 3).

Steps (all pure functions of the image and the SelectiveSearchConfig):
  1. OpenCV ximgproc selective search on the image resized so its longer side is <= max_side;
  2. boxes mapped back to image pixels, rounded to whole pixels (the crop of a box is exactly the
     box its labels and decoded landmarks refer to) and clipped to the image;
  3. `can_hold_face`: regions dropped that cannot overlap (IoU > match_iou) any face of at least
     min_face_side px whose width/height ratio lies in [face_aspect_min, face_aspect_max];
     regions smaller than min_box_side px are dropped as before;
  4. `canonical_order` + `merge_near_duplicates`: OpenCV returns the same set of boxes in a different
     order on every call (its ranking draws random numbers), so the order is rebuilt from the boxes
     alone: by how many boxes of the set overlap each one by >= RANK_IOU (regions that several of
     selective search's strategies agree on first), then by coordinates; greedily, each box
     absorbs the later boxes with IoU >= merge_iou;
  5. at most max_proposals (fast) / max_proposals_quality boxes, in that order.
"""
from __future__ import annotations

import cv2
import numpy as np

from core.config import SelectiveSearchConfig
from core.geometry import box_iou

SS_MODES = ("fast", "quality")
# the canonical order ranks a box by how many boxes of its photo overlap it by >= RANK_IOU (whatever
# merge_iou is, so that the max_proposals cap keeps the same kind of boxes with merging off)
RANK_IOU = 0.9
_CHUNK = 512  # rows of an IoU matrix computed at once (10000 quality boxes: 41 MB, not 800 MB)


def raw_selective_search(image: np.ndarray, cfg: SelectiveSearchConfig, mode: str | None = None) -> np.ndarray:
    """OpenCV's boxes (n, 4) x1, y1, x2, y2 in `image` pixels (float, unrounded, unclipped), in
    OpenCV's order of this call (which is not reproducible; see canonical_order)."""
    mode = mode or cfg.mode
    if mode not in SS_MODES:
        raise ValueError(f"unknown selective search mode {mode!r}; choose one of {SS_MODES}")
    h, w = image.shape[:2]
    scale = min(1.0, cfg.max_side / max(h, w))
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1.0 else image
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(small)
    if mode == "fast":
        ss.switchToSelectiveSearchFast(cfg.fast_base_k, cfg.fast_inc_k)
    else:
        ss.switchToSelectiveSearchQuality()
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)  # x, y, w, h
    return np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]]) / scale


def round_and_clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes rounded to whole pixels (np.round) and clipped to the image, float64 (n, 4)."""
    boxes = np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def aspect_slack(iou: float) -> float:
    """Largest factor between the width/height ratios of two boxes with IoU >= iou.

    Centred boxes, region (x w, y h) around a face (w, h) with x >= 1 >= y: IoU = y / (x y + 1 - y);
    for a ratio factor q = x / y it peaks at y = 1 / sqrt(q) with 1 / (2 sqrt(q) - 1), so
    IoU >= t needs q <= ((1 + t) / (2 t))^2 (2.25 for t = 0.5)."""
    return ((1.0 + iou) / (2.0 * iou)) ** 2


def can_hold_face(boxes: np.ndarray, cfg: SelectiveSearchConfig) -> np.ndarray:
    """(n,) bool: regions that can overlap some face (IoU > cfg.match_iou) of width and height
    >= cfg.min_face_side and width/height in [cfg.face_aspect_min, cfg.face_aspect_max], and whose
    sides are >= cfg.min_box_side.

    Necessary conditions of IoU > t with such a face, each exact on its own: a side >= t times the
    face's (IoU <= min(w, fw) / max(w, fw)), an area >= t * min_face_side^2 (IoU <= area ratio), a
    width/height ratio within aspect_slack(t) of the faces' range. A region failing one of them
    cannot be a face at IoU t, so dropping it changes no recall at IoU >= t for such faces."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ok = (w >= cfg.min_box_side) & (h >= cfg.min_box_side) & (w > 0) & (h > 0)
    t, s = cfg.match_iou, cfg.min_face_side
    if t <= 0:  # match_iou 0: the face filter is off
        return ok
    slack = aspect_slack(t)
    ok &= (w >= t * s) & (h >= t * s) & (w * h >= t * s * s)
    ratio = np.divide(w, h, out=np.zeros_like(w), where=h > 0)
    ok &= (ratio >= cfg.face_aspect_min / slack) & (ratio <= cfg.face_aspect_max * slack)
    return ok


def canonical_order(boxes: np.ndarray, rank_iou: float = RANK_IOU) -> np.ndarray:
    """Indices of `boxes` in an order that depends on the set of boxes only (not on their input
    order): most neighbours with IoU >= rank_iou first, then x1, y1, x2, y2 ascending. Exact
    duplicates must be removed first (np.unique)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    neighbours = np.concatenate([(box_iou(boxes[i:i + _CHUNK], boxes) >= rank_iou).sum(axis=1)
                                 for i in range(0, len(boxes), _CHUNK)])
    # np.lexsort: the last key is the primary one
    return np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -neighbours))


def merge_near_duplicates(boxes: np.ndarray, merge_iou: float) -> np.ndarray:
    """Indices kept when, in the given order, each kept box absorbs every later box with IoU >= merge_iou
    (merge_iou >= 1: nothing is merged; exact duplicates are removed before, by np.unique)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if merge_iou >= 1.0 or len(boxes) == 0:
        return np.arange(len(boxes))
    alive = np.ones(len(boxes), dtype=bool)
    keep = []
    for i in range(len(boxes)):
        if alive[i]:
            keep.append(i)
            alive[i + 1:] &= box_iou(boxes[i], boxes[i + 1:])[0] < merge_iou
    return np.asarray(keep, dtype=np.int64)


def finish_proposals(boxes: np.ndarray, width: int, height: int, cfg: SelectiveSearchConfig,
                     mode: str | None = None) -> np.ndarray:
    """Steps 2-5 of the module docstring on raw boxes in image pixels: the proposals (n, 4) float64."""
    mode = mode or cfg.mode
    boxes = round_and_clip(boxes, width, height)
    boxes = np.unique(boxes[can_hold_face(boxes, cfg)], axis=0)
    boxes = boxes[canonical_order(boxes)]
    boxes = boxes[merge_near_duplicates(boxes, cfg.merge_iou)]
    limit = cfg.max_proposals if mode == "fast" else cfg.max_proposals_quality
    return boxes[:limit]


def selective_search(image: np.ndarray, cfg: SelectiveSearchConfig, mode: str | None = None) -> np.ndarray:
    """Selective search proposals (n, 4) x1, y1, x2, y2 in whole image pixels (float64), filtered,
    merged and in canonical order (module docstring); the same boxes in the same order on every call."""
    h, w = image.shape[:2]
    return finish_proposals(raw_selective_search(image, cfg, mode), w, h, cfg, mode)
