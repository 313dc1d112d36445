"""Records -> region samples -> the LMDB pair + manifest.json, resumable, with tqdm progress.

Resume: after each image's samples are committed to both LMDBs, `progress.json` records how many
images are done (written atomically). A second run with the same inputs skips those images,
deletes any samples of later images an interrupted run left behind, and reuses cached proposals
(`<out>/proposal_cache/`). Keys are deterministic, so nothing is ever duplicated.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.config import HyperFaceConfig
from core.labels import IGNORE_LABEL, LABEL_LAYOUT_VERSION, LABEL_LENGTH, OFFSETS
from core.records import ImageRecord
from data_prep import lmdb_io
from data_prep.errors import DataPrepError
from data_prep.readers.common import check_finite, load_image
from data_prep.regions import cached_proposals, image_samples

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
MANIFEST_FILE = "manifest.json"
CACHE_DIR = "proposal_cache"
TASKS = ("detection_positive", "detection_negative", "landmarks_only", "landmarks", "visibility", "pose",
         "gender", "bbox", "landmarks68")


def task_counts(label: np.ndarray) -> Counter:
    """Which tasks one label vector trains (the names of TASKS)."""
    det = label[OFFSETS["detection"]][0]
    counts = Counter()
    counts["detection_positive"] += int(det == 1)
    counts["detection_negative"] += int(det == 0)
    counts["landmarks_only"] += int(det == IGNORE_LABEL)
    counts["landmarks"] += int(label[OFFSETS["landmarks_mask"]].any())
    counts["visibility"] += int(label[OFFSETS["visibility_mask"]].any())
    counts["pose"] += int(label[OFFSETS["pose_mask"]].any())
    counts["gender"] += int(label[OFFSETS["gender"]][0] != IGNORE_LABEL)
    counts["bbox"] += int(label[OFFSETS["bbox_mask"]].any())
    counts["landmarks68"] += int(label[OFFSETS["landmarks68_mask"]].any())
    return counts


_WORKER: dict = {}


def _init_worker(cfg: HyperFaceConfig, cache_dir: Path) -> None:
    cv2.setNumThreads(1)
    _WORKER.update(cfg=cfg, cache_dir=cache_dir)


def _process(task: tuple[int, str, ImageRecord, bool]):
    """Samples of one image, encoded: (index, set name, [(key, image bytes, label bytes)], Counter)."""
    index, set_name, record, is_chip = task
    cfg: HyperFaceConfig = _WORKER["cfg"]
    image = load_image(record.path)
    for face in record.faces:
        check_finite(face.box, record.path, f"face box of face {face.face_id!r}")
    proposals = None if is_chip else cached_proposals(image, record.path, _WORKER["cache_dir"], cfg.selective_search)
    rng = np.random.default_rng([cfg.sampling.seed, index])
    samples = image_samples(record, image, proposals, cfg, rng)
    counts = Counter()
    items = []
    for k, sample in enumerate(samples):
        items.append((lmdb_io.sample_key(cfg.sampling.seed, index, k), lmdb_io.image_datum(sample.crop),
                      lmdb_io.label_datum(sample.label)))
        counts.update(task_counts(sample.label))
    return index, set_name, items, counts


def _signature(entries, cfg: HyperFaceConfig) -> str:
    text = json.dumps([[s, str(r.path), len(r.faces), c] for s, r, c in entries]) + repr(dataclasses.asdict(cfg))
    return hashlib.sha1(text.encode()).hexdigest()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def build_lmdb(entries: list[tuple[str, ImageRecord, bool]], out_dir: str | Path, cfg: HyperFaceConfig,
               sources: dict | None = None, workers: int = 2, overwrite: bool = False) -> dict:
    """Write the LMDB pair for `entries` [(set name, record, is_chip)] into `out_dir`; returns the
    manifest (also written to out_dir/manifest.json). is_chip: a face chip (jittered boxes only)."""
    out_dir = Path(out_dir)
    if not entries:
        raise DataPrepError(out_dir, "no images to build from: the build would be empty")
    if overwrite and out_dir.exists():
        for name in (lmdb_io.IMAGE_DB, lmdb_io.LABEL_DB, PROGRESS_FILE, MANIFEST_FILE):
            target = out_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    signature = _signature(entries, cfg)
    progress_path = out_dir / PROGRESS_FILE
    progress = {"signature": signature, "images_done": 0, "samples": 0, "counts": {}}
    if progress_path.is_file():
        previous = json.loads(progress_path.read_text())
        if previous.get("signature") != signature:
            raise DataPrepError(out_dir, "holds a build of other inputs or settings; use another --out or --overwrite")
        progress = previous
    elif (out_dir / lmdb_io.IMAGE_DB).exists():
        raise DataPrepError(out_dir, "holds LMDBs without progress.json; use another --out or --overwrite")
    start = progress["images_done"]
    pair = lmdb_io.LmdbPair(out_dir)
    try:
        stale = pair.delete_image_index_from(start)
        if start or stale:
            log.info("%s: resuming after %d of %d images (%d stale samples removed)", out_dir, start, len(entries), stale)
        counts = {name: Counter(c) for name, c in progress["counts"].items()}
        tasks = [(i, s, r, c) for i, (s, r, c) in enumerate(entries) if i >= start]
        cache_dir = out_dir / CACHE_DIR
        if workers > 1 and len(tasks) > 1:
            # forkserver, not fork: a fork of a process whose OpenMP/OpenCV/BLAS thread pools are running
            # (pycaffe, the pipeline, an earlier test) can leave the workers deadlocked on a copied lock.
            pool = multiprocessing.get_context("forkserver").Pool(workers, _init_worker, (cfg, cache_dir))
            results = pool.imap(_process, tasks)
        else:
            pool = None
            _init_worker(cfg, cache_dir)
            results = map(_process, tasks)
        try:
            for index, set_name, items, image_counts in tqdm(results, total=len(tasks), initial=0, desc="data_prep",
                                                             unit="img", disable=None):
                if items:
                    pair.put_many(items)
                counts.setdefault(set_name, Counter()).update(image_counts)
                progress.update(images_done=index + 1, samples=progress["samples"] + len(items),
                                counts={k: dict(v) for k, v in counts.items()})
                _write_json(progress_path, progress)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        image_keys, label_keys = pair.keys()
        if image_keys != label_keys:
            raise DataPrepError(out_dir, "image and label LMDBs hold different keys")
        if not image_keys:
            raise DataPrepError(out_dir, f"the build holds 0 samples: none of the {len(entries)} images gave a "
                                         "region sample (no usable face or proposal)")
        size = pair.size_bytes()
    finally:
        pair.close()
    total = Counter()
    for c in counts.values():
        total.update(c)
    manifest = {
        "label_layout_version": LABEL_LAYOUT_VERSION,
        "label_length": LABEL_LENGTH,
        "input_size": cfg.input.size,
        "mean_bgr": list(cfg.input.mean_bgr),
        "image_lmdb": lmdb_io.IMAGE_DB,
        "label_lmdb": lmdb_io.LABEL_DB,
        "num_samples": len(image_keys),
        "num_images": len(entries),
        "counts_per_set": {k: {t: int(v.get(t, 0)) for t in TASKS} for k, v in counts.items()},
        "counts": {t: int(total.get(t, 0)) for t in TASKS},
        "negatives_per_positive": (total["detection_negative"] / total["detection_positive"]
                                   if total["detection_positive"] else 0.0),
        "negatives_per_positive_target": cfg.sampling.negatives_per_positive,
        "sources": sources or {},
        "sampling": dataclasses.asdict(cfg.sampling),
        "iou": dataclasses.asdict(cfg.iou),
        "lmdb_bytes": size,
    }
    _write_json(out_dir / MANIFEST_FILE, manifest)
    return manifest


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        raise DataPrepError(path, "manifest not found")
    return json.loads(path.read_text())
