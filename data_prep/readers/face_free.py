"""face_free reader (`images.csv`: image, wnid, class, width, height): photos with no face at all.

Every region of these photos is a non-face, so the training sampler draws background regions and
hard negatives from them. Records carry no faces.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.records import ImageRecord
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit


def read_face_free(root: str | Path, split: str = "train", limit: int | None = None, config=None) -> list[ImageRecord]:
    """ImageRecords (no faces) of `<root>/images.csv` in file order. The set has no test split
    (it is not a benchmark): `split` must be 'train' or 'all'."""
    root = Path(root)
    csv_path = root / "images.csv"
    if split not in ("train", "all"):
        raise DataPrepError(csv_path, f"face_free has no {split!r} split (it is a negatives pool, not a benchmark)")
    if not csv_path.is_file():
        raise DataPrepError(csv_path, "images file not found")
    try:
        frame = pd.read_csv(csv_path, dtype={"image": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise DataPrepError(csv_path, f"not a CSV with columns image,wnid,class,width,height ({err})") from None
    if not {"image", "width", "height"} <= set(frame.columns):
        raise DataPrepError(csv_path, "missing column image, width or height")
    records = [ImageRecord(path=root / image, faces=[], width=int(w), height=int(h), image_id=Path(image).stem)
               for image, w, h in zip(frame["image"], frame["width"], frame["height"])]
    return apply_limit(records, limit)
