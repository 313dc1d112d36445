"""Per-batch region sampling for HyperFace training (Section 3.2 labels, R-CNN minibatch practice).

Instead of a fixed LMDB of baked crops, every batch is drawn afresh from pools of photos and faces:

  faces (TrainingConfig.fg_fraction of the batch)  a jittered box with IoU > detection_positive
      with a face: detection 1 and every task the face is labelled for (core labels, data_prep.regions)
  partial (partial_fraction)   0.35 < IoU <= 0.5 with a face that has landmarks: landmarks and
      visibility only, detection ignored (the paper's landmark regions)
  background (the rest)        IoU < detection_negative with every face, ignored tiny faces included:
      - near misses: IoU in [near_miss_min_iou, detection_negative) with one face
      - mined hard negatives (training/mining.py) when the pool has any
      - random regions of photos whose faces are all annotated (WIDER) and of face-free photos

Augmentation happens at load time (flip, the jitter itself, contrast/brightness), so no two epochs
see the same crop. A batch is a pure function of (seed, iteration): a resumed run draws exactly the
batches an uninterrupted one would have drawn.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.config import HyperFaceConfig
from core.geometry import box_iou, crop_and_warp
from core.labels import LABEL_LENGTH, OFFSETS, empty_label
from core.records import FaceRecord, ImageRecord
from data_prep.readers import read_dataset
from data_prep.readers.common import load_image
from data_prep.readers.wider import is_ignore
from data_prep.regions import face_label, flip_label

log = logging.getLogger(__name__)

# Sets whose images are face chips: their faces are positives, but their pixels are never background.
CHIP_SETS = frozenset({"aflw_crops", "utkface"})
# Sets whose photos have every face annotated: random regions away from the faces are true background.
FULLY_ANNOTATED_SETS = frozenset({"wider", "face_free"})


@dataclass
class FaceRef:
    image: ImageRecord
    face: int
    source: str


@dataclass
class Pools:
    """What the sampler draws from; built once by `build_pools`."""
    faces: dict[str, list[FaceRef]] = field(default_factory=dict)        # positives, by source set
    landmark_faces: list[FaceRef] = field(default_factory=list)           # faces with landmarks (partials)
    photos_with_faces: list[ImageRecord] = field(default_factory=list)    # near misses
    background_photos: list[ImageRecord] = field(default_factory=list)    # fully annotated photos with faces
    face_free_photos: list[ImageRecord] = field(default_factory=list)
    mined: list[tuple[Path, np.ndarray]] = field(default_factory=list)    # (image path, box) hard negatives

    def counts(self) -> dict:
        return {"faces": {k: len(v) for k, v in self.faces.items()}, "landmark_faces": len(self.landmark_faces),
                "photos_with_faces": len(self.photos_with_faces), "background_photos": len(self.background_photos),
                "face_free_photos": len(self.face_free_photos), "mined_negatives": len(self.mined)}


def build_pools(sets: dict[str, tuple[str, Path, str]], cfg: HyperFaceConfig, mined_file: Path | None = None) -> Pools:
    """Pools from `sets` = {name: (reader name, root, split)}, read with data_prep's readers."""
    min_side = cfg.training.min_face_side
    pools = Pools()
    for name, (dataset, root, split) in sets.items():
        records = read_dataset(dataset, root, split=split, config=cfg)
        chips = dataset in CHIP_SETS
        refs = [FaceRef(r, k, name) for r in records for k, f in enumerate(r.faces)
                if not is_ignore(f) and (chips or min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_side)]
        if refs:
            pools.faces[name] = refs
            pools.landmark_faces += [ref for ref in refs if ref.image.faces[ref.face].has_landmarks]
        if dataset == "face_free":
            pools.face_free_photos += records
        elif not chips:
            pools.photos_with_faces += [r for r in records if any(not is_ignore(f) for f in r.faces)]
            if dataset in FULLY_ANNOTATED_SETS:
                pools.background_photos += records
    if mined_file is not None and Path(mined_file).is_file():
        pools.mined = read_mined(mined_file)
    log.info("sampler pools: %s", json.dumps(pools.counts()))
    return pools


