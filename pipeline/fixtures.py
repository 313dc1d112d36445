"""Model directories with random (or given) weights for a deploy prototxt: for the pipeline's tests,
the backend-equivalence check and benchmarks/speed.py (which times the real deploy nets)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from core.model_store import export_model, write_caffemodel
from core.net_shapes import random_weights


def make_model_dir(deploy_prototxt: str | Path, out_dir: str | Path, weights: dict[str, list[np.ndarray]] | None = None,
                   seed: int = 0, fp16: bool = False, meta: dict | None = None) -> Path:
    """Export `weights` (default: random_weights(deploy, seed)) as a model directory at out_dir."""
    weights = weights if weights is not None else random_weights(deploy_prototxt, seed)
    with tempfile.TemporaryDirectory() as tmp:
        caffemodel = write_caffemodel(deploy_prototxt, weights, Path(tmp) / "weights.caffemodel")
        return export_model(deploy_prototxt, caffemodel, out_dir, fp16=fp16,
                            meta={"trained_on": "nothing (random weights for tests)", "seed": seed, **(meta or {})})
