"""Landmark and pose error metrics of Sections 5.2-5.3: normalised mean error (all normalisers in
`normaliser`, like HRNet's compute_nme), cumulative error distributions, AFLW yaw groups and the
AFLW-21 -> AFW-6 point map.
"""
from __future__ import annotations

import numpy as np

from core.aflw21 import LEFT_EYE_CENTER, POINT_NAMES, RIGHT_EYE_CENTER

# AFW's 6 points (left eye, right eye, nose tip, left mouth corner, mouth centre, right mouth
# corner; image sides) as indices of the AFLW-21 points that predict them.
AFW6_FROM_AFLW21 = np.array([
    LEFT_EYE_CENTER, RIGHT_EYE_CENTER, POINT_NAMES.index("NoseCenter"),
    POINT_NAMES.index("MouthLeftCorner"), POINT_NAMES.index("MouthCenter"), POINT_NAMES.index("MouthRightCorner"),
])

# iBUG 68-point eyes (0-based): image-left eye 36..41, image-right eye 42..47.
IBUG_LEFT_EYE = np.arange(36, 42)
IBUG_RIGHT_EYE = np.arange(42, 48)

NORMALISERS = ("box", "inter_pupil", "inter_ocular")


def normaliser(kind: str, gt_points: np.ndarray, gt_box: np.ndarray | None = None) -> np.ndarray:
    """The distance each face's error is divided by, for every protocol in one place.

    kind:
      "box"          sqrt(w * h) of the ground-truth face box (AFW and AFLW: "face size");
      "inter_pupil"  distance of the eye centres, each the mean of that eye's points
                     (iBUG 68: points 37-42 and 43-48, 1-based);
      "inter_ocular" distance of the outer eye corners (iBUG 68: points 37 and 46, 1-based).
    gt_points: (F, P, 2) ground truth (P = 68 for the eye-based kinds).
    gt_box: (F, 4) x1, y1, x2, y2, needed for "box".
    Returns (F,) float64.
    """
    pts = np.asarray(gt_points, dtype=np.float64)
    if kind == "box":
        if gt_box is None:
            raise ValueError("normaliser 'box' needs gt_box")
        b = np.asarray(gt_box, dtype=np.float64).reshape(-1, 4)
        return np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    if kind == "inter_pupil":
        left = np.nanmean(pts[:, IBUG_LEFT_EYE], axis=1)
        right = np.nanmean(pts[:, IBUG_RIGHT_EYE], axis=1)
        return np.linalg.norm(left - right, axis=1)
    if kind == "inter_ocular":
        return np.linalg.norm(pts[:, 36] - pts[:, 45], axis=1)
    raise ValueError(f"unknown normaliser {kind!r}; known: {NORMALISERS}")


def nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Per-face mean point-to-point error divided by `norm`.

    pred, gt: (F, P, 2); points where gt is NaN (missing/occluded in the annotation) are skipped.
    norm: (F,) from `normaliser`. Returns (F,); NaN for a face with no annotated point, and for a
    face with no prediction (NaN pred) at an annotated point (a missed face is a failure, not 0).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    d = np.linalg.norm(pred - gt, axis=-1)             # (F, P), NaN where gt (or pred) is NaN
    valid = ~np.isnan(gt).any(axis=-1)
    counts = valid.sum(axis=1)
    total = np.where(valid, np.nan_to_num(d, nan=0.0), 0.0).sum(axis=1)
    missed = (valid & np.isnan(d)).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((counts > 0) & ~missed, total / np.maximum(counts, 1) / np.asarray(norm, dtype=np.float64), np.nan)


def mean_or_nan(errors: np.ndarray) -> float:
    """Mean over the finite entries (NaN marks a missed face or an unknown value); NaN when none is."""
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")


def ced(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Cumulative error distribution: fraction of errors <= each threshold.

    errors: (F,) per-face errors (NaN entries are failures: never counted as below).
    thresholds: (K,). Returns (K,) in [0, 1].
    """
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if not len(e):
        return np.zeros(len(t))
    e = np.where(np.isnan(e), np.inf, e)
    return (e[None, :] <= t[:, None]).mean(axis=1)


def angle_error_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Absolute angular difference in degrees, wrapped to [0, 180]. pred, gt: same shape."""
    d = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


def yaw_group(yaw_deg: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Group index of |yaw| for group edges (e0, e1, ..., eG): group g is [e_g, e_{g+1}]
    (the upper edge belongs to the lower group, as [0,30], (30,60], (60,90]); -1 outside."""
    a = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    g = np.searchsorted(np.asarray(edges, dtype=np.float64), a, side="left") - 1
    g = np.where(a == edges[0], 0, g)
    return np.where((a >= edges[0]) & (a <= edges[-1]), g, -1)


def balanced_yaw_subset(yaw_deg: np.ndarray, edges: tuple[float, ...], size: int, seed: int) -> np.ndarray:
    """Indices of a subset with size // G faces from each |yaw| group, drawn with
    np.random.default_rng(seed) and returned sorted. Raises ValueError if a group is too small."""
    groups = yaw_group(yaw_deg, edges)
    n_groups = len(edges) - 1
    per = size // n_groups
    rng = np.random.default_rng(seed)
    picked = []
    for g in range(n_groups):
        members = np.flatnonzero(groups == g)
        if len(members) < per:
            raise ValueError(f"yaw group {edges[g]}-{edges[g + 1]} has {len(members)} faces, need {per}")
        picked.append(rng.choice(members, size=per, replace=False))
    return np.sort(np.concatenate(picked))


def nme_per_yaw_group(errors: np.ndarray, yaw_deg: np.ndarray, edges: tuple[float, ...]) -> dict[str, float]:
    """Mean of finite per-face errors in each |yaw| group and over all of them.

    errors, yaw_deg: (F,). Returns {"[0,30]": ..., "(30,60]": ..., "(60,90]": ..., "all": ...}
    (NaN for an empty group); "all" is the mean of the group means (the paper's balanced mean).
    """
    e = np.asarray(errors, dtype=np.float64)
    groups = yaw_group(yaw_deg, edges)
    out = {}
    for g in range(len(edges) - 1):
        sel = (groups == g) & np.isfinite(e)
        name = f"{'[' if g == 0 else '('}{edges[g]:g},{edges[g + 1]:g}]"
        out[name] = float(e[sel].mean()) if sel.any() else float("nan")
    vals = [v for v in out.values() if np.isfinite(v)]
    out["all"] = float(np.mean(vals)) if vals else float("nan")
    return out


def visibility_accuracy(pred_visibility: np.ndarray, gt_visible: np.ndarray, labelled: np.ndarray,
                        threshold: float) -> float:
    """Fraction of labelled points whose predicted visibility (score >= threshold) equals the truth.

    pred_visibility: (F, P) scores; gt_visible: (F, P) 1/0 (or bool); labelled: (F, P) bool, the
    points whose visibility is known. NaN when nothing is labelled.
    """
    pred = np.asarray(pred_visibility, dtype=np.float64) >= threshold
    gt = np.asarray(gt_visible, dtype=np.float64) > 0.5
    lab = np.asarray(labelled, dtype=bool)
    if not lab.any():
        return float("nan")
    return float((pred == gt)[lab].mean())


def mean_abs_angle_error(pred_deg: np.ndarray, gt_deg: np.ndarray) -> float:
    """Mean absolute angular error in degrees (angle_error_deg, wrapped), over pairs where both are known."""
    err = angle_error_deg(pred_deg, gt_deg).reshape(-1)
    err = err[np.isfinite(err)]
    return float(err.mean()) if len(err) else float("nan")
