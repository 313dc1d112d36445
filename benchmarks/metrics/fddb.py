"""FDDB evaluation (Jain & Learned-Miller 2010) for rectangle detections, Section 5.1.

Per image, the overlap of a detection rectangle with an annotated ellipse is the IoU of their
rasterised regions (cv2.ellipse on a mask). Detections and faces are matched one-to-one by
maximum total IoU (Hungarian, scipy linear_sum_assignment), recomputed for every score threshold
over the detections at or above it, as the official `evaluate` does. Discrete score: a matched
pair with IoU > iou_threshold is a TP; continuous score: the sum of matched IoUs. False positives
are detections that are not discrete TPs (the same count in both curves). The ROC pools all folds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment


def ellipse_box_iou(ellipses: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of rasterised ellipses and rectangles.

    ellipses: (M, 5) major_radius, minor_radius, angle (radians), center_x, center_y (FDDB).
    boxes: (N, 4) x1, y1, x2, y2 in pixels (the rectangle covers [x1, x2) x [y1, y2) after rounding).
    Returns (M, N) float64. Pixels are counted on a grid covering both shapes (negative
    coordinates included), so shapes reaching outside the image are not clipped.
    """
    ell = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    bx = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(ell), len(bx)))
    for m, (ra, rb, ang, cx, cy) in enumerate(ell):
        r = max(ra, rb)
        for n, (x1, y1, x2, y2) in enumerate(bx):
            ox = int(np.floor(min(cx - r, x1))) - 1
            oy = int(np.floor(min(cy - r, y1))) - 1
            w = int(np.ceil(max(cx + r, x2))) - ox + 2
            h = int(np.ceil(max(cy + r, y2))) - oy + 2
            e_mask = np.zeros((h, w), np.uint8)
            cv2.ellipse(e_mask, (int(round(cx - ox)), int(round(cy - oy))), (int(round(ra)), int(round(rb))),
                        float(np.degrees(ang)), 0, 360, 1, thickness=-1)
            b_mask = np.zeros((h, w), np.uint8)
            b_mask[int(round(y1 - oy)):int(round(y2 - oy)), int(round(x1 - ox)):int(round(x2 - ox))] = 1
            inter = np.count_nonzero(e_mask & b_mask)
            union = np.count_nonzero(e_mask | b_mask)
            out[m, n] = inter / union if union else 0.0
    return out


def match_image(iou: np.ndarray) -> np.ndarray:
    """One-to-one maximum-weight matching. iou: (M faces, N detections). Returns the IoUs of the
    matched pairs with IoU > 0 (1-D, at most min(M, N))."""
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        return np.zeros(0)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    vals = iou[rows, cols]
    return vals[vals > 0]


@dataclass
class ROC:
    thresholds: np.ndarray  # (K,) decreasing score thresholds
    fp: np.ndarray          # (K,) false positives at each threshold
    tpr_discrete: np.ndarray
    tpr_continuous: np.ndarray
    n_faces: int

    def tpr_at(self, fp_limit: int, continuous: bool = False) -> float:
        """TPR at the lowest threshold whose FP count is <= fp_limit (0 when none)."""
        tpr = self.tpr_continuous if continuous else self.tpr_discrete
        ok = self.fp <= fp_limit
        return float(tpr[ok].max()) if ok.any() else 0.0


def fddb_roc(
    ious: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    iou_threshold: float,
) -> ROC:
    """Discrete and continuous ROC over all images together.

    ious: per image, the (M_i faces, N_i detections) ellipse-box IoU matrix (ellipse_box_iou).
    scores: per image, the (N_i,) detection scores. Faces of images without detections count
        in the denominator (give a (M_i, 0) matrix).
    iou_threshold: a matched pair is a discrete TP when its IoU is strictly above this.
    """
    n_faces = sum(np.asarray(m).shape[0] for m in ious)
    all_scores = np.unique(np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores] + [np.zeros(0)]))[::-1]
    # per image: results at each of its own unique scores; the image contributes, at a global
    # threshold t, the result for its smallest own score >= t (nothing if none).
    per_image = []
    for m, s in zip(ious, scores):
        m = np.asarray(m, dtype=np.float64)
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        uniq = np.unique(s)[::-1]
        res = []
        for t in uniq:
            sel = s >= t
            vals = match_image(m[:, sel])
            tp_d = int((vals > iou_threshold).sum())
            res.append((tp_d, float(vals.sum()), int(sel.sum()) - tp_d))
        per_image.append((uniq, np.array(res, dtype=np.float64).reshape(-1, 3)))
    table = np.zeros((len(all_scores), 3))
    for uniq, res in per_image:
        if not len(uniq):
            continue
        # index into this image's results for each global threshold: count of own scores >= t, minus 1
        k = np.searchsorted(-uniq, -all_scores, side="right") - 1
        ok = k >= 0
        table[ok] += res[k[ok]]
    denom = max(n_faces, 1)
    return ROC(thresholds=all_scores, fp=table[:, 2], tpr_discrete=table[:, 0] / denom,
               tpr_continuous=table[:, 1] / denom, n_faces=n_faces)


def write_roc_files(roc: ROC, out_dir: str | Path, prefix: str = "") -> tuple[Path, Path]:
    """Write `<prefix>DiscROC.txt` and `<prefix>ContROC.txt` as the official evaluation does:
    one "TPR FP" line per threshold (plot with gnuplot `using 2:1`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, tpr in (("DiscROC.txt", roc.tpr_discrete), ("ContROC.txt", roc.tpr_continuous)):
        p = out_dir / f"{prefix}{name}"
        p.write_text("".join(f"{t:.6f} {int(f)}\n" for t, f in zip(tpr, roc.fp)))
        paths.append(p)
    return paths[0], paths[1]


def ellipse_boxes(ellipses: np.ndarray) -> np.ndarray:
    """Axis-aligned bounding boxes (n, 4) x1, y1, x2, y2 of FDDB ellipses (n, 5):
    major radius a, minor radius b, angle t (radians, of the major axis), centre x, y.
    Half extents: sqrt(a^2 cos^2 t + b^2 sin^2 t) in x, sqrt(a^2 sin^2 t + b^2 cos^2 t) in y."""
    e = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    a, b, t, cx, cy = e.T
    hw = np.sqrt((a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2)
    hh = np.sqrt((a * np.sin(t)) ** 2 + (b * np.cos(t)) ** 2)
    return np.column_stack([cx - hw, cy - hh, cx + hw, cy + hh])
