"""Compute the mean AFLW-21 shape in unit-face-box coordinates and write pipeline/mean_shape_aflw21.json.

Source: aflw_crops/annotations.csv (120x120 crops whose crop IS the face box). We keep faces with
all 21 points visible and every coordinate inside [-5, 125] (the data README's rule against bad
crops), divide by 120 and average. Run:  python -m pipeline.make_mean_shape [--data DIR] [--out FILE]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.aflw21 import NUM_POINTS, POINT_NAMES

log = logging.getLogger(__name__)
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "mean_shape_aflw21.json"
CROP_SIDE = 120.0  # aflw_crops images are 120x120 and the crop is the face box
MARGIN = 5.0       # visible points must lie in [-MARGIN, CROP_SIDE + MARGIN]


def compute_mean_shape(annotations_csv: Path) -> tuple[np.ndarray, int]:
    """(21, 2) mean shape in unit-box coordinates and the number of faces it averages."""
    df = pd.read_csv(annotations_csv)
    pts = df.iloc[:, 2:].to_numpy(dtype=np.float64).reshape(-1, NUM_POINTS, 2)
    all_visible = (~(pts == -1).all(-1)).all(-1)
    inside = ((pts >= -MARGIN) & (pts <= CROP_SIDE + MARGIN)).all(axis=(1, 2))
    keep = all_visible & inside
    if not keep.any():
        raise ValueError(f"{annotations_csv}: no face with all {NUM_POINTS} points visible")
    return pts[keep].mean(axis=0) / CROP_SIDE, int(keep.sum())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    csv = args.data / "aflw_crops" / "annotations.csv"
    mean, n = compute_mean_shape(csv)
    doc = {
        "description": "Mean AFLW-21 shape in unit face-box coordinates ((0,0) top-left, (1,1) bottom-right)",
        "point_names": list(POINT_NAMES),
        "points": [[round(float(x), 6), round(float(y), 6)] for x, y in mean],
        "provenance": {
            "source": "aflw_crops/annotations.csv (shared data; 2DASL AFLW crops, crop = face box)",
            "source_sha1": hashlib.sha1(csv.read_bytes()).hexdigest(),
            "faces": n,
            "rule": f"all 21 points visible, every coordinate in [-{MARGIN:g}, {CROP_SIDE + MARGIN:g}], divided by {CROP_SIDE:g}",
            "script": "pipeline/make_mean_shape.py",
        },
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    log.info("wrote %s (%d faces)", args.out, n)


if __name__ == "__main__":
    main()
