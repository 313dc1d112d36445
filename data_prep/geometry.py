"""Ground-truth jitter for region sampling. IoU, box-regression targets and the crop live in
core/geometry.py, shared with the pipeline so training and test crops are identical."""
from __future__ import annotations

import numpy as np


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
