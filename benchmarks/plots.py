"""Matplotlib (Agg) figures of the benchmarks: PR curves with AP in the legend, FDDB ROC, CED.
Each takes one or more labelled curves, so several models share one plot."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_pr(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: str | Path, title: str) -> Path:
    """curves: (label, recall, precision, ap)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, rec, prec, ap in curves:
        ax.plot(rec, prec, lw=2, label=f"{label} (AP {100 * ap:.2f})")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.grid(True)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, title: str, fp_max: float) -> Path:
    """curves: (label, false positives, true positive rate)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, fp, tpr in curves:
        order = np.argsort(fp, kind="stable")
        ax.plot(np.asarray(fp)[order], np.asarray(tpr)[order], lw=2, label=label)
    ax.set(xlabel="False positives", ylabel="True positive rate", xlim=(0, fp_max), ylim=(0, 1.01), title=title)
    ax.grid(True)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_ced(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, title: str, xlabel: str) -> Path:
    """curves: (label, thresholds, fraction of faces with error <= threshold)."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, t, frac in curves:
        ax.plot(t, 100 * np.asarray(frac), lw=2, label=label)
    ax.set(xlabel=xlabel, ylabel="Fraction of faces (%)", ylim=(0, 101), title=title)
    ax.set_xlim(0, float(np.max([np.max(c[1]) for c in curves])))
    ax.grid(True)
    ax.legend(loc="lower right")
    return _save(fig, path)
