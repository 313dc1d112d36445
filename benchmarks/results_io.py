"""Raw detection results on disk, in formats other tools read:
  * `json/<image key>.json`: one file per image, {"image_id", "image", "faces": [Face.to_dict() ...]}
    (plus "landmarks68" per face when the model gives it) -- the resumable unit of a run;
  * `face-eval.txt`: one line per box `imgname score x1 y1 x2 y2` (face-eval's detection format);
  * `fddb-dets.txt`: FDDB's rectangle format (image path, count, `left top width height score`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from benchmarks.errors import BenchmarkDataError
from core.face import Face

JSON_DIR = "json"
FACE_EVAL_TXT = "face-eval.txt"
FDDB_TXT = "fddb-dets.txt"


def json_path(results_dir: str | Path, image_id: str) -> Path:
    """Per-image JSON path; '/' in ids (FDDB paths) becomes '__'."""
    return Path(results_dir) / JSON_DIR / (image_id.replace("/", "__") + ".json")


def write_image_result(results_dir: str | Path, image_id: str, image_path: str | Path, faces: list[Face]) -> Path:
    """Write one image's faces atomically (tmp + rename, so an interrupted run resumes cleanly)."""
    path = json_path(results_dir, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"image_id": image_id, "image": str(image_path),
                               "faces": [f.to_dict() for f in faces]}))
    tmp.replace(path)
    return path


def read_results(results_dir: str | Path) -> dict[str, list[Face]]:
    """image_id -> faces, from every JSON under results_dir/json."""
    d = Path(results_dir) / JSON_DIR
    if not d.is_dir():
        raise BenchmarkDataError(d, "no results folder (run detection first: python -m benchmarks <dataset> ...)")
    out = {}
    for p in sorted(d.glob("*.json")):
        try:
            data = json.loads(p.read_text())
            out[data["image_id"]] = [Face.from_dict(f) for f in data["faces"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise BenchmarkDataError(p, f"not a result JSON ({err.__class__.__name__}: {err})") from None
    return out


def boxes_scores(faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes and (N,) scores of a face list."""
    if not faces:
        return np.zeros((0, 4)), np.zeros(0)
    return np.stack([np.asarray(f.box, dtype=np.float64) for f in faces]), np.array([f.score for f in faces], dtype=np.float64)


def write_face_eval(path: str | Path, results: dict[str, list[Face]]) -> Path:
    path = Path(path)
    lines = []
    for image_id, faces in results.items():
        for f in faces:
            x1, y1, x2, y2 = (float(v) for v in f.box)
            lines.append(f"{image_id} {f.score:.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}\n")
    path.write_text("".join(lines))
    return path


def read_face_eval(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """image name -> (boxes (N, 4), scores (N,)) from a face-eval detection file."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkDataError(path, "not found (face-eval detections: 'imgname score x1 y1 x2 y2' lines)")
    rows: dict[str, list] = {}
    for line_no, ln in enumerate(path.read_text().splitlines(), start=1):
        f = ln.split()
        if not f:
            continue
        if len(f) != 6:
            raise BenchmarkDataError(path, f"line {line_no}: expected 'imgname score x1 y1 x2 y2'")
        try:
            rows.setdefault(f[0], []).append([float(v) for v in f[1:]])
        except ValueError:
            raise BenchmarkDataError(path, f"line {line_no}: non-numeric value") from None
    return {k: (np.array(v)[:, 1:], np.array(v)[:, 0]) for k, v in rows.items()}


def write_fddb(path: str | Path, results: dict[str, list[Face]], order: Iterable[str]) -> Path:
    """FDDB rectangle format, images in `order` (the fold lists' order; missing ones get 0 faces)."""
    path = Path(path)
    out = []
    for image_id in order:
        faces = results.get(image_id, [])
        out.append(f"{image_id}\n{len(faces)}\n")
        for f in faces:
            x1, y1, x2, y2 = (float(v) for v in f.box)
            out.append(f"{x1:.2f} {y1:.2f} {x2 - x1:.2f} {y2 - y1:.2f} {f.score:.6f}\n")
    path.write_text("".join(out))
    return path
