"""300-W / iBUG 68-point sets: a folder of images with same-named `.pts` files (the iBUG challenge
subset, or any 300-W folder such as HELEN's testset). `.pts` coordinates are 1-based (MATLAB style);
mapped to 0-based by data_prep's reader. The records are data_prep.readers.pts300w's, as training reads
them: the face box is the box of the 68 points, `landmarks` the 19 AFLW-21 points the 68 give (ears
unlabelled), `landmarks68` the points themselves.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.errors import BenchmarkDataError
from core.records import ImageRecord
from data_prep.readers.pts300w import read_300w

EXPECTED = "IBUG / 300-W: <dir>/*.jpg (or .png) each with a <name>.pts (version 1, n_points: 68)"


def load_ibug(ibug_dir: str | Path) -> list[ImageRecord]:
    ibug_dir = Path(ibug_dir)
    pts_files = sorted(ibug_dir.glob("*.pts"))
    if not pts_files:
        raise BenchmarkDataError(ibug_dir, f"no .pts files; expected {EXPECTED}")
    for p in pts_files:
        if not any(p.with_suffix(ext).is_file() for ext in (".jpg", ".png", ".jpeg")):
            raise BenchmarkDataError(p, "no image next to it (.jpg/.png)")
    return read_300w(ibug_dir)
