"""AFLW reader: `aflw.sqlite` in AFLW's own schema plus its image folder (`flickr/` in the release).

Tables used (AFLW release, Koestinger et al. 2011):
  Faces(face_id, file_id)                    FaceImages(file_id, filepath, width, height)
  FaceRect(face_id, x, y, w, h)              FacePose(face_id, roll, pitch, yaw)  -- RADIANS
  FeatureCoords(face_id, feature_id 1..21, x, y)  -- a missing row = point not visible
  FaceMetaData(face_id, sex 'm'/'f', ...)
FacePose is converted to degrees once, here (records hold degrees, core/records.py). AFLW's pose
sign is the project's convention (core/aflw21.py), so only the unit changes.
The paper's split: `SamplingConfig.aflw_test_images` images (seeded by SamplingConfig.seed) are
test, the rest train; the split is written to `split_file` when given.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np

from core.aflw21 import NUM_POINTS
from core.config import HyperFaceConfig, load_config
from core.records import FaceRecord, ImageRecord
from data_prep.errors import DataPrepError
from data_prep.readers.common import apply_limit

log = logging.getLogger(__name__)

REQUIRED_TABLES = ("Faces", "FaceImages", "FaceRect", "FacePose", "FeatureCoords", "FaceMetaData")


def _query(con: sqlite3.Connection, path: Path, table: str, sql: str) -> list[tuple]:
    try:
        return con.execute(sql).fetchall()
    except sqlite3.DatabaseError as err:
        raise DataPrepError(path, f"table {table}: {err}") from None


def _number(value, path: Path, table: str, column: str, face_id) -> float:
    """A table cell as float; DataPrepError naming table, column and face for NULL or non-numbers."""
    if value is None:
        raise DataPrepError(path, f"table {table}: NULL {column} for face {face_id}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataPrepError(path, f"table {table}: {column} {value!r} of face {face_id} is not a number") from None


def split_file_ids(file_ids: list[str], test_count: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, test) file ids: `test_count` drawn with numpy's default_rng(seed) from the sorted ids."""
    ids = sorted(file_ids)
    rng = np.random.default_rng(seed)
    test = set(rng.choice(len(ids), size=min(test_count, len(ids)), replace=False).tolist())
    return [f for i, f in enumerate(ids) if i not in test], [f for i, f in enumerate(ids) if i in test]


