"""AFW (Zhu & Ramanan, CVPR 2012): the original `anno.mat` (MATLAB v7.3 / HDF5) read with h5py.

Layout (h5py shape (4, n_images), object references): row 0 image name (uint16 chars), row 1 boxes
(each (2, 2): [x1, x2], [y1, y2]), row 2 poses ([yaw, pitch, roll] degrees), row 3 landmarks
((2, 6): x row, y row; NaN = missing) -- see shared/data/README.md.
Mapped here, once: MATLAB 1-based pixels -> 0-based; AFW yaw (positive = turned toward the image
right) -> this project's AFLW convention (positive = toward the image left) by negating it; the 6
points are stored in the AFLW-21 slots that predict them (metrics.landmarks.AFW6_FROM_AFLW21).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.errors import BenchmarkDataError
from benchmarks.metrics.landmarks import AFW6_FROM_AFLW21
from core.aflw21 import NUM_POINTS
from core.records import FaceRecord, ImageRecord

EXPECTED = "AFW: <dir>/anno.mat (Zhu & Ramanan's original annotation) and <dir>/<name>.jpg images"


def load_afw(afw_dir: str | Path, only_present: bool = True) -> list[ImageRecord]:
    """Read `<afw_dir>/anno.mat`. Returns one ImageRecord per annotated image, in file order;
    with only_present, just the images whose .jpg is in afw_dir. image_id = name without '.jpg'."""
    import h5py

    afw_dir = Path(afw_dir)
    path = afw_dir / "anno.mat"
    if not path.is_file():
        raise BenchmarkDataError(path, f"not found; expected {EXPECTED}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise BenchmarkDataError(path, f"not a MATLAB v7.3 (HDF5) file ({err})") from None
    records = []
    with f:
        if "anno" not in f or f["anno"].shape[0] != 4:
            raise BenchmarkDataError(path, "no (4, n) cell 'anno' (expected AFW's anno.mat)")
        anno = f["anno"]
        for j in range(anno.shape[1]):
            name = "".join(map(chr, f[anno[0, j]][()].ravel()))
            boxes, poses, lms = f[anno[1, j]], f[anno[2, j]], f[anno[3, j]]
            faces = []
            for k in range(boxes.shape[0]):
                b = f[boxes[k, 0]][()]
                yaw, pitch, roll = f[poses[k, 0]][()].ravel()
                p6 = f[lms[k, 0]][()].T - 1.0                       # (6, 2), 0-based
                lm = np.full((NUM_POINTS, 2), np.nan)
                lm[AFW6_FROM_AFLW21] = p6
                labelled = np.zeros(NUM_POINTS, dtype=bool)
                labelled[AFW6_FROM_AFLW21] = True
                faces.append(FaceRecord(
                    box=np.array([b[0, 0], b[1, 0], b[0, 1], b[1, 1]]) - 1.0,
                    landmarks=lm,
                    visibility=(~np.isnan(lm).any(axis=1)).astype(np.float64),
                    landmarks_labelled=labelled,
                    pose_deg=np.array([roll, pitch, -yaw]),          # AFW yaw sign -> AFLW convention
                    face_id=f"{name}#{k}",
                ))
            img = afw_dir / name
            if only_present and not img.is_file():
                continue
            records.append(ImageRecord(path=img, faces=faces, image_id=Path(name).stem))
    return records


def count_afw(afw_dir: str | Path) -> tuple[int, int]:
    """(images, faces) described by anno.mat, whether or not the images are present."""
    recs = load_afw(afw_dir, only_present=False)
    return len(recs), sum(len(r.faces) for r in recs)
