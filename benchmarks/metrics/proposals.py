"""Recall of region proposals (issue 12 item 2): the fraction of faces that some proposal among the
first N of its image overlaps by IoU > t, for several N and t, split by face size.

Faces whose width or height is under `min_side` are not counted (face-eval's "ignore" faces, 30 px);
a counted face's size is sqrt(w * h) (the README's face size). IoU is core.geometry.box_iou
(width = x2 - x1). "> t", not ">= t": the proposal could be a true positive of face-eval at t.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core.geometry import box_iou


def size_bin_names(edges: Sequence[float]) -> list[str]:
    """Names of the bins [e0, e1), [e1, e2), ..., [e_last, inf): '30-60', '60-120', '>120'."""
    names = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    return names + [f">{edges[-1]:g}"]


def best_iou_at_counts(proposals: np.ndarray, faces: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """(len(counts), n_faces): the largest IoU of each face with the first c proposals (0 when none)."""
    proposals = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(counts), len(faces)))
    if len(proposals) == 0 or len(faces) == 0:
        return out
    running = np.maximum.accumulate(box_iou(faces, proposals), axis=1)  # (faces, proposals)
    for k, c in enumerate(counts):
        if c > 0:
            out[k] = running[:, min(int(c), len(proposals)) - 1]
    return out


def proposal_recall(proposals: Sequence[np.ndarray], faces: Sequence[np.ndarray], counts: Sequence[int],
                    iou_thresholds: Sequence[float] = (0.5, 0.7), size_edges: Sequence[float] = (30, 60, 120),
                    min_side: float = 30.0) -> dict:
    """Recall per IoU threshold, size bin and proposal count.

    proposals[i]: (n_i, 4) boxes of image i in ranked order; faces[i]: (m_i, 4) its ground-truth
    boxes. Returns {"counts": [...], "bins": [... , "all"], "n_faces": {bin: int},
    "recall": {t: {bin: [recall at each count]}}} (NaN where a bin has no face)."""
    bins = size_bin_names(size_edges) + ["all"]
    best_parts, bin_parts = [], []
    for props, gt in zip(proposals, faces):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        w, h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
        gt = gt[(w >= min_side) & (h >= min_side)]
        size = np.sqrt((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))
        best_parts.append(best_iou_at_counts(props, gt, counts))
        bin_parts.append(np.searchsorted(np.asarray(size_edges, dtype=np.float64), size, side="right") - 1)
    best = np.concatenate(best_parts, axis=1) if best_parts else np.zeros((len(counts), 0))
    which = np.concatenate(bin_parts) if bin_parts else np.zeros(0, dtype=np.int64)
    members = {name: which == k for k, name in enumerate(bins[:-1])}
    members["all"] = np.ones(len(which), dtype=bool)
    recall = {}
    for t in iou_thresholds:
        found = best > t
        recall[t] = {name: [float(found[k, m].mean()) if m.any() else float("nan") for k in range(len(counts))]
                     for name, m in members.items()}
    return {"counts": [int(c) for c in counts], "bins": bins,
            "n_faces": {name: int(m.sum()) for name, m in members.items()}, "recall": recall}
