"""Test-time procedure of Section 3.3 as pure functions over network outputs:

* decode_outputs: raw blobs -> per-region values in image coordinates (eq. 8, degrees, thresholds);
* iterative_region_proposals: Algorithm 1 (IRP), given an `evaluate(boxes) -> Regions` callable;
* landmark_nms: Algorithm 2 (L-NMS), regions -> list[Face];
* nms_faces: plain NMS (+ optional R-CNN box regression), the R-CNN Face baseline of Section 5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from core import net_io
from core.aflw21 import NUM_POINTS
from core.config import TestConfig
from core.face import Face
from pipeline.errors import GeometryError
from core.geometry import apply_bbox_deltas, box_iou
from pipeline.geometry import box_from_landmarks, nms


@dataclass
class Regions:
    """Decoded outputs for n regions (one row per box). NaN where the net lacks that output."""
    boxes: np.ndarray             # (n, 4) the regions that were fed to the net
    scores: np.ndarray            # (n,) face probability
    landmarks: np.ndarray         # (n, 21, 2) image pixels (eq. 8)
    visibility: np.ndarray        # (n, 21) predicted visibility score
    pose_deg: np.ndarray          # (n, 3) roll, pitch, yaw in degrees
    gender_prob_male: np.ndarray  # (n,)
    bbox_deltas: np.ndarray       # (n, 4) R-CNN regression; NaN when absent
    landmarks68: np.ndarray | None = None  # (n, 68, 2) image pixels from the iBUG-68 head (eq. 8); NaN when absent

    def __post_init__(self):
        if self.landmarks68 is None:
            self.landmarks68 = np.full((len(self.boxes), 68, 2), np.nan)

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index) -> "Regions":
        return Regions(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @classmethod
    def concat(cls, parts: list["Regions"]) -> "Regions":
        return cls(*(np.concatenate([getattr(p, f) for p in parts], axis=0) for f in cls.__dataclass_fields__))

    @classmethod
    def empty(cls) -> "Regions":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, NUM_POINTS, 2)), np.zeros((0, NUM_POINTS)),
                   np.zeros((0, 3)), np.zeros(0), np.zeros((0, 4)), np.zeros((0, 68, 2)))


def decode_outputs(outputs: dict[str, np.ndarray], boxes: np.ndarray) -> Regions:
    """Decode deploy-net blobs (core/net_io.py names) for `boxes` (n, 4) into image coordinates.

    Landmarks by eq. 8: x_i = a_i * w + x_c, y_i = b_i * h + y_c, with (x_c, y_c) the box centre and
    w, h its size. Pose radians -> degrees. Missing outputs become NaN.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)

    def get(name, width):
        if name in outputs:
            return np.asarray(outputs[name], dtype=np.float64).reshape(n, width)
        return np.full((n, width), np.nan)

    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    xc, yc = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2

    def points(name, count):  # eq. 8 for a head of `count` points
        ab = get(name, 2 * count).reshape(n, count, 2)
        return np.stack([ab[..., 0] * w[:, None] + xc[:, None], ab[..., 1] * h[:, None] + yc[:, None]], axis=-1)

    return Regions(
        boxes=boxes,
        scores=get(net_io.DETECTION_PROB, 2)[:, 1],
        landmarks=points(net_io.LANDMARKS, NUM_POINTS),
        visibility=get(net_io.VISIBILITY, NUM_POINTS),
        pose_deg=np.degrees(get(net_io.POSE, 3)),
        gender_prob_male=get(net_io.GENDER_PROB, 2)[:, 1],
        bbox_deltas=get(net_io.BBOX_DELTAS, 4),
        landmarks68=points(net_io.LANDMARKS68, 68),
    )


def visible_mask(visibility: np.ndarray, test: TestConfig) -> np.ndarray:
    """Points whose predicted visibility reaches the threshold (Section 3.3)."""
    return np.nan_to_num(visibility, nan=-np.inf) >= test.visibility_threshold


