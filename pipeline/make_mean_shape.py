"""Compute the mean AFLW-21 shape in unit-face-box coordinates and write pipeline/mean_shape_aflw21.json.

Source: the aflw_crops TRAIN split, read by data_prep's reader (data_prep.readers.aflw_crops: bad
crops skipped, face box = the 120x120 crop), so the shape the test-time face-box fit uses has never
seen a held-out test face. We keep the faces with all 21 points visible, divide by the crop side and
average. Also written: one mean shape per yaw (every YAW_STEP degrees, faces within YAW_WINDOW of it,
each point averaged over the faces where it is visible, left out where fewer than MIN_VISIBLE see it),
which the test-time fit uses with the predicted yaw: the paper's FaceRectCalculator fits a 3-D mean
face with the pose, and a frontal 2-D shape fitted to a profile's visible points gives a box off the
face (aflw_crops test split, true landmarks, |yaw| 60-90: IoU with the face box 0.57 frontal, 0.87
by yaw). Run:  python -m pipeline.make_mean_shape [--data DIR] [--out FILE]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from core.aflw21 import NUM_POINTS, POINT_NAMES
from core.config import DATA_ROOT, HyperFaceConfig
from data_prep.errors import DataPrepError
from data_prep.readers.aflw_crops import CROP_SIZE, read_aflw_crops

log = logging.getLogger(__name__)
DEFAULT_OUT = Path(__file__).resolve().parent / "mean_shape_aflw21.json"
YAW_LIMIT = 100.0   # shapes at -100, -95, ..., 100 degrees; a predicted yaw beyond is clamped
YAW_STEP = 5.0
YAW_WINDOW = 10.0   # faces with |yaw - centre| <= this average into the centre's shape
MIN_VISIBLE = 30    # a point seen on fewer faces of the window is left out of that shape (NaN)


def compute_mean_shape(aflw_crops_root: Path, config: HyperFaceConfig | None = None) -> tuple[np.ndarray, int]:
    """(21, 2) mean shape in unit-box coordinates and the number of faces it averages: the
    train-split faces of `aflw_crops_root` with every point visible, divided by their box side."""
    faces = [f for r in read_aflw_crops(aflw_crops_root, split="train", config=config) for f in r.faces]
    full = [f for f in faces if np.isfinite(f.landmarks).all()]
    if not full:
        raise DataPrepError(aflw_crops_root, f"no train-split face with all {NUM_POINTS} points visible")
    unit = [(f.landmarks - f.box[:2]) / (f.box[2:] - f.box[:2]) for f in full]
    return np.mean(unit, axis=0), len(full)


def compute_yaw_shapes(aflw_crops_root: Path, config: HyperFaceConfig | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yaw centres (k,), mean shapes (k, 21, 2) in unit-box coordinates (NaN: a point too rarely
    visible at that yaw) and the number of faces behind each centre (k,), from the train split."""
    faces = [f for r in read_aflw_crops(aflw_crops_root, split="train", config=config) for f in r.faces]
    unit = np.array([(f.landmarks - f.box[:2]) / (f.box[2:] - f.box[:2]) for f in faces])
    yaw = np.array([f.pose_deg[2] for f in faces])
    centres = np.arange(-YAW_LIMIT, YAW_LIMIT + YAW_STEP / 2, YAW_STEP)
    shapes, counts = np.full((len(centres), NUM_POINTS, 2), np.nan), np.zeros(len(centres), dtype=int)
    for k, centre in enumerate(centres):
        window = unit[np.abs(yaw - centre) <= YAW_WINDOW]
        seen = np.isfinite(window).all(axis=2)
        counts[k] = len(window)
        for p in np.flatnonzero(seen.sum(axis=0) >= MIN_VISIBLE):
            shapes[k, p] = window[seen[:, p], p].mean(axis=0)
    return centres, shapes, counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA_ROOT, help="the shared data folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = args.data / "aflw_crops"
    mean, n = compute_mean_shape(root)
    centres, shapes, counts = compute_yaw_shapes(root)
    doc = {
        "description": "Mean AFLW-21 shape in unit face-box coordinates ((0,0) top-left, (1,1) bottom-right)",
        "point_names": list(POINT_NAMES),
        "points": [[round(float(x), 6), round(float(y), 6)] for x, y in mean],
        "yaw_shapes": {
            "description": ("mean shape per yaw (degrees, aflw_crops sign: positive turns the face toward the "
                            "image left), each point averaged over the faces of the window where it is visible; "
                            "null: seen on too few faces"),
            "yaw_deg": [float(c) for c in centres],
            "faces": [int(c) for c in counts],
            "window_deg": YAW_WINDOW,
            "min_visible": MIN_VISIBLE,
            "points": [[None if not np.isfinite(p).all() else [round(float(p[0]), 6), round(float(p[1]), 6)]
                        for p in shape] for shape in shapes],
        },
        "provenance": {
            "source": "aflw_crops/annotations.csv, train split (shared data; 2DASL AFLW crops, crop = face box)",
            "source_sha1": hashlib.sha1((root / "annotations.csv").read_bytes()).hexdigest(),
            "faces": n,
            "rule": (f"data_prep.readers.aflw_crops split 'train' (bad crops skipped), all 21 points visible, "
                     f"divided by the crop side {CROP_SIZE}"),
            "script": "pipeline/make_mean_shape.py",
        },
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    log.info("wrote %s (%d faces)", args.out, n)


if __name__ == "__main__":
    main()
