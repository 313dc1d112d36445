"""UTKFace reader (`labels.csv`: image, age, gender; aligned 128x128 chips). Gender only.

Face box: the chips are aligned and cropped around the face with a margin, so the face box is the
centred square covering the central 80 % of the chip (12.8 px margin on each side of 128).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.records import FaceRecord, ImageRecord
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit

CHIP_SIZE = 128
FACE_FRACTION = 0.8  # the face box covers the central 80 % of the chip


def read_utkface(root: str | Path, split: str = "train", limit: int | None = None) -> list[ImageRecord]:
    """ImageRecords of `<root>/labels.csv` in file order (no split; `split` unused)."""
    root = Path(root)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise DataPrepError(csv_path, "labels file not found")
    frame = pd.read_csv(csv_path, dtype={"image": str, "gender": str})
    if not {"image", "gender"} <= set(frame.columns):
        raise DataPrepError(csv_path, "missing column image or gender")
    margin = CHIP_SIZE * (1 - FACE_FRACTION) / 2
    box = np.array([margin, margin, CHIP_SIZE - margin, CHIP_SIZE - margin])
    records = []
    for row, (image, gender) in enumerate(zip(frame["image"], frame["gender"])):
        if gender not in ("m", "f"):
            raise DataPrepError(csv_path, f"row {row + 2}: gender {gender!r} is not m or f")
        face = FaceRecord(box=box, gender=gender, face_id=Path(image).name)
        records.append(ImageRecord(path=root / image, faces=[face], width=CHIP_SIZE, height=CHIP_SIZE,
                                   image_id=Path(image).name))
    return apply_limit(records, limit)
