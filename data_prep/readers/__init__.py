"""Dataset readers: each returns list[core.records.ImageRecord] (0-based pixels, degrees)."""
from data_prep.readers.aflw import read_aflw
from data_prep.readers.aflw2000 import read_aflw2000
from data_prep.readers.aflw_crops import read_aflw_crops
from data_prep.readers.face_free import read_face_free
from data_prep.readers.pts300w import read_300w
from data_prep.readers.utkface import read_utkface
from data_prep.readers.wider import read_wider

# Datasets whose images are face chips: regions are jittered face boxes only (no selective search).
CROP_DATASETS = frozenset({"aflw_crops", "utkface"})


def read_dataset(name: str, root, split: str = "train", limit: int | None = None, config=None, skipped=None):
    """Records of dataset `name` (aflw, 300w, aflw2000, aflw_crops, wider, utkface, face_free) under `root`.
    For aflw, `root` is the aflw.sqlite file or the folder holding it. skipped: a list that collects
    (path, reason) of files left out instead of failing (aflw2000's 23-point files; benchmarks)."""
    from pathlib import Path
    from data_prep.errors import DataPrepError
    if name == "aflw":
        root = Path(root)
        sqlite_path = root / "aflw.sqlite" if root.is_dir() else root
        return read_aflw(sqlite_path, split=split, limit=limit, config=config)
    if name in ("300w", "helen"):
        return read_300w(root, split=split, limit=limit)
    if name == "aflw2000":
        return read_aflw2000(root, split=split, limit=limit, skipped=skipped)
    if name == "aflw_crops":
        return read_aflw_crops(root, split=split, limit=limit, config=config)
    if name == "wider":
        return read_wider(root, split=split, limit=limit, config=config)
    if name == "utkface":
        return read_utkface(root, split=split, limit=limit, config=config)
    if name == "face_free":
        return read_face_free(root, split=split, limit=limit)
    raise DataPrepError(root, f"unknown dataset {name!r}")


__all__ = ["read_aflw", "read_aflw2000", "read_aflw_crops", "read_face_free", "read_300w", "read_utkface", "read_wider",
           "read_dataset", "CROP_DATASETS"]
