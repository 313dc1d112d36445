"""300-W reader (`.pts` files, 68 iBUG points, MATLAB-style 1-based -> 0-based by subtracting 1).

Each image `<name>.jpg` has `<name>.pts` next to it, one face. The 68 points map to 19 of the AFLW-21
points (data_prep.ibug68.AFLW_FROM_IBUG); the ear lobes (13, 17) are unlabelled. 300-W annotates
occluded points too, so the 19 are all visible. Pose comes from the points (cv2.solvePnP, generic
3-D model, data_prep.ibug68.pose_from_68); gender from an optional CSV `image,gender,...` with
`image` relative to the dataset root (empty gender = unknown). The face box is the tight box of the
68 points.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from core.geometry import points_box
from core.records import FaceRecord, ImageRecord
from data_prep.errors import DataPrepError
from data_prep.ibug68 import NUM_POINTS_68, aflw21_from_68, pose_from_68
from data_prep.readers.common import apply_limit, check_finite, image_size


def read_pts(path: str | Path) -> np.ndarray:
    """(68, 2) 0-based points of a 300-W `.pts` file."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DataPrepError(path, f"cannot read .pts file ({err.strerror})") from None
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{") + 1
        end = next(i for i, line in enumerate(lines) if line.strip() == "}")
        points = np.array([[float(v) for v in line.split()] for line in lines[start:end]], dtype=np.float64)
    except (StopIteration, ValueError):
        raise DataPrepError(path, "not a 300-W .pts file (expected '{', 68 'x y' lines, '}')") from None
    if points.shape != (NUM_POINTS_68, 2):
        raise DataPrepError(path, f"expected {NUM_POINTS_68} points, found {len(points)}")
    return check_finite(points, path, "landmark coordinates") - 1.0


def read_gender_csv(path: str | Path | None) -> dict[str, str | None]:
    """{image path relative to the dataset root: 'm' / 'f' / None} from a gender CSV."""
    if path is None or not Path(path).is_file():
        return {}
    with open(path, newline="") as f:
        return {row["image"]: (row["gender"] or None) for row in csv.DictReader(f)}


def read_300w(root: str | Path, split: str = "train", limit: int | None = None,
              gender_csv: str | Path | None = None) -> list[ImageRecord]:
    """ImageRecords of `<root>/<split>set/*.pts` (HELEN layout), or of `root` itself when it holds
    the .pts files. gender_csv defaults to `<root>/gender.csv` when present."""
    root = Path(root)
    folder = root / f"{split}set" if (root / f"{split}set").is_dir() else root
    pts_files = sorted(folder.glob("*.pts"))
    if not pts_files:
        raise DataPrepError(folder, "no .pts files found")
    genders = read_gender_csv(gender_csv if gender_csv is not None else root / "gender.csv")
    records = []
    for pts_path in apply_limit(pts_files, limit):
        image_path = next((pts_path.with_suffix(ext) for ext in (".jpg", ".png", ".jpeg")
                           if pts_path.with_suffix(ext).is_file()), pts_path.with_suffix(".jpg"))
        points68 = read_pts(pts_path)
        width, height = image_size(image_path)
        landmarks, labelled = aflw21_from_68(points68)
        visibility = labelled.astype(np.float64)
        box = points_box(points68)
        pose = pose_from_68(points68, width or int(box[2] * 2), height or int(box[3] * 2))
        rel = image_path.relative_to(root).as_posix() if image_path.is_relative_to(root) else image_path.name
        face = FaceRecord(box=box, landmarks=landmarks, visibility=visibility, landmarks_labelled=labelled,
                          pose_deg=pose, gender=genders.get(rel), landmarks68=points68, face_id=pts_path.stem)
        records.append(ImageRecord(path=image_path, faces=[face], width=width, height=height, image_id=pts_path.stem))
    return records
