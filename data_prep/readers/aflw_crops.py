"""aflw_crops reader (`annotations.csv`: image, yaw_deg, x1, y1, ..., x21, y21; 120x120 crops).

Invisible points are -1,-1. Only yaw is known (degrees, project convention); roll and pitch are NaN
so the pose mask is set per component. Rows with a visible coordinate outside [-5, 125] are bad
crops and are skipped (counted), in every split.

The face box is the whole crop, [0, 0, 120, 120] (the crops are 2DASL's roi face boxes). This one
reader, and so this one box, serves training (split 'train'), the benchmarks (`python -m benchmarks
aflw`, benchmarks/gt_box_eval.py: split 'test') and the mean shape (pipeline/make_mean_shape.py:
split 'train'). The landmark benchmark's "face size" NME normaliser is therefore sqrt(w * h) of the
crop = 120 px for every face. (Until issue 14 the benchmark parsed the file again, kept the bad crops
(1000 test faces instead of 998) and divided by the box of the visible points, which is smaller
than the crop and shrinks with yaw, so its NME was larger and not the box training used.)
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.aflw21 import NUM_POINTS
from core.config import HyperFaceConfig, load_config
from core.records import FaceRecord, ImageRecord
from core.splits import select_split
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit, numeric_columns, read_csv_checked

log = logging.getLogger(__name__)

CROP_SIZE = 120
VALID_RANGE = (-5.0, 125.0)  # visible coordinates outside this mark a bad crop (data README)


def read_aflw_crops(root: str | Path, split: str = "train", limit: int | None = None,
                    config: HyperFaceConfig | None = None) -> list[ImageRecord]:
    """ImageRecords of `<root>/annotations.csv` in file order. The set ships without a split:
    `split` is 'train', 'test' (SamplingConfig.aflw_crops_test_images held out, core/splits.py) or 'all'."""
    cfg = config or load_config()
    root = Path(root)
    csv_path = root / "annotations.csv"
    if not csv_path.is_file():
        raise DataPrepError(csv_path, "annotations file not found")
    frame = read_csv_checked(csv_path)
    expected = ["image", "yaw_deg"] + [f"{a}{k}" for k in range(1, NUM_POINTS + 1) for a in "xy"]
    if list(frame.columns) != expected:
        raise DataPrepError(csv_path, "unexpected columns (want image,yaw_deg,x1,y1,...,x21,y21)")
    if frame.empty:
        raise DataPrepError(csv_path, "has a header but no rows")
    values = numeric_columns(frame, expected[1:], csv_path)
    pts = values[:, 1:].reshape(-1, NUM_POINTS, 2)
    bad_nan = np.isnan(pts).any(axis=(1, 2))
    if bad_nan.any():
        row = int(np.argmax(bad_nan))
        raise DataPrepError(csv_path, f"NaN landmark coordinate in row {row + 2} ({frame['image'][row]})")
    invisible = (pts == -1).all(axis=2)
    outside = ((pts < VALID_RANGE[0]) | (pts > VALID_RANGE[1])).any(axis=2) & ~invisible
    bad = outside.any(axis=1)
    try:
        in_split = np.array(select_split(list(frame["image"]), split, cfg.sampling.aflw_crops_test_images, "aflw_crops"))
    except ValueError as err:
        raise DataPrepError(csv_path, str(err)) from None
    if bad.any():
        log.info("%s: skipped %d bad crops (visible point outside %s)", csv_path, int(bad.sum()), VALID_RANGE)
    records = []
    for i in np.flatnonzero(~bad & in_split):
        landmarks = pts[i].copy()
        landmarks[invisible[i]] = np.nan
        yaw = float(values[i, 0])
        face = FaceRecord(box=[0, 0, CROP_SIZE, CROP_SIZE], landmarks=landmarks, pose_deg=[np.nan, np.nan, yaw],
                          face_id=Path(frame["image"][i]).stem)
        records.append(ImageRecord(path=root / frame["image"][i], faces=[face], width=CROP_SIZE, height=CROP_SIZE,
                                   image_id=Path(frame["image"][i]).stem))
        if limit and len(records) >= limit:
            break
    return apply_limit(records, limit)
