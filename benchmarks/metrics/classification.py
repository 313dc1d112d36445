"""Metrics of binary decisions over samples (region classification, gender)."""
from __future__ import annotations

import numpy as np

from benchmarks.metrics.detection import voc_ap


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of ranking `scores` (N,) against boolean `positive` (N,): area under the precision
    envelope (voc_ap); ties are ranked in input order (stable sort). NaN when there is no positive."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    if not positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(positive[order])
    fp = np.cumsum(~positive[order])
    return voc_ap(tp / positive.sum(), tp / np.maximum(tp + fp, 1))


def balanced_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean of the recall of each class of boolean `actual` (a constant answer scores 0.5)."""
    predicted = np.asarray(predicted, dtype=bool).reshape(-1)
    actual = np.asarray(actual, dtype=bool).reshape(-1)
    recalls = [float(np.mean(predicted[actual == c] == c)) for c in (True, False) if (actual == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")
