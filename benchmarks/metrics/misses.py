"""Where a detector loses faces and where its false positives come from (one image, face-eval rules).

Every counted face (not ignored) gets one cause, the first that applies:
  "found"                   a detection at the threshold matches it (face-eval's greedy matching);
  "no proposal"             no region the net saw overlaps it (IoU above iou_threshold);
  "scored below threshold"  regions overlap it, but the net scored every one of them below the threshold;
  "lost after scoring"      a region overlapping it scored at the threshold, yet no detection matches it
                            (L-NMS merged it into a neighbour, or the landmark-fitted box moved off it).
Every detection at the threshold that face-eval counts as a false positive gets one cause:
  "duplicate"               its best face was already matched by a higher-scoring detection;
  "near a face"             it overlaps some face (ignored ones included) with IoU >= near_iou: a
                            localisation error rather than a face-free region;
  "background"              it overlaps no face that much.
IoU is face-eval's +1-pixel IoU, strictly above iou_threshold to match, as in face_eval_ap.
"""
from __future__ import annotations

import numpy as np

from benchmarks.metrics.detection import iou_plus1

FACE_CAUSES = ("found", "no proposal", "scored below threshold", "lost after scoring")
FP_CAUSES = ("duplicate", "near a face", "background")


def miss_causes(faces: np.ndarray, ignored: np.ndarray, regions: np.ndarray, region_scores: np.ndarray,
                dets: np.ndarray, det_scores: np.ndarray, threshold: float, iou_threshold: float = 0.5,
                near_iou: float = 0.1) -> tuple[list[str], list[str]]:
    """(cause of each face that is not ignored, in face order; cause of each false positive among the
    detections scoring >= threshold, in decreasing score). regions/region_scores: every box the net
    saw (proposals and IRP's) with its score; dets/det_scores: the detector's output."""
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    ignored = np.asarray(ignored, dtype=bool).reshape(-1)
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    region_scores = np.asarray(region_scores, dtype=np.float64).reshape(-1)
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)

    above = det_scores >= threshold
    order = np.flatnonzero(above)[np.argsort(-det_scores[above], kind="stable")]
    taken = np.zeros(len(faces), dtype=bool)
    fp_causes = []
    det_iou = iou_plus1(dets, faces) if len(faces) else np.zeros((len(dets), 0))
    for i in order:
        if len(faces) == 0:
            fp_causes.append("background")
            continue
        j = int(np.argmax(det_iou[i]))
        if det_iou[i, j] > iou_threshold:
            if ignored[j]:
                continue
            if not taken[j]:
                taken[j] = True
            else:
                fp_causes.append("duplicate")
            continue
        fp_causes.append("near a face" if det_iou[i, j] >= near_iou else "background")

    region_iou = iou_plus1(regions, faces) if len(regions) and len(faces) else np.zeros((len(regions), len(faces)))
    face_causes = []
    for j in np.flatnonzero(~ignored):
        if taken[j]:
            face_causes.append("found")
            continue
        over = region_iou[:, j] > iou_threshold
        if not over.any():
            face_causes.append("no proposal")
        elif region_scores[over].max() < threshold:
            face_causes.append("scored below threshold")
        else:
            face_causes.append("lost after scoring")
    return face_causes, fp_causes
