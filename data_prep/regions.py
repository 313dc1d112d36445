"""Region samples of Section 3.2: proposals, their multi-task labels, crops and flips.

Labels of a region against the best-overlapping annotated face (thresholds: core.config.IoUThresholds):
  IoU > detection_positive           detection 1; landmarks, visibility, pose, gender, bbox targets
  landmarks_min < IoU <= positive    detection ignored (-1); landmarks and visibility only ("partial")
  IoU < detection_negative with every face, ignored tiny faces included: detection 0 ("negative")
  anything else                      dropped
Landmarks are eq. 2: a_i = (x_i - x_c) / w, b_i = (y_i - y_c) / h with (x_c, y_c) the region centre
((x1 + x2) / 2, (y1 + y2) / 2) and w = x2 - x1, h = y2 - y1. Targets are pre-multiplied by their masks.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.aflw21 import FLIP_PERMUTATION, NUM_POINTS
from core.config import HyperFaceConfig, InputConfig, SelectiveSearchConfig
from core.labels import IGNORE_LABEL, OFFSETS, empty_label
from core.records import FaceRecord, ImageRecord
from core.geometry import bbox_targets, box_iou, crop_and_warp
from data_prep.geometry import jitter_boxes
from data_prep.ibug68 import FLIP_PERMUTATION_68, NUM_POINTS_68
from data_prep.readers.wider import is_ignore

log = logging.getLogger(__name__)

POSITIVE, PARTIAL, NEGATIVE = "positive", "partial", "negative"


# ----------------------------------------------------------------------------------------------
# proposals
def selective_search(image: np.ndarray, ss: SelectiveSearchConfig) -> np.ndarray:
    """(N, 4) boxes x1, y1, x2, y2 in whole pixels (float64) from the project's one selective search,
    core.proposals.selective_search (the pipeline's proposals): resized to ss.max_side, rounded,
    clipped, filtered, near-duplicates merged, in canonical order."""
    from core.proposals import selective_search as shared_selective_search

    return shared_selective_search(image, ss)


def proposal_cache_path(cache_dir: Path, image_path: Path, image_shape: tuple, ss: SelectiveSearchConfig) -> Path:
    """Cache file of the proposals of one image: keyed by its path, file size, pixel size and SS settings."""
    path = Path(image_path).resolve()
    size = path.stat().st_size if path.exists() else -1
    key = f"{path}|{size}|{tuple(image_shape)}|{ss.mode}|{ss.max_side}|{ss.min_box_side}|{ss.max_proposals}"
    return Path(cache_dir) / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


def cached_proposals(image: np.ndarray, image_path: Path, cache_dir: Path | None, ss: SelectiveSearchConfig) -> np.ndarray:
    """selective_search(image), read from / saved to `cache_dir` when given."""
    if cache_dir is None:
        return selective_search(image, ss)
    cache = proposal_cache_path(cache_dir, image_path, image.shape, ss)
    # keyed on every selective-search setting (filters, merging) and the proposal format
    settings = hashlib.sha1(f"core.proposals v1 {ss!r}".encode()).hexdigest()[:10]
    cache = cache.with_name(f"{cache.stem}-{settings}.npy")
    if cache.is_file():
        return np.load(cache)
    boxes = selective_search(image, ss)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, boxes)
    tmp.replace(cache)
    return boxes


# ----------------------------------------------------------------------------------------------
# labels
def _normalise(points: np.ndarray, region: np.ndarray) -> np.ndarray:
    w, h = region[2] - region[0], region[3] - region[1]
    centre = np.array([(region[0] + region[2]) / 2.0, (region[1] + region[3]) / 2.0])
    return (points - centre) / np.array([w, h])


def face_label(region: np.ndarray, face: FaceRecord, iou: float, cfg: HyperFaceConfig) -> np.ndarray:
    """The label vector (core.labels layout) of `region` matched to `face` with overlap `iou`
    (detection set by the caller's rule: 1 above detection_positive, else ignored)."""
    thr = cfg.iou
    label = empty_label()
    region = np.asarray(region, dtype=np.float64)
    positive = iou > thr.detection_positive
    label[OFFSETS["detection"]] = 1 if positive else IGNORE_LABEL
    if iou > thr.landmarks_min and face.landmarks is not None:
        known = face.landmarks_labelled.astype(bool)
        vis = face.visibility.astype(np.float64) * known
        usable = (vis > 0) & np.isfinite(face.landmarks).all(axis=1)
        mask = np.repeat(usable.astype(np.float32), 2)
        coords = np.nan_to_num(_normalise(face.landmarks, region)).reshape(-1) * mask
        label[OFFSETS["landmarks"]] = coords
        label[OFFSETS["landmarks_mask"]] = mask
        label[OFFSETS["visibility"]] = vis
        label[OFFSETS["visibility_mask"]] = known.astype(np.float32)
    if iou > thr.landmarks_min and face.landmarks68 is not None:
        label[OFFSETS["landmarks68"]] = _normalise(face.landmarks68, region).reshape(-1)
        label[OFFSETS["landmarks68_mask"]] = 1.0
    if positive and iou > thr.pose_gender_min:
        known = np.isfinite(face.pose_deg)
        label[OFFSETS["pose"]] = np.where(known, np.radians(np.nan_to_num(face.pose_deg)), 0.0)
        label[OFFSETS["pose_mask"]] = known.astype(np.float32)
        if face.gender is not None:
            label[OFFSETS["gender"]] = 1 if face.gender == "m" else 0
    if positive:
        label[OFFSETS["bbox_targets"]] = bbox_targets(region, face.box)[0]
        label[OFFSETS["bbox_mask"]] = 1.0
    return label


def label_regions(regions: np.ndarray, faces: list[FaceRecord], cfg: HyperFaceConfig):
    """[(kind, face index or -1, label vector)] for each region, kind None when the region is dropped."""
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    real = [k for k, f in enumerate(faces) if not is_ignore(f)]
    all_iou = box_iou(regions, np.array([f.box for f in faces])) if faces else np.zeros((len(regions), 0))
    out = []
    for r, region in enumerate(regions):
        overlaps = all_iou[r]
        if overlaps.size == 0 or overlaps.max() < cfg.iou.detection_negative:
            label = empty_label()
            label[OFFSETS["detection"]] = 0
            out.append((NEGATIVE, -1, label))
            continue
        if not real:
            out.append((None, -1, None))
            continue
        best = real[int(np.argmax(overlaps[real]))]
        iou = float(overlaps[best])
        face = faces[best]
        if iou > cfg.iou.detection_positive:
            out.append((POSITIVE, best, face_label(region, face, iou, cfg)))
        elif iou > cfg.iou.landmarks_min and face.has_landmarks:
            out.append((PARTIAL, best, face_label(region, face, iou, cfg)))
        else:
            out.append((None, best, None))
    return out


# ----------------------------------------------------------------------------------------------
# crops and flips
def crop_region(image: np.ndarray, region: np.ndarray, inp: InputConfig) -> np.ndarray:
    """The `region` of `image` warped to the net input (core.geometry.crop_and_warp, as the pipeline)."""
    return crop_and_warp(image, region, inp.size, inp.mean_bgr)


def flip_label(label: np.ndarray) -> np.ndarray:
    """The label of the horizontally mirrored crop: x of every point negated, left/right AFLW (and
    iBUG) points swapped, roll and yaw negated, dx negated. flip_label(flip_label(l)) == l."""
    out = label.copy()
    for name, mask_name, perm, count in (("landmarks", "landmarks_mask", FLIP_PERMUTATION, NUM_POINTS),
                                         ("landmarks68", "landmarks68_mask", FLIP_PERMUTATION_68, NUM_POINTS_68)):
        pts = label[OFFSETS[name]].reshape(count, 2)
        flipped = np.empty_like(pts)
        flipped[perm] = pts * np.array([-1.0, 1.0], dtype=pts.dtype)
        out[OFFSETS[name]] = flipped.reshape(-1) + 0.0  # + 0.0 turns -0.0 into 0.0
        mask = label[OFFSETS[mask_name]].reshape(count, 2)
        flipped_mask = np.empty_like(mask)
        flipped_mask[perm] = mask
        out[OFFSETS[mask_name]] = flipped_mask.reshape(-1)
    for name in ("visibility", "visibility_mask"):
        values = label[OFFSETS[name]]
        flipped = np.empty_like(values)
        flipped[FLIP_PERMUTATION] = values
        out[OFFSETS[name]] = flipped
    pose = label[OFFSETS["pose"]].copy()
    pose[[0, 2]] *= -1  # roll, pitch, yaw: mirror negates roll and yaw
    out[OFFSETS["pose"]] = pose + 0.0
    bbox = label[OFFSETS["bbox_targets"]].copy()
    bbox[0] *= -1
    out[OFFSETS["bbox_targets"]] = bbox + 0.0
    return out


def flip_sample(crop: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of a (crop, label) sample."""
    return np.ascontiguousarray(crop[:, ::-1]), flip_label(label)


# ----------------------------------------------------------------------------------------------
# one image -> samples
@dataclass
class Sample:
    crop: np.ndarray   # (size, size, 3) uint8 BGR
    label: np.ndarray  # (LABEL_LENGTH,) float32
    kind: str          # POSITIVE, PARTIAL or NEGATIVE
    region: np.ndarray  # (4,) region box in the image
    flipped: bool


def image_samples(record: ImageRecord, image: np.ndarray, proposals: np.ndarray | None, cfg: HyperFaceConfig,
                  rng: np.random.Generator) -> list[Sample]:
    """The region samples of one image: `proposals` (None for face chips: jittered face boxes only)
    plus jittered ground-truth boxes, labelled, capped per face, negatives balanced to
    SamplingConfig.negatives_per_positive, randomly flipped."""
    sc = cfg.sampling
    faces = record.faces
    candidates = [np.asarray(proposals, dtype=np.float64).reshape(-1, 4)] if proposals is not None else []
    for face in faces:
        if is_ignore(face):
            continue
        candidates.append(np.round(face.box)[None])
        candidates.append(jitter_boxes(face.box, sc.jitter_per_face, sc.jitter_scale, rng))
    if not candidates:
        return []
    regions = np.concatenate(candidates)
    labelled = label_regions(regions, faces, cfg)
    if proposals is None:  # a chip: the padding around it is not a real negative
        labelled = [item if item[0] != NEGATIVE else (None, -1, None) for item in labelled]
    chosen: list[tuple[int, str]] = []
    n_detection_pos = 0
    for k in range(len(faces)):
        for kind in (POSITIVE, PARTIAL):
            idx = [r for r, (kd, f, _) in enumerate(labelled) if kd == kind and f == k]
            if len(idx) > sc.max_positives_per_face:
                idx = sorted(rng.choice(idx, size=sc.max_positives_per_face, replace=False).tolist())
            chosen += [(r, kind) for r in idx]
            n_detection_pos += len(idx) if kind == POSITIVE else 0
    negatives = [r for r, (kd, _, _) in enumerate(labelled) if kd == NEGATIVE]
    n_neg = min(len(negatives), sc.max_negatives_per_image, int(round(sc.negatives_per_positive * n_detection_pos)))
    if n_neg:
        chosen += [(r, NEGATIVE) for r in sorted(rng.choice(negatives, size=n_neg, replace=False).tolist())]
    samples = []
    for r, kind in chosen:
        crop = crop_region(image, regions[r], cfg.input)
        label = labelled[r][2]
        flipped = bool(sc.flip and rng.random() < 0.5)
        if flipped:
            crop, label = flip_sample(crop, label)
        samples.append(Sample(crop=crop, label=label.astype(np.float32), kind=kind, region=regions[r], flipped=flipped))
    return samples