def landmark_boxes(regions: Regions, test: TestConfig) -> np.ndarray:
    """FaceRectCalculator over regions: one face box (n, 4) per region from its landmarks (and, with
    test.pose_aware_face_box, the mean shape of its predicted yaw)."""
    boxes = np.full((len(regions), 4), np.nan)
    visible = visible_mask(regions.visibility, test)
    for i, (lms, vis) in enumerate(zip(regions.landmarks, visible)):
        try:
            boxes[i] = box_from_landmarks(lms, vis, _yaw(regions.pose_deg[i], test))
        except GeometryError:  # degenerate prediction: no box (NaN), dropped by the callers
            pass
    return boxes


def _yaw(pose_deg: np.ndarray, test: TestConfig) -> float | None:
    """The yaw the face-box fit takes its mean shape from: the predicted one, or None (frontal shape)."""
    return float(pose_deg[2]) if test.pose_aware_face_box else None


def _usable(boxes: np.ndarray) -> np.ndarray:
    """Rows that are finite boxes of positive size."""
    return np.isfinite(boxes).all(axis=1) & (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)


def iterative_region_proposals(boxes: np.ndarray, evaluate: Callable[[np.ndarray], Regions], test: TestConfig,
                               iterations: int | None = None) -> Regions:
    """Algorithm 1. `evaluate(boxes)` runs the net on boxes and decodes (no threshold).

    detected = boxes scoring >= threshold; then T times: new boxes from the fiducials of the last
    new boxes (FaceRectCalculator), appended to detected. With test.irp_suppress_first, only the
    new boxes that a greedy NMS (lnms_iou) of the last new boxes' landmark boxes keeps, among those
    scoring >= threshold, are evaluated: a box that overlaps a better-scoring one that much lands in
    that one's L-NMS cluster and cannot add a face. The result is every detected box with its
    final outputs, thresholded again (final_scores of Algorithm 1). A box evaluated once is not
    evaluated again: the net is deterministic, so its outputs are reused.
    """
    iterations = test.irp_iterations if iterations is None else iterations
    first = evaluate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    detected = [first.select(first.scores >= test.detection_threshold)]
    newest = detected[0]
    for stage in range(iterations):
        if len(newest) == 0:
            break
        new_boxes = landmark_boxes(newest, test)
        usable = np.flatnonzero(_usable(new_boxes))
        if test.irp_suppress_first:  # one seed per face: NMS of the regions' landmark boxes
            above = usable[newest.scores[usable] >= test.detection_threshold]
            usable = above[nms(new_boxes[above], newest.scores[above], test.lnms_iou)]
        newest = evaluate(new_boxes[usable])
        detected.append(newest)
    final = Regions.concat(detected)
    return final.select(final.scores >= test.detection_threshold)


def _face(box, score, landmarks, visibility, pose, gender, test: TestConfig, region=None, landmarks68=None) -> Face:
    has68 = landmarks68 is not None and np.isfinite(landmarks68).all()
    return Face(box=np.asarray(box, dtype=np.float64), score=float(score),
                landmarks=np.asarray(landmarks, dtype=np.float64), visibility=np.asarray(visibility, dtype=np.float64),
                visible=visible_mask(np.asarray(visibility), test), pose_deg=np.asarray(pose, dtype=np.float64),
                gender_prob_male=float(gender),
                region=None if region is None else np.asarray(region, dtype=np.float64).copy(),
                landmarks68=np.asarray(landmarks68, dtype=np.float64).copy() if has68 else None)


