"""UTKFace reader (`labels.csv`: image, age, gender; aligned 128x128 chips). Gender only.

Face box: the chips are aligned and cropped around the face with a margin, so the face box is the
centred square covering the central 80 % of the chip (12.8 px margin on each side of 128).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import HyperFaceConfig, load_config
from core.records import FaceRecord, ImageRecord
from core.splits import select_split
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit, read_csv_checked

CHIP_SIZE = 128
FACE_FRACTION = 0.8  # the face box covers the central 80 % of the chip


def read_utkface(root: str | Path, split: str = "train", limit: int | None = None,
                 config: HyperFaceConfig | None = None) -> list[ImageRecord]:
    """ImageRecords of `<root>/labels.csv` in file order. The set ships without a split: `split` is
    'train', 'test' (SamplingConfig.utkface_test_images held out, core/splits.py) or 'all'."""
    cfg = config or load_config()
    root = Path(root)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise DataPrepError(csv_path, "labels file not found")
    frame = read_csv_checked(csv_path, dtype={"image": str, "gender": str})
    if not {"image", "gender"} <= set(frame.columns):
        raise DataPrepError(csv_path, "missing column image or gender")
    margin = CHIP_SIZE * (1 - FACE_FRACTION) / 2
    box = np.array([margin, margin, CHIP_SIZE - margin, CHIP_SIZE - margin])
    try:
        in_split = select_split(list(frame["image"]), split, cfg.sampling.utkface_test_images, "utkface")
    except ValueError as err:
        raise DataPrepError(csv_path, str(err)) from None
    records = []
    for row, (image, gender, keep) in enumerate(zip(frame["image"], frame["gender"], in_split)):
        if gender not in ("m", "f"):
            raise DataPrepError(csv_path, f"row {row + 2}: gender {gender!r} is not m or f")
        if not keep:
            continue
        face = FaceRecord(box=box, gender=gender, face_id=Path(image).name)
        records.append(ImageRecord(path=root / image, faces=[face], width=CHIP_SIZE, height=CHIP_SIZE,
                                   image_id=Path(image).name))
    return apply_limit(records, limit)
