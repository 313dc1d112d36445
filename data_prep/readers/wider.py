"""WIDER FACE reader (`wider_face_split/wider_face_<split>_bbx_gt.txt` + `WIDER_<split>/images/`).

Boxes only. Faces flagged invalid=1 are skipped. Faces smaller than SamplingConfig.min_face_side
are kept as "ignore" regions (FaceRecord.ignore = True) so they never become negatives nor
positives; data_prep.regions and the training sampler treat them that way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import HyperFaceConfig, load_config
from core.records import FaceRecord, ImageRecord
from core.splits import held_out_names
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit

def is_ignore(face: FaceRecord) -> bool:
    """True for a face kept only so that no negative overlaps it (FaceRecord.ignore)."""
    return face.ignore


def read_wider(root: str | Path, split: str = "train", limit: int | None = None,
               config: HyperFaceConfig | None = None) -> list[ImageRecord]:
    """ImageRecords of the WIDER FACE `split` under `root`: 'train' or 'val' (the official lists), or
    'train-fit' / 'train-heldout': the training list without / with only the
    SamplingConfig.wider_train_test_images photos held out by a salted name hash (core/splits.py),
    which training validates on and benchmarks report on."""
    cfg = config or load_config()
    root = Path(root)
    part = split if split in ("train-fit", "train-heldout") else None
    split = "train" if part else split
    gt_path = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    if not gt_path.is_file():
        raise DataPrepError(gt_path, "WIDER FACE annotation file not found")
    lines = gt_path.read_text().split("\n")
    records: list[ImageRecord] = []
    i = 0
    while i < len(lines) and lines[i].strip():
        name = lines[i].strip()
        try:
            count = int(lines[i + 1])
            rows = [lines[i + 2 + k].split() for k in range(max(count, 1))]
            values = np.array([[float(v) for v in row[:10]] for row in rows], dtype=np.float64)
        except (IndexError, ValueError):
            raise DataPrepError(gt_path, f"malformed entry for {name} at line {i + 1}") from None
        if not np.all(np.isfinite(values)):
            raise DataPrepError(gt_path, f"NaN box for {name} at line {i + 1}")
        i += 2 + max(count, 1)
        faces = []
        for k, (x, y, w, h, _blur, _expr, _illum, invalid, _occl, _pose) in enumerate(values[:count]):
            if invalid == 1 or w <= 0 or h <= 0:
                continue
            tiny = min(w, h) < cfg.sampling.min_face_side
            faces.append(FaceRecord(box=[x, y, x + w, y + h], face_id=f"{name}#{k}", ignore=bool(tiny)))
        records.append(ImageRecord(path=root / f"WIDER_{split}" / "images" / name, faces=faces, image_id=name))
        if limit and len(records) >= limit and part is None:
            break
    if part is not None:
        held_out = held_out_names([r.image_id for r in records], cfg.sampling.wider_train_test_images, "wider_train")
        records = [r for r in records if (r.image_id in held_out) == (part == "train-heldout")]
    return apply_limit(records, limit)
