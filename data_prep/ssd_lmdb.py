"""Training data of the Fast-HyperFace proposal net (Section 5.6): one SSD AnnotatedDatum LMDB.

Each image of the chosen sets becomes one `caffe_pb2.AnnotatedDatum` (type BBOX): the image as an
encoded JPEG Datum (`encoded=true`; Caffe's AnnotatedData layer decodes it and warps it to 512x512)
and one AnnotationGroup with `group_label` FACE_LABEL whose boxes are the reader's face boxes
normalised to [0, 1] (`xmin = x1 / W`, `ymin = y1 / H`, `xmax = x2 / W`, `ymax = y2 / H`, clipped).
Faces the readers mark "ignore" (data_prep.readers.wider.is_ignore) or with a side under
SamplingConfig.min_face_side carry `difficult: true`.

Layout of `<out>/`:  ssd_lmdb/ (the LMDB), manifest.json, progress.json (resume state).
Keys are data_prep.lmdb_io.sample_key(seed, image index, 0): deterministic, and their hash prefix
shuffles the images for the sequential reader. A rerun skips the images already written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import lmdb
import numpy as np
from tqdm import tqdm

from core.config import HyperFaceConfig
from core.records import ImageRecord
from data_prep import lmdb_io
from data_prep.errors import DataPrepError
from data_prep.mix import MixSet, read_mix
from data_prep.readers.common import check_finite, load_image
from data_prep.readers.wider import is_ignore

log = logging.getLogger(__name__)

SSD_DB = "ssd_lmdb"              # the AnnotatedDatum LMDB inside the output folder
MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
FACE_LABEL = 1                   # SSD class of a face (0 is background, as in the net's MultiBoxLoss)
COMMIT_EVERY = 64                # images per LMDB transaction (and progress.json update)
JPEG_QUALITY = 95                # re-encoding quality for inputs that are not JPEG files already


@dataclass(frozen=True)
class SsdFace:
    """One face box of an AnnotatedDatum: normalised corners and the difficult flag."""
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool


def normalised_faces(record: ImageRecord, width: int, height: int, min_face_side: float) -> tuple[list[SsdFace], int]:
    """Face boxes of `record` as SsdFace in [0, 1] for a `width` x `height` image, and how many boxes
    were dropped because nothing of them lies inside the image."""
    faces, dropped = [], 0
    for face in record.faces:
        x1, y1, x2, y2 = check_finite(face.box, record.path, f"face box of face {face.face_id!r}")
        difficult = is_ignore(face) or min(x2 - x1, y2 - y1) < min_face_side
        box = np.clip([x1 / width, y1 / height, x2 / width, y2 / height], 0.0, 1.0)
        if box[2] <= box[0] or box[3] <= box[1]:
            dropped += 1
            continue
        faces.append(SsdFace(*(float(v) for v in box), difficult=bool(difficult)))
    return faces, dropped


def jpeg_bytes(path: Path, image: np.ndarray) -> bytes:
    """The file's own bytes when it is a JPEG (no second lossy pass), else `image` encoded as JPEG."""
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return data
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataPrepError(path, "could not be re-encoded as JPEG")
    return encoded.tobytes()


def annotated_datum(jpeg: bytes, width: int, height: int, faces: list[SsdFace]) -> bytes:
    """Serialized caffe_pb2.AnnotatedDatum (BBOX) of an encoded image and its normalised faces."""
    pb2 = lmdb_io.caffe_pb2()
    anno = pb2.AnnotatedDatum(type=pb2.AnnotatedDatum.BBOX)
    anno.datum.CopyFrom(pb2.Datum(channels=3, height=height, width=width, data=jpeg, encoded=True))
    group = anno.annotation_group.add(group_label=FACE_LABEL)
    for k, f in enumerate(faces):
        group.annotation.add(instance_id=k, bbox=pb2.NormalizedBBox(
            xmin=f.xmin, ymin=f.ymin, xmax=f.xmax, ymax=f.ymax, difficult=f.difficult))
    return anno.SerializeToString()


