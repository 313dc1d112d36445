"""PASCAL faces (Yan et al. 2014) in the face-eval toolbox's annotation format: a MATLAB v5 .mat
holding struct array `Annotations` with fields `imgname` (file name) and `objects` ((K, 4) or
(K, 6) rows x1, y1, x2, y2[, _, ignore]; the toolbox reads column 6 as an ignore flag), e.g. its
`Annotations_Face_PASCALLayout_large_fixed.mat`. Boxes are MATLAB 1-based; mapped to 0-based here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.errors import BenchmarkDataError
from core.records import FaceRecord, ImageRecord

EXPECTED = ("PASCAL faces: <dir>/Annotations_Face_PASCALLayout_large_fixed.mat (face-eval toolbox) "
            "and <dir>/images/<imgname> (or <dir>/<imgname>)")
DEFAULT_ANNOTATION = "Annotations_Face_PASCALLayout_large_fixed.mat"


def load_pascal_faces(pascal_dir: str | Path, annotation: str | Path | None = None) -> tuple[list[ImageRecord], dict[str, np.ndarray]]:
    """Returns (records, extra ignore flags per image_id). image_id = imgname without extension."""
    from scipy.io import loadmat

    pascal_dir = Path(pascal_dir)
    path = Path(annotation) if annotation else pascal_dir / DEFAULT_ANNOTATION
    if not path.is_file():
        raise BenchmarkDataError(path, f"not found; expected {EXPECTED}")
    try:
        ann = loadmat(str(path))["Annotations"].ravel()
    except (KeyError, ValueError, NotImplementedError) as err:  # scipy: NotImplementedError = MATLAB v7.3 file
        raise BenchmarkDataError(path, f"no struct array 'Annotations' ({err.__class__.__name__}: {err})") from None
    if ann.dtype.names is None or not {"imgname", "objects"} <= set(ann.dtype.names):
        raise BenchmarkDataError(path, "'Annotations' lacks the fields imgname and objects")
    records, ignores = [], {}
    for a in ann:
        name = str(np.asarray(a["imgname"]).ravel()[0])
        objs = np.asarray(a["objects"], dtype=np.float64)
        objs = objs.reshape(-1, objs.shape[-1]) if objs.size else np.zeros((0, 4))
        if objs.shape[1] < 4:
            raise BenchmarkDataError(path, f"{name}: objects has {objs.shape[1]} columns, need >= 4")
        image_id = Path(name).stem
        img = pascal_dir / "images" / Path(name).name
        if not img.is_file():
            img = pascal_dir / Path(name).name
        records.append(ImageRecord(path=img, image_id=image_id, faces=[
            FaceRecord(box=o[:4] - 1.0, face_id=f"{image_id}#{k}") for k, o in enumerate(objs)]))
        ignores[image_id] = objs[:, 5] != 0 if objs.shape[1] >= 6 else np.zeros(len(objs), dtype=bool)
    return records, ignores
