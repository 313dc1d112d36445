"""FDDB (Jain & Learned-Miller 2010): `FDDB-folds/FDDB-fold-XX.txt` (image lists) and
`FDDB-fold-XX-ellipseList.txt` (per image: path, count, then `ra rb angle cx cy 1` lines; angle in
radians); images at `originalPics/<path>.jpg`. All folds present are read, in fold order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.errors import BenchmarkDataError

EXPECTED = ("FDDB: <dir>/FDDB-folds/FDDB-fold-XX.txt and FDDB-fold-XX-ellipseList.txt, "
            "images at <dir>/originalPics/YYYY/MM/DD/big/img_N.jpg")


@dataclass
class FDDBImage:
    image_id: str          # path relative to originalPics, no extension (FDDB's own key)
    path: Path
    ellipses: np.ndarray   # (M, 5) major_radius, minor_radius, angle (rad), cx, cy
    fold: int


def _parse_ellipses(path: Path) -> dict[str, np.ndarray]:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    out, i = {}, 0
    while i < len(lines):
        key = lines[i]
        try:
            n = int(lines[i + 1])
            rows = [[float(v) for v in lines[i + 2 + k].split()[:5]] for k in range(n)]
        except (IndexError, ValueError):
            raise BenchmarkDataError(path, f"malformed entry for {key!r} near line {i + 1}") from None
        if any(len(r) != 5 for r in rows):
            raise BenchmarkDataError(path, f"{key!r}: an ellipse line has fewer than 5 numbers")
        out[key] = np.array(rows, dtype=np.float64).reshape(-1, 5)
        i += 2 + n
    return out


def load_fddb(fddb_dir: str | Path) -> list[FDDBImage]:
    fddb_dir = Path(fddb_dir)
    folds_dir = fddb_dir / "FDDB-folds"
    lists = sorted(folds_dir.glob("FDDB-fold-[0-9][0-9].txt"))
    if not lists:
        raise BenchmarkDataError(folds_dir, f"no FDDB-fold-XX.txt found; expected {EXPECTED}")
    images = []
    for lst in lists:
        fold = int(lst.stem.split("-")[-1])
        ell_path = lst.with_name(f"{lst.stem}-ellipseList.txt")
        if not ell_path.is_file():
            raise BenchmarkDataError(ell_path, f"not found; expected {EXPECTED}")
        ells = _parse_ellipses(ell_path)
        for key in (ln.strip() for ln in lst.read_text().splitlines()):
            if not key:
                continue
            if key not in ells:
                raise BenchmarkDataError(ell_path, f"no ellipses for {key!r} listed in {lst.name}")
            images.append(FDDBImage(image_id=key, path=fddb_dir / "originalPics" / f"{key}.jpg",
                                    ellipses=ells[key], fold=fold))
    return images
