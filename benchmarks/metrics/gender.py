"""Gender classification accuracy (Section 5.4)."""
from __future__ import annotations

import numpy as np


def gender_accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy of 'm'/'f' predictions.

    pred: (F,) 'm', 'f' or '' (no face detected / no prediction: counted as wrong).
    truth: (F,) 'm' or 'f'.
    Returns {"accuracy": over all F, "accuracy_detected": over faces with a prediction,
             "coverage": fraction with a prediction, "n": F}.
    """
    p = np.asarray(pred, dtype=object).reshape(-1)
    t = np.asarray(truth, dtype=object).reshape(-1)
    if len(p) != len(t):
        raise ValueError(f"pred has {len(p)} entries, truth {len(t)}")
    has = np.array([x in ("m", "f") for x in p], dtype=bool)
    correct = (p == t) & has
    n = len(t)
    return {
        "accuracy": float(correct.sum() / n) if n else float("nan"),
        "accuracy_detected": float(correct.sum() / has.sum()) if has.any() else float("nan"),
        "coverage": float(has.mean()) if n else float("nan"),
        "n": n,
    }
