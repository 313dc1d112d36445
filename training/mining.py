"""Hard-negative mining (bootstrapping, as R-CNN and the cascade detectors do it).

One round runs the current model over selective-search proposals of the training photos whose
faces are all annotated (WIDER train-fit) or that hold no face (face_free), keeps the proposals
that overlap no face (IoU < detection_negative with every face, ignored tiny faces included) and
score above `threshold`, and appends them to the negative pool (JSON Lines, one region a line:
image, box, score, round). The sampler draws TrainingConfig.mined_fraction of its background from
that pool. A round is resumable: photos already mined in this round are listed in the pool's
manifest and skipped; the manifest counts regions scored and kept per round.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import HyperFaceConfig
from core.geometry import box_iou
from core.records import ImageRecord
from data_prep.readers import read_dataset
from data_prep.readers.common import load_image
from data_prep.regions import selective_search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningSpec:
    pool: Path                 # JSON Lines pool file (its manifest is <pool>.manifest.json)
    round: int                 # round number (1, 2, ...): a resumed round skips its finished photos
    threshold: float = 0.5     # keep non-face proposals scored above this
    proposals_per_photo: int = 200   # proposals scored per photo (a seeded sample of the non-face ones)
    keep_per_photo: int = 20   # at most this many (the highest-scored) kept per photo
    min_side: int = 20
    seed: int = 0


def manifest_path(pool: Path) -> Path:
    return Path(str(pool) + ".manifest.json")


def read_manifest(pool: Path) -> dict:
    path = manifest_path(pool)
    return json.loads(path.read_text()) if path.is_file() else {"rounds": {}}


def _write_json(path: Path, doc: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def background_proposals(record: ImageRecord, image: np.ndarray, cfg: HyperFaceConfig, spec: MiningSpec,
                         rng: np.random.Generator) -> np.ndarray:
    """Up to spec.proposals_per_photo selective-search boxes of `image` that overlap no face of
    `record` (IoU < detection_negative, ignored faces included), in proposal order."""
    boxes = selective_search(image, cfg.selective_search).astype(np.float64)
    boxes = boxes[np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= spec.min_side]
    faces = np.array([f.box for f in record.faces]).reshape(-1, 4)
    if len(boxes) and len(faces):
        boxes = boxes[box_iou(boxes, faces).max(axis=1) < cfg.iou.detection_negative]
    if len(boxes) > spec.proposals_per_photo:
        boxes = boxes[np.sort(rng.choice(len(boxes), size=spec.proposals_per_photo, replace=False))]
    return boxes


def photo_rng(spec: MiningSpec, record: ImageRecord) -> np.random.Generator:
    """The proposal sample of a photo depends on (seed, round, photo path) only, not on run order."""
    import zlib
    return np.random.default_rng([spec.seed, spec.round, zlib.crc32(str(record.path).encode())])


def hard_negatives(scores: np.ndarray, threshold: float, keep: int) -> np.ndarray:
    """Indices of the regions scored above `threshold`, highest first (ties in input order), at most `keep`."""
    scores = np.asarray(scores, dtype=np.float64)
    above = np.flatnonzero(scores > threshold)
    order = above[np.argsort(-scores[above], kind="stable")]
    return order[:keep]


def mine_round(records: list[ImageRecord], score_fn, cfg: HyperFaceConfig, spec: MiningSpec,
               progress: bool = True) -> dict:
    """Mine `records` with `score_fn(image, boxes) -> face probabilities`; returns this round's counts."""
    from tqdm import tqdm
    pool = Path(spec.pool)
    pool.parent.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(pool)
    state = manifest["rounds"].setdefault(str(spec.round), {"threshold": spec.threshold, "photos": [],
                                                            "regions_scored": 0, "kept": 0})
    done = set(state["photos"])
    todo = [r for r in records if str(r.path) not in done]
    with open(pool, "a") as out:
        for record in tqdm(todo, desc=f"mining round {spec.round}", disable=not progress, unit="photo"):
            rng = photo_rng(spec, record)
            image = load_image(record.path)
            boxes = background_proposals(record, image, cfg, spec, rng)
            kept = 0
            if len(boxes):
                scores = np.asarray(score_fn(image, boxes), dtype=np.float64)
                for k in hard_negatives(scores, spec.threshold, spec.keep_per_photo):
                    out.write(json.dumps({"image": str(record.path), "box": [round(float(v), 2) for v in boxes[k]],
                                          "score": round(float(scores[k]), 4), "round": spec.round}) + "\n")
                    kept += 1
            out.flush()
            state["photos"].append(str(record.path))
            state["regions_scored"] += int(len(boxes))
            state["kept"] += kept
            _write_json(manifest_path(pool), manifest)
    _write_json(manifest_path(pool), manifest)
    log.info("mining round %d: %d photos, %d regions scored, %d hard negatives kept (pool %s)", spec.round,
             len(state["photos"]), state["regions_scored"], state["kept"], pool)
    return {k: (len(v) if k == "photos" else v) for k, v in state.items()}


def mining_records(data_root: Path, cfg: HyperFaceConfig, limit_per_set: int | None = None) -> list[ImageRecord]:
    """The training photos whose faces are all annotated: WIDER train-fit and face_free."""
    root = Path(data_root)
    wider = read_dataset("wider", root / "wider_train", split="train-fit", config=cfg)
    free = read_dataset("face_free", root / "face_free")
    if limit_per_set:
        rng = np.random.default_rng(cfg.training.seed)
        wider = [wider[i] for i in np.sort(rng.choice(len(wider), size=min(limit_per_set, len(wider)), replace=False))]
        free = [free[i] for i in np.sort(rng.choice(len(free), size=min(limit_per_set, len(free)), replace=False))]
    return wider + free


def model_scorer(model_dir: Path, cfg: HyperFaceConfig, backend: str = "onnxruntime"):
    """score_fn of a model directory through the pipeline's own crop and backend."""
    from pipeline.detector import HyperFace
    detector = HyperFace(model_dir, backend=backend, config=cfg)
    return lambda image, boxes: detector.evaluate(image, boxes).scores