def read_mined(path: Path) -> list[tuple[Path, np.ndarray]]:
    """Hard negatives of a mining pool file (JSON Lines: {"image": path, "box": [x1, y1, x2, y2], ...})."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            out.append((Path(item["image"]), np.asarray(item["box"], dtype=np.float64)))
    return out


# ----------------------------------------------------------------------------------------------
# region draws (pure functions of rng)
def jitter_box(box: np.ndarray, rng: np.random.Generator, shift: float, scale: float) -> np.ndarray:
    """`box` with its centre moved by N(0, shift) box sizes and its sides scaled by exp(N(0, scale))."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2 + rng.normal(0, shift) * w, y1 + h / 2 + rng.normal(0, shift) * h
    s = np.exp(rng.normal(0, scale))
    nw, nh = w * s * np.exp(rng.normal(0, scale / 3)), h * s * np.exp(rng.normal(0, scale / 3))
    return np.array([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2])


def draw_around(box: np.ndarray, rng, low: float, high: float, shift: float, scale: float,
                others: np.ndarray | None = None, max_other: float = 1.0, tries: int = 30) -> tuple[np.ndarray, float] | None:
    """A jittered box whose IoU with `box` lies in (low, high] and whose IoU with every box of
    `others` stays below max_other; None when `tries` draws found none."""
    for _ in range(tries):
        cand = jitter_box(box, rng, shift, scale)
        if cand[2] - cand[0] < 4 or cand[3] - cand[1] < 4:
            continue
        iou = float(box_iou(cand, box)[0, 0])
        if low < iou <= high and (others is None or len(others) == 0 or box_iou(cand, others).max() < max_other):
            return cand, iou
    return None


def random_region(width: int, height: int, rng, min_side: float, faces: np.ndarray, max_iou: float,
                  tries: int = 30) -> np.ndarray | None:
    """A random box (log-uniform size, aspect 0.7-1.4, inside the image) with IoU < max_iou with every
    box of `faces`; None when none was found."""
    top = max(min_side + 1, min(width, height))
    for _ in range(tries):
        side = np.exp(rng.uniform(np.log(min_side), np.log(top)))
        aspect = np.exp(rng.uniform(np.log(0.7), np.log(1.4)))
        w, h = min(width, side * np.sqrt(aspect)), min(height, side / np.sqrt(aspect))
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        cand = np.array([x1, y1, x1 + w, y1 + h])
        if len(faces) == 0 or box_iou(cand, faces).max() < max_iou:
            return cand
    return None


def colour_jitter(crop: np.ndarray, rng, amount: float) -> np.ndarray:
    """Contrast x (1 +- amount) and brightness +- amount * 64 grey levels."""
    if amount <= 0:
        return crop
    contrast = 1.0 + rng.uniform(-amount, amount)
    bright = rng.uniform(-amount, amount) * 64.0
    mean = float(np.mean(cv2.mean(crop)[:crop.shape[2] if crop.ndim == 3 else 1]))
    # (x - mean) * contrast + mean + bright, saturated to 0..255 in one OpenCV pass (the sampler's
    # hot spot in numpy float32)
    return cv2.addWeighted(crop, contrast, crop, 0.0, mean * (1.0 - contrast) + bright)


def low_resolution(crop: np.ndarray, rng, region: np.ndarray, fraction: float,
                   sides: tuple[int, int]) -> np.ndarray:
    """With probability `fraction`, `crop` as if its region had been a face of `side` px (log-uniform
    in `sides`): shrunk to side x side (INTER_AREA) and warped back up (bilinear, as crop_and_warp
    warps a small region at test time). A region already at most that small is left as it is.
    Drawn for every kind of sample alike, so blur is no cue for the label."""
    if fraction <= 0 or rng.random() >= fraction:
        return crop
    side = int(round(np.exp(rng.uniform(np.log(sides[0]), np.log(sides[1])))))
    region_side = min(float(region[2] - region[0]), float(region[3] - region[1]))
    if region_side <= side:
        return crop
    size = crop.shape[0]
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


