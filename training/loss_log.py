"""Per-iteration task losses: an append-only CSV that survives a resume, and its PNG curves."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def truncate_log(path: Path, last_iter: int) -> None:
    """Drop rows after `last_iter`, so a run resumed from a snapshot does not log an iteration twice."""
    if not path.exists():
        return
    with path.open() as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_iter]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows(kept)
    tmp.replace(path)


class LossLog:
    """CSV with columns iter, <loss names...>; the header is written once."""

    def __init__(self, path: Path, names: list[str]):
        self.path = Path(path)
        self.names = list(names)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = self.path.open("a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(["iter", *self.names])
            self._fh.flush()

    def append(self, iteration: int, values: dict[str, float]) -> None:
        self._writer.writerow([iteration, *(f"{values[n]:.6g}" for n in self.names)])

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_log(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(iterations, {loss name: values}) from a LossLog CSV."""
    with Path(path).open() as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], [r for r in rows[1:] if r]
    data = np.array(body, dtype=np.float64).reshape(len(body), len(header))
    return data[:, 0], {name: data[:, i + 1] for i, name in enumerate(header[1:])}


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (shorter at the start), same length as `values`."""
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def plot_log(csv_path: Path, png_path: Path, title: str = "") -> None:
    """One panel per task loss: raw values faint, moving average bold."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters, losses = read_log(csv_path)
    if len(iters) == 0:
        return
    fig, axes = plt.subplots(1, len(losses), figsize=(3.2 * len(losses), 3), squeeze=False)
    window = max(1, len(iters) // 50)
    for ax, (name, values) in zip(axes[0], losses.items()):
        ax.plot(iters, values, alpha=0.25, lw=0.8)
        ax.plot(iters, moving_average(values, window), lw=1.6)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