def decode_annotated(value: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BGR image, (n, 4) normalised xmin/ymin/xmax/ymax, (n,) difficult) of a serialized AnnotatedDatum."""
    pb2 = lmdb_io.caffe_pb2()
    anno = pb2.AnnotatedDatum()
    anno.ParseFromString(value)
    image = cv2.imdecode(np.frombuffer(anno.datum.data, np.uint8), cv2.IMREAD_COLOR)
    boxes = [(a.bbox.xmin, a.bbox.ymin, a.bbox.xmax, a.bbox.ymax, a.bbox.difficult)
             for g in anno.annotation_group if g.group_label == FACE_LABEL for a in g.annotation]
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    return image, arr[:, :4], arr[:, 4].astype(bool)


def _signature(entries: list[tuple[str, ImageRecord]], cfg: HyperFaceConfig) -> str:
    text = json.dumps([[s, str(r.path), [f.box.tolist() for f in r.faces]] for s, r in entries])
    text += repr((cfg.sampling.seed, cfg.sampling.min_face_side))
    return hashlib.sha1(text.encode()).hexdigest()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build_ssd_lmdb(entries: list[tuple[str, ImageRecord]], out_dir: str | Path, cfg: HyperFaceConfig,
                   sources: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Write `<out_dir>/ssd_lmdb` for `entries` [(set name, record)] (one AnnotatedDatum per image)
    and return the manifest (also written to `<out_dir>/manifest.json`). Resumes a previous run of
    the same inputs; DataPrepError names the file of a missing/corrupt image or a foreign build."""
    out_dir = Path(out_dir)
    if not entries:
        raise DataPrepError(out_dir, "no images to write (empty sets)")
    db_path, progress_path = out_dir / SSD_DB, out_dir / PROGRESS_FILE
    if overwrite:
        shutil.rmtree(db_path, ignore_errors=True)
        for name in (PROGRESS_FILE, MANIFEST_FILE):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    signature = _signature(entries, cfg)
    state = {"signature": signature, "images_done": 0, "counts": {}}
    if progress_path.is_file():
        state = json.loads(progress_path.read_text())
        if state.get("signature") != signature:
            raise DataPrepError(out_dir, "holds an SSD build of other inputs or settings; use another --out or --overwrite")
    elif db_path.exists():
        raise DataPrepError(db_path, "LMDB without progress.json; use another --out or --overwrite")
    start = state["images_done"]
    if start:
        log.info("%s: resuming after %d of %d images", out_dir, start, len(entries))
    counts = {name: Counter(c) for name, c in state["counts"].items()}
    env = lmdb.open(str(db_path), map_size=lmdb_io.MAP_SIZE)
    try:
        txn = env.begin(write=True)
        for index in tqdm(range(start, len(entries)), desc="ssd_lmdb", unit="img", disable=None if progress else True):
            set_name, record = entries[index]
            image = load_image(record.path)
            height, width = image.shape[:2]
            faces, dropped = normalised_faces(record, width, height, cfg.sampling.min_face_side)
            txn.put(lmdb_io.sample_key(cfg.sampling.seed, index, 0),
                    annotated_datum(jpeg_bytes(Path(record.path), image), width, height, faces))
            c = counts.setdefault(set_name, Counter())
            c.update(images=1, faces=len(faces), difficult=sum(f.difficult for f in faces), dropped_boxes=dropped)
            if (index + 1) % COMMIT_EVERY == 0 or index + 1 == len(entries):
                txn.commit()
                state.update(images_done=index + 1, counts={k: dict(v) for k, v in counts.items()})
                _write_json(progress_path, state)
                txn = env.begin(write=True)
        txn.abort()
        num_entries = env.stat()["entries"]
    finally:
        env.close()
    if num_entries != len(entries):
        raise DataPrepError(db_path, f"holds {num_entries} records for {len(entries)} images")
    total = Counter()
    for c in counts.values():
        total.update(c)
    manifest = {
        "format": "caffe AnnotatedDatum (BBOX), encoded JPEG, boxes normalised to [0, 1]",
        "lmdb": SSD_DB,
        "label_map": {"0": "background", str(FACE_LABEL): "face"},
        "num_images": len(entries),
        "num_faces": int(total["faces"]),
        "num_difficult": int(total["difficult"]),
        "num_dropped_boxes": int(total["dropped_boxes"]),
        "counts_per_set": {k: {t: int(v.get(t, 0)) for t in ("images", "faces", "difficult", "dropped_boxes")}
                           for k, v in counts.items()},
        "min_face_side": cfg.sampling.min_face_side,
        "seed": cfg.sampling.seed,
        "sources": sources or {},
        "lmdb_bytes": sum(p.stat().st_size for p in db_path.glob("*.mdb")),
    }
    _write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


def build_ssd_mix(sets: list[MixSet], out_dir: str | Path, cfg: HyperFaceConfig, overwrite: bool = False,
                  progress: bool = True) -> dict:
    """Read every set (its split, capped at its limit of images), interleave the images in a seeded
    order and build the SSD LMDB; returns the manifest."""
    entries, sources = read_mix(sets, out_dir, cfg)
    return build_ssd_lmdb([(name, record) for name, _, record in entries], out_dir, cfg, sources=sources,
                          overwrite=overwrite, progress=progress)



def read_ssd_lmdb(out_dir: str | Path):
    """Yield (key, image, boxes, difficult) of `<out_dir>/ssd_lmdb` in key order."""
    db_path = Path(out_dir) / SSD_DB
    if not (db_path / "data.mdb").is_file():
        raise DataPrepError(db_path, "LMDB not found")
    with lmdb.open(str(db_path), readonly=True, lock=False) as env, env.begin() as txn:
        for key, value in txn.cursor():
            yield (key, *decode_annotated(value))
