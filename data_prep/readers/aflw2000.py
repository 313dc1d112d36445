"""AFLW2000-3D reader (`imageNNNNN.jpg` + `imageNNNNN.mat`, scipy.io.loadmat).

`pt2d` (2, 21) holds the AFLW-21 points (image sides, AFLW order); invisible points are stored as
x = -1, y = 452 (3DDFA's y-flip of the -1 marker) or with a negative coordinate. `Pose_Para`
[pitch, yaw, roll, ...] is in radians with the project's sign convention; converted to degrees.
The face box is the tight box of the visible points (AFLW2000-3D has no face rectangle).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.io

from core.aflw21 import NUM_POINTS
from core.geometry import points_box
from core.records import FaceRecord, ImageRecord
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit, check_finite, image_size

log = logging.getLogger(__name__)


def read_aflw2000(root: str | Path, split: str = "test", limit: int | None = None,
                  skipped: list | None = None) -> list[ImageRecord]:
    """ImageRecords of every `.mat` in `root` (AFLW2000-3D is a test set; `split` is not used).

    A file whose pt2d is not (2, 21) (3 of the 2,000 AFLW2000-3D files hold 23 points) is an error
    naming it, unless `skipped` is a list: then it is left out, (path, reason) is appended to
    `skipped` and a warning logged (the benchmarks count them in their reports)."""
    root = Path(root)
    mats = sorted(root.glob("*.mat"))
    if not mats:
        raise DataPrepError(root, "no .mat files found")
    records = []
    for mat_path in apply_limit(mats, limit):
        try:
            mat = scipy.io.loadmat(str(mat_path))
        except (ValueError, OSError, TypeError) as err:
            raise DataPrepError(mat_path, f"not a readable MATLAB file ({err})") from None
        for key in ("pt2d", "Pose_Para"):
            if key not in mat:
                raise DataPrepError(mat_path, f"missing variable {key}")
        pt2d = check_finite(mat["pt2d"], mat_path, "pt2d coordinates")
        if pt2d.shape != (2, NUM_POINTS):
            reason = f"pt2d has shape {pt2d.shape}, expected (2, {NUM_POINTS})"
            if skipped is None:
                raise DataPrepError(mat_path, reason)
            log.warning("%s: %s; skipped", mat_path, reason)
            skipped.append((mat_path, reason))
            continue
        points = pt2d.T.copy()
        invisible = (points < 0).any(axis=1) | ((points[:, 0] == -1) & (points[:, 1] == 452))
        points[invisible] = np.nan
        if invisible.all():
            raise DataPrepError(mat_path, "no visible landmark")
        pitch, yaw, roll = check_finite(mat["Pose_Para"], mat_path, "Pose_Para").ravel()[:3]
        box = points_box(points)            # of the visible points (the invisible ones are NaN)
        image_path = mat_path.with_suffix(".jpg")
        width, height = image_size(image_path)
        face = FaceRecord(box=box, landmarks=points, pose_deg=np.degrees([roll, pitch, yaw]), face_id=mat_path.stem)
        records.append(ImageRecord(path=image_path, faces=[face], width=width, height=height, image_id=mat_path.stem))
    return records
