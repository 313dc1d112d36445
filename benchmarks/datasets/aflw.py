"""AFLW test faces for landmarks (Section 5.2) and pose (Section 5.3).

* `load_aflw_crops`: `aflw_crops/annotations.csv` (image, yaw_deg, x1, y1, ..., x21, y21; -1,-1 =
  invisible), 120x120 crops, yaw in the project's AFLW convention. Roll and pitch are unknown.
* `load_aflw2000`: AFLW2000-3D style folder of `imageNNNNN.jpg` + `.mat` (pt2d (2, 21), invisible
  x = -1; Pose_Para [pitch, yaw, roll] radians, same yaw sign as this project).
The face box (the "face size" normaliser) is the box of the visible annotated points.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmarks.errors import BenchmarkDataError
from core.aflw21 import NUM_POINTS
from core.config import load_config
from core.splits import select_split
from core.records import FaceRecord, ImageRecord

EXPECTED_CROPS = "AFLW crops: <dir>/annotations.csv (image,yaw_deg,x1,y1,...,x21,y21) and <dir>/images/*.jpg"
EXPECTED_2000 = "AFLW2000-3D: <dir>/imageNNNNN.jpg with <dir>/imageNNNNN.mat (pt2d, Pose_Para)"


def _points_box(lm: np.ndarray) -> np.ndarray:
    vis = lm[~np.isnan(lm).any(axis=1)]
    if not len(vis):
        return np.full(4, np.nan)
    return np.array([vis[:, 0].min(), vis[:, 1].min(), vis[:, 0].max(), vis[:, 1].max()])


def load_aflw_crops(aflw_dir: str | Path, split: str = "test", config=None) -> list[ImageRecord]:
    """The held-out `split` of aflw_crops (core/splits.py; data_prep trains on 'train' only)."""
    cfg = config or load_config()
    aflw_dir = Path(aflw_dir)
    path = aflw_dir / "annotations.csv"
    if not path.is_file():
        raise BenchmarkDataError(path, f"not found; expected {EXPECTED_CROPS}")
    records = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or header[:2] != ["image", "yaw_deg"] or len(header) != 2 + 2 * NUM_POINTS:
            raise BenchmarkDataError(path, f"header must be image,yaw_deg,x1,y1,...,x{NUM_POINTS},y{NUM_POINTS}")
        rows = list(reader)
        names = [row[0] for row in rows]
        in_split = {n for n, keep in zip(names, select_split(names, split, cfg.sampling.aflw_crops_test_images,
                                                               "aflw_crops")) if keep}
        for line_no, row in enumerate(rows, start=2):
            try:
                vals = np.array(row[1:], dtype=np.float64)
            except ValueError:
                raise BenchmarkDataError(path, f"line {line_no}: non-numeric value") from None
            if len(vals) != 1 + 2 * NUM_POINTS:
                raise BenchmarkDataError(path, f"line {line_no}: {len(row)} columns, expected {len(header)}")
            lm = vals[1:].reshape(NUM_POINTS, 2)
            lm[(lm == -1).all(axis=1)] = np.nan
            if row[0] not in in_split:
                continue
            records.append(ImageRecord(path=aflw_dir / row[0], image_id=Path(row[0]).stem, faces=[
                FaceRecord(box=_points_box(lm), landmarks=lm,
                           pose_deg=np.array([np.nan, np.nan, vals[0]]), face_id=Path(row[0]).stem)]))
    return records


def load_aflw2000(aflw2000_dir: str | Path) -> list[ImageRecord]:
    from scipy.io import loadmat

    aflw2000_dir = Path(aflw2000_dir)
    mats = sorted(aflw2000_dir.glob("image*.mat"))
    if not mats:
        raise BenchmarkDataError(aflw2000_dir, f"no image*.mat found; expected {EXPECTED_2000}")
    records = []
    for m in mats:
        try:
            d = loadmat(str(m))
            pt = np.asarray(d["pt2d"], dtype=np.float64)
            pose = np.asarray(d["Pose_Para"], dtype=np.float64).ravel()
        except (KeyError, ValueError) as err:
            raise BenchmarkDataError(m, f"needs pt2d (2, 21) and Pose_Para (1, 7) ({err})") from None
        if pt.shape != (2, NUM_POINTS) or pose.size < 3:
            raise BenchmarkDataError(m, f"pt2d has shape {pt.shape}, expected (2, {NUM_POINTS})")
        lm = pt.T.copy()
        lm[lm[:, 0] < 0] = np.nan
        pitch, yaw, roll = np.degrees(pose[:3])
        records.append(ImageRecord(path=m.with_suffix(".jpg"), image_id=m.stem, faces=[
            FaceRecord(box=_points_box(lm), landmarks=lm, pose_deg=np.array([roll, pitch, yaw]), face_id=m.stem)]))
    return records
