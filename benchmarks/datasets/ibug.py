"""300-W / iBUG 68-point sets: a folder of images with same-named `.pts` files (the iBUG challenge
subset, or any 300-W folder such as HELEN's testset). `.pts` coordinates are 1-based (MATLAB style);
mapped to 0-based by data_prep's reader. The face box is the box of the 68 points (core.geometry.points_box),
as data_prep.readers.pts300w gives it for training.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.errors import BenchmarkDataError
from core.geometry import points_box
from core.records import FaceRecord, ImageRecord
from data_prep.readers.pts300w import read_pts

EXPECTED = "IBUG / 300-W: <dir>/*.jpg (or .png) each with a <name>.pts (version 1, n_points: 68)"


def load_ibug(ibug_dir: str | Path) -> list[ImageRecord]:
    ibug_dir = Path(ibug_dir)
    pts_files = sorted(ibug_dir.glob("*.pts"))
    if not pts_files:
        raise BenchmarkDataError(ibug_dir, f"no .pts files; expected {EXPECTED}")
    records = []
    for p in pts_files:
        img = next((p.with_suffix(ext) for ext in (".jpg", ".png", ".jpeg") if p.with_suffix(ext).is_file()), None)
        if img is None:
            raise BenchmarkDataError(p, "no image next to it (.jpg/.png)")
        pts = read_pts(p)                          # the same .pts reader (0-based) as data_prep
        records.append(ImageRecord(path=img, image_id=p.stem,
                                   faces=[FaceRecord(box=points_box(pts), landmarks68=pts, face_id=p.stem)]))
    return records