class RegionSampler:
    """Draws training batches (data N x 3 x S x S float32 minus the mean, labels N x LABEL_LENGTH)."""

    def __init__(self, pools: Pools, cfg: HyperFaceConfig, batch_size: int | None = None, seed: int | None = None,
                 cache_images: bool = True):
        self.pools, self.cfg = pools, cfg
        self.tc = cfg.training
        self.batch_size = batch_size or self.tc.batch_size
        self.seed = self.tc.seed if seed is None else seed
        self._cache: dict[str, np.ndarray] | None = {} if cache_images else None
        weights = {name: self.tc.source_weights.get(name, 0.0) for name in pools.faces}
        if not any(weights.values()):
            weights = {name: 1.0 for name in pools.faces}
        total = sum(weights.values())
        self._sources = [n for n in weights if weights[n] > 0]
        self._source_p = np.array([weights[n] / total for n in self._sources])
        if not self._sources:
            raise ValueError("sampler: no face in any training set")

    # -- images
    def image(self, path: Path) -> np.ndarray:
        key = str(path)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        image = load_image(path)
        if self._cache is not None:
            self._cache[key] = image
        return image

    # -- one sample of each kind
    def _positive(self, rng, partial: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
        thr = self.cfg.iou
        if partial and self.pools.landmark_faces:
            ref = self.pools.landmark_faces[rng.integers(len(self.pools.landmark_faces))]
        else:
            source = self._sources[rng.choice(len(self._sources), p=self._source_p)]
            ref = self.pools.faces[source][rng.integers(len(self.pools.faces[source]))]
        face = ref.image.faces[ref.face]
        image = self.image(ref.image.path)
        if partial:
            got = draw_around(face.box, rng, thr.landmarks_min, thr.detection_positive, 0.2, 0.3)
        else:
            got = draw_around(face.box, rng, thr.detection_positive, 1.0, self.tc.positive_jitter, self.tc.positive_jitter)
        # no partial found: the face box itself (a positive) rather than an empty slot
        region, iou = got if got is not None else (face.box.copy(), 1.0)
        label = face_label(region, face, iou, self.cfg)
        return image, region, label, ref.image.path

    def _background(self, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        tc, thr = self.tc, self.cfg.iou
        kind = rng.random()
        if kind < tc.mined_fraction and self.pools.mined:
            path, box = self.pools.mined[rng.integers(len(self.pools.mined))]
            return self.image(path), box, None, path
        kind = rng.random()
        if kind < tc.near_miss_fraction and self.pools.photos_with_faces:
            record = self.pools.photos_with_faces[rng.integers(len(self.pools.photos_with_faces))]
            real = [f for f in record.faces if not is_ignore(f)]
            face = real[rng.integers(len(real))]
            boxes = np.array([f.box for f in record.faces])
            got = draw_around(face.box, rng, tc.near_miss_min_iou, thr.detection_negative, 0.5, 0.5,
                              others=boxes, max_other=thr.detection_negative)
            if got is not None:
                return self.image(record.path), got[0], None, record.path
        use_free = rng.random() < tc.face_free_fraction or not self.pools.background_photos
        pool = self.pools.face_free_photos if use_free and self.pools.face_free_photos else self.pools.background_photos
        if not pool:
            return None
        record = pool[rng.integers(len(pool))]
        image = self.image(record.path)
        boxes = np.array([f.box for f in record.faces]).reshape(-1, 4)
        region = random_region(image.shape[1], image.shape[0], rng, tc.min_region_side, boxes, thr.detection_negative)
        return (image, region, None, record.path) if region is not None else None

    def _finish(self, image, region, label, path, rng) -> tuple[np.ndarray, np.ndarray]:
        inp = self.cfg.input
        if label is None:
            label = empty_label()
            label[OFFSETS["detection"]] = 0
        crop = crop_and_warp(image, region, inp.size, inp.mean_bgr)
        crop = low_resolution(crop, rng, region, self.tc.low_res_fraction, self.tc.low_res_sides)
        if self.tc.flip and rng.random() < 0.5:
            crop, label = cv2.flip(crop, 1), flip_label(label)
        crop = colour_jitter(crop, rng, self.tc.colour_jitter)
        return crop, label.astype(np.float32)

    def draw(self, iteration: int) -> tuple[list[np.ndarray], np.ndarray, list[tuple[str, Path, np.ndarray]]]:
        """The crops (uint8 HWC), labels (N, LABEL_LENGTH) and (kind, image path, region) of each
        sample of batch `iteration`."""
        rng = np.random.default_rng([self.seed, int(iteration)])
        n = self.batch_size
        n_pos = int(round(n * self.tc.fg_fraction))
        n_partial = int(round(n * self.tc.partial_fraction)) if self.pools.landmark_faces else 0
        kinds = ["face"] * n_pos + ["partial"] * n_partial + ["background"] * (n - n_pos - n_partial)
        crops, labels = [], np.zeros((n, LABEL_LENGTH), dtype=np.float32)
        for i, kind in enumerate(kinds):
            got = None
            if kind == "background":
                for _ in range(5):
                    got = self._background(rng)
                    if got is not None:
                        break
            if got is None:  # a face (or a background slot that found no region)
                kinds[i] = kind if kind != "background" else "face"
                got = self._positive(rng, partial=(kind == "partial"))
            crop, label = self._finish(*got, rng)
            crops.append(crop)
            labels[i] = label
            kinds[i] = (kinds[i], Path(got[3]), np.asarray(got[1], dtype=np.float64))
        return crops, labels, kinds

    def batch(self, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        """Net-ready batch: data (N, 3, S, S) float32 BGR minus the mean, labels (N, LABEL_LENGTH, 1, 1)."""
        crops, labels, _ = self.draw(iteration)
        data = np.stack(crops).astype(np.float32) - np.asarray(self.cfg.input.mean_bgr, dtype=np.float32)
        return np.ascontiguousarray(data.transpose(0, 3, 1, 2)), labels.reshape(len(labels), -1, 1, 1)


# ----------------------------------------------------------------------------------------------
# the spec a training run writes and the Caffe layer reads
def sampler_sets(data_root: Path, cfg: HyperFaceConfig) -> dict[str, tuple[str, Path, str]]:
    """The default training sets under the shared data folder (train splits only; the held-out parts
    of aflw_crops, UTKFace and WIDER train are never read here)."""
    root = Path(data_root)
    return {
        "aflw_crops": ("aflw_crops", root / "aflw_crops", "train"),
        "wider": ("wider", root / "wider_train", "train-fit"),
        "helen": ("300w", root / "helen", "train"),
        "utkface": ("utkface", root / "utkface", "train"),
        "face_free": ("face_free", root / "face_free", "train"),
    }


SAMPLING_KEYS = ("fg_fraction", "partial_fraction", "near_miss_fraction", "mined_fraction", "face_free_fraction",
                 "positive_jitter", "colour_jitter", "flip", "low_res_fraction", "low_res_sides", "source_weights")


def sampling_record(cfg: HyperFaceConfig) -> dict:
    """The sampler settings a training record keeps (CPU and GPU pieces alike)."""
    return {k: getattr(cfg.training, k) for k in SAMPLING_KEYS}


def write_spec(path: Path, sets: dict, config_path: Path | None, mined_file: Path | None, batch_size: int, seed: int) -> Path:
    spec = {"sets": {k: [d, str(r), s] for k, (d, r, s) in sets.items()},
            "config": str(config_path) if config_path else None,
            "mined": str(mined_file) if mined_file else None, "batch_size": batch_size, "seed": seed}
    Path(path).write_text(json.dumps(spec, indent=2))
    return Path(path)


def sampler_from_spec(path: Path) -> RegionSampler:
    from core.config import load_config
    spec = json.loads(Path(path).read_text())
    cfg = load_config(spec.get("config"))
    sets = {k: (d, Path(r), s) for k, (d, r, s) in spec["sets"].items()}
    pools = build_pools(sets, cfg, Path(spec["mined"]) if spec.get("mined") else None)
    return RegionSampler(pools, cfg, batch_size=spec["batch_size"], seed=spec["seed"])