def landmark_nms(regions: Regions, test: TestConfig, from_ssd: np.ndarray | None = None) -> list[Face]:
    """Algorithm 2 on detected regions: boxes from the landmark fits, NMS on them (lnms_iou), and for
    every kept box the top-k (lnms_top_k) overlapping boxes (IoU > lnms_iou) by score; the face gets
    the median of their landmarks, visibility, pose and gender probability, the kept box's score,
    and a box fitted to the median landmarks, in test.box_style (restyle_boxes). Faces come out in
    decreasing score.

    from_ssd: (n,) bool, the regions whose box is a Fast-HyperFace proposal (the SSD's regressed face
    box, already in a face detector's style). Where a cluster holds such regions and
    test.ssd_box_weight > 0, the face's box is ssd_box_weight x the median of the top-k of those boxes
    + the rest x the styled landmark-fitted box. With test.lnms_suppress_output, a face whose final box
    overlaps a better-scoring face's final box by IoU > lnms_iou is dropped."""
    if len(regions) == 0:
        return []
    boxes = landmark_boxes(regions, test)
    usable = _usable(boxes)
    from_ssd = np.zeros(len(usable), bool) if from_ssd is None else np.asarray(from_ssd, dtype=bool)
    regions, boxes, from_ssd = regions.select(usable), boxes[usable], from_ssd[usable]
    weight = test.ssd_box_weight if from_ssd.any() else 0.0
    if len(regions) == 0:
        return []
    keep = nms(boxes, regions.scores, test.lnms_iou)
    overlaps = box_iou(boxes[keep], boxes)
    faces = []
    for row, i in enumerate(keep):
        members = np.flatnonzero(overlaps[row] > test.lnms_iou)
        members = np.union1d(members, [i])
        top = members[np.argsort(-regions.scores[members], kind="stable")[:test.lnms_top_k]]
        lms = np.median(regions.landmarks[top], axis=0)
        vis = np.median(regions.visibility[top], axis=0)
        pose = np.median(regions.pose_deg[top], axis=0)
        try:
            box = box_from_landmarks(lms, visible_mask(vis, test), _yaw(pose, test))
        except GeometryError:
            box = boxes[i]
        box = restyle_boxes(np.asarray(box, dtype=np.float64), test.box_style)[0]
        ssd = members[from_ssd[members]]
        if weight > 0 and len(ssd):
            ssd = ssd[np.argsort(-regions.scores[ssd], kind="stable")[:test.lnms_top_k]]
            box = weight * np.median(regions.boxes[ssd], axis=0) + (1 - weight) * box
        faces.append(_face(box, regions.scores[i], lms, vis, pose,
                           np.median(regions.gender_prob_male[top]), test, regions.boxes[i],
                           np.median(regions.landmarks68[top], axis=0)))
    if test.lnms_suppress_output and len(faces) > 1:
        # Algorithm 2's guarantee (no two faces overlap by more than lnms_iou) for the boxes given out,
        # which the box style and the SSD box fusion moved away from the boxes the NMS above saw
        kept = nms(np.array([f.box for f in faces]), np.array([f.score for f in faces]), test.lnms_iou)
        faces = [faces[k] for k in kept]
    return faces


def nms_faces(regions: Regions, test: TestConfig, regress: bool = True) -> list[Face]:
    """Plain NMS (nms_iou) on region boxes, after R-CNN box regression when the net gives bbox_deltas."""
    if len(regions) == 0:
        return []
    boxes = regions.boxes
    if regress and np.isfinite(regions.bbox_deltas).all():
        boxes = apply_bbox_deltas(boxes, regions.bbox_deltas)
    keep = nms(boxes, regions.scores, test.nms_iou)
    return [_face(boxes[i], regions.scores[i], regions.landmarks[i], regions.visibility[i], regions.pose_deg[i],
                  regions.gender_prob_male[i], test, regions.boxes[i], regions.landmarks68[i]) for i in keep]


def restyle_boxes(boxes: np.ndarray, style) -> np.ndarray:
    """Boxes (n, 4) moved by (tx, ty) box sizes and scaled by (sx, sy) about their centres: the
    box-style transform of face-eval's calibration (benchmarks.metrics.detection.calibrate_boxes),
    so landmark-fitted boxes (the AFLW crop's box style) come out in a benchmark's style."""
    tx, ty, sx, sy = (float(v) for v in style)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = (b[:, 2] - b[:, 0]) / 2, (b[:, 3] - b[:, 1]) / 2
    cx, cy = (b[:, 0] + b[:, 2]) / 2 + tx * 2 * w, (b[:, 1] + b[:, 3]) / 2 + ty * 2 * h
    return np.stack([cx - w * sx, cy - h * sy, cx + w * sx, cy + h * sy], axis=1)