def read_aflw(sqlite_path: str | Path, image_dir: str | Path | None = None, split: str = "train",
              limit: int | None = None, config: HyperFaceConfig | None = None,
              split_file: str | Path | None = None) -> list[ImageRecord]:
    """ImageRecords of the AFLW `split` ('train', 'test' or 'all'); image_dir defaults to
    <sqlite dir>/../flickr when that exists, else the sqlite's own folder."""
    cfg = config or load_config()
    sqlite_path = Path(sqlite_path)
    if not sqlite_path.is_file():
        raise DataPrepError(sqlite_path, "AFLW sqlite file not found")
    if image_dir is None:
        flickr = sqlite_path.parent.parent / "flickr"
        image_dir = flickr if flickr.is_dir() else sqlite_path.parent
    image_dir = Path(image_dir)
    con = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in _query(con, sqlite_path, "sqlite_master",
                                       "SELECT name FROM sqlite_master WHERE type='table'")}
        for table in REQUIRED_TABLES:
            if table not in tables:
                raise DataPrepError(sqlite_path, f"missing table {table}")
        images = {str(r[0]): r[1:] for r in _query(con, sqlite_path, "FaceImages",
                                                  "SELECT file_id, filepath, width, height FROM FaceImages")}
        faces = _query(con, sqlite_path, "Faces", "SELECT face_id, file_id FROM Faces ORDER BY face_id")
        rects = {r[0]: r[1:] for r in _query(con, sqlite_path, "FaceRect", "SELECT face_id, x, y, w, h FROM FaceRect")}
        poses = {r[0]: r[1:] for r in _query(con, sqlite_path, "FacePose",
                                             "SELECT face_id, roll, pitch, yaw FROM FacePose")}
        sexes = {r[0]: r[1] for r in _query(con, sqlite_path, "FaceMetaData", "SELECT face_id, sex FROM FaceMetaData")}
        coords = defaultdict(dict)
        for face_id, feature_id, x, y in _query(con, sqlite_path, "FeatureCoords",
                                                "SELECT face_id, feature_id, x, y FROM FeatureCoords"):
            if not 1 <= int(feature_id) <= NUM_POINTS:
                raise DataPrepError(sqlite_path, f"table FeatureCoords: face {face_id} has feature_id {feature_id} "
                                                 f"outside 1..{NUM_POINTS}")
            coords[face_id][int(feature_id) - 1] = tuple(np.nan if v is None else _number(v, sqlite_path,
                                                         "FeatureCoords", c, face_id) for v, c in ((x, "x"), (y, "y")))
    finally:
        con.close()

    by_file: dict[str, list[FaceRecord]] = defaultdict(list)
    for face_id, file_id in faces:
        file_id = str(file_id)
        if file_id not in images:
            raise DataPrepError(sqlite_path, f"table FaceImages: no row for file_id {file_id} of face {face_id}")
        if face_id not in rects:
            raise DataPrepError(sqlite_path, f"table FaceRect: no row for face {face_id}")
        x, y, w, h = (_number(v, sqlite_path, "FaceRect", c, face_id) for v, c in zip(rects[face_id], "xywh"))
        landmarks = np.full((NUM_POINTS, 2), np.nan)
        for k, (px, py) in coords.get(face_id, {}).items():
            landmarks[k] = (px, py)
        if np.isnan(landmarks).any() and not np.array_equal(np.isnan(landmarks[:, 0]), np.isnan(landmarks[:, 1])):
            raise DataPrepError(sqlite_path, f"table FeatureCoords: NaN coordinate for face {face_id}")
        if any(v is None or not np.isfinite(float(v)) for v in (x, y, w, h)):
            raise DataPrepError(sqlite_path, f"table FaceRect: NaN box for face {face_id}")
        pose = poses.get(face_id)
        pose_deg = np.degrees(np.array([np.nan if v is None else _number(v, sqlite_path, "FacePose", c, face_id)
                                        for v, c in zip(pose, ("roll", "pitch", "yaw"))])) if pose else np.full(3, np.nan)
        sex = sexes.get(face_id)
        by_file[file_id].append(FaceRecord(
            box=[x, y, x + w, y + h], landmarks=landmarks, pose_deg=pose_deg,
            gender=sex if sex in ("m", "f") else None, face_id=str(face_id)))

    train_ids, test_ids = split_file_ids(list(by_file), cfg.sampling.aflw_test_images, cfg.sampling.seed)
    if split_file is not None:
        Path(split_file).parent.mkdir(parents=True, exist_ok=True)
        Path(split_file).write_text(json.dumps({"seed": cfg.sampling.seed, "train": train_ids, "test": test_ids}))
    chosen = {"train": train_ids, "test": test_ids, "all": sorted(by_file)}.get(split)
    if chosen is None:
        raise DataPrepError(sqlite_path, f"unknown split {split!r} (train, test or all)")
    if not chosen:
        raise DataPrepError(sqlite_path, f"split {split!r} has no images: the database has {len(by_file)} images "
                                         f"with faces and sampling.aflw_test_images = {cfg.sampling.aflw_test_images} "
                                         "of them are held out for testing; lower it in a --config YAML or use "
                                         "--split all")

    records, missing = [], 0
    for file_id in chosen:
        filepath, width, height = images[file_id]
        path = image_dir / filepath
        if not path.is_file():
            missing += 1
            continue
        records.append(ImageRecord(path=path, faces=by_file[file_id], width=int(width or 0),
                                   height=int(height or 0), image_id=file_id))
    if missing:
        log.warning("%s: %d of %d images of split %s not found under %s; their faces are dropped",
                    sqlite_path, missing, len(chosen), split, image_dir)
    return apply_limit(records, limit)
