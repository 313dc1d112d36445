"""Face detection AP with the face-eval protocol of Mathias et al. ("Face detection without bells
and whistles", ECCV 2014), used for AFW and PASCAL faces in Section 5.1.

Protocol, as in the toolbox's VOCpr.py:
  * ground-truth faces whose width or height is under `min_gt_side` (30 px) are "ignore";
  * detections are dropped unless their width or height exceeds int(sqrt(0.5 * min_gt_side^2))
    (21 px for 30);
  * detections are taken by decreasing score; each one goes to the ground-truth face it overlaps
    most (IoU with the +1-pixel convention). IoU > `iou_threshold` and the face is "ignore": the
    detection is neither TP nor FP; IoU > threshold and the face is not yet taken: TP; otherwise FP;
  * AP = area under the monotone (upper envelope) precision-recall curve, VOC 2010+ style.
Optional box-style calibration (the toolbox's `evaluate_optim`): the mean translation/scale from
detections to their matched faces is applied to all detections, and AP recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np


def iou_plus1(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix with the +1-pixel convention (a box x1..x2 is x2 - x1 + 1 pixels wide).

    boxes_a: (N, 4) x1, y1, x2, y2 (inclusive pixel coordinates); boxes_b: (M, 4) likewise.
    Returns (N, M) float64.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision-recall curve (precision envelope, exact steps).

    recall, precision: (K,) values after each ranked detection (recall non-decreasing).
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


def ignore_small_faces(gt_boxes: np.ndarray, min_gt_side: float) -> np.ndarray:
    """(M,) bool: faces whose width or height (x2 - x1, as the toolbox) is under min_gt_side."""
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    return ((g[:, 2] - g[:, 0]) < min_gt_side) | ((g[:, 3] - g[:, 1]) < min_gt_side)


def min_detection_side(min_gt_side: float) -> int:
    """The toolbox's `minpix`: int(sqrt(0.5 * w * h)) of the smallest counted face (21 for 30)."""
    return int(np.sqrt(0.5 * min_gt_side * min_gt_side))


def keep_large_detections(det_boxes: np.ndarray, min_side: float) -> np.ndarray:
    """(N,) bool: detections whose width or height exceeds min_side (the toolbox's filterdet)."""
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    return ((d[:, 2] - d[:, 0]) > min_side) | ((d[:, 3] - d[:, 1]) > min_side)


@dataclass
class APResult:
    ap: float
    recall: np.ndarray     # (K,) after each counted detection, by decreasing score
    precision: np.ndarray  # (K,)
    scores: np.ndarray     # (K,) the scores of the counted (TP or FP) detections
    n_positives: int       # non-ignore ground-truth faces
    n_tp: int
    n_fp: int


def _match_all(dets, gts, ignores, iou_threshold):
    """Greedy face-eval matching over all images. Returns per-detection arrays
    (score, tp, fp, image key, det index, matched gt index or -1), sorted by decreasing score."""
    rows = []
    for key, (boxes, scores) in dets.items():
        for i, s in enumerate(np.asarray(scores, dtype=np.float64).reshape(-1)):
            rows.append((float(s), key, i))
    rows.sort(key=lambda r: -r[0])  # stable: ties keep input order
    taken = {k: np.zeros(len(np.asarray(g).reshape(-1, 4)), dtype=bool) for k, g in gts.items()}
    iou_cache = {}
    out = []
    for s, key, i in rows:
        gt = np.asarray(gts.get(key, np.zeros((0, 4)))).reshape(-1, 4)
        tp = fp = 0
        j = -1
        if len(gt):
            if key not in iou_cache:
                iou_cache[key] = iou_plus1(np.asarray(dets[key][0]).reshape(-1, 4), gt)
            ov = iou_cache[key][i]
            j = int(np.argmax(ov))
            if ov[j] > iou_threshold:
                if ignores[key][j]:
                    j = -1                      # matched an ignore face: neither TP nor FP
                    out.append((s, 0, 0, key, i, -1))
                    continue
                if not taken[key][j]:
                    taken[key][j] = True
                    tp = 1
                else:
                    fp, j = 1, -1
            else:
                fp, j = 1, -1
        else:
            fp = 1
        out.append((s, tp, fp, key, i, j))
    return out


def face_eval_ap(
    dets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    gts: Mapping[str, np.ndarray],
    min_gt_side: float,
    iou_threshold: float,
    gt_ignore: Mapping[str, np.ndarray] | None = None,
) -> APResult:
    """AP of face detections under the face-eval protocol.

    dets: image key -> (boxes (N, 4) x1, y1, x2, y2, scores (N,)); images may be missing.
    gts: image key -> (M, 4) ground-truth boxes x1, y1, x2, y2; every evaluated image must be here
         (a detection in an image without an entry counts as FP).
    min_gt_side: faces under this width or height are "ignore"; detections not larger than
         min_detection_side(min_gt_side) in width or height are dropped.
    iou_threshold: a detection matches a face when IoU (+1 convention) is strictly above this.
    gt_ignore: optional image key -> (M,) bool of faces to ignore in addition to the small ones
         (the PASCAL toolbox's flag column).
    Returns APResult; recall/precision are over detections that count (TP or FP).
    """
    min_side = min_detection_side(min_gt_side)
    ignores, n_pos = {}, 0
    for key, g in gts.items():
        ign = ignore_small_faces(g, min_gt_side)
        if gt_ignore is not None and key in gt_ignore:
            ign = ign | np.asarray(gt_ignore[key], dtype=bool).reshape(-1)
        ignores[key] = ign
        n_pos += int((~ign).sum())
    kept = {}
    for key, (boxes, scores) in dets.items():
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        keep = keep_large_detections(b, min_side)
        kept[key] = (b[keep], s[keep])
    rows = [r for r in _match_all(kept, gts, ignores, iou_threshold) if r[1] or r[2]]
    tp = np.array([r[1] for r in rows], dtype=np.float64)
    fp = np.array([r[2] for r in rows], dtype=np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / max(n_pos, 1)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return APResult(
        ap=voc_ap(recall, precision) if len(rows) else 0.0,
        recall=recall, precision=precision,
        scores=np.array([r[0] for r in rows], dtype=np.float64),
        n_positives=n_pos, n_tp=int(tp.sum()), n_fp=int(fp.sum()),
    )


def compose_box_styles(first, then) -> np.ndarray:
    """The one box style (tx, ty, sx, sy) equal to applying `first`, then `then` (whose shift is in
    units of the already scaled box): shifts add after scaling by `first`'s scale, scales multiply."""
    t1x, t1y, s1x, s1y = (float(v) for v in first)
    t2x, t2y, s2x, s2y = (float(v) for v in then)
    return np.array([t1x + t2x * s1x, t1y + t2y * s1y, s1x * s2x, s1y * s2y])


def calibrate_boxes(
    dets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    gts: Mapping[str, np.ndarray],
    min_gt_side: float,
    iou_threshold: float,
    iterations: int,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """face-eval's box-style calibration: `iterations` times, match, take the mean centre shift
    (relative to detection size) and the mean scale from TP detections to their faces, and apply
    it to every detection. Same arguments as face_eval_ap.
    Returns (calibrated dets, (4,) total tx, ty, sx, sy).
    """
    cur = {k: (np.asarray(b, dtype=np.float64).reshape(-1, 4).copy(), np.asarray(s, dtype=np.float64).reshape(-1))
           for k, (b, s) in dets.items()}
    total = np.array([0.0, 0.0, 1.0, 1.0])
    ignores = {k: ignore_small_faces(g, min_gt_side) for k, g in gts.items()}
    for _ in range(iterations):
        rows = _match_all(cur, gts, ignores, iou_threshold)
        t = []
        for _s, tp, _fp, key, i, j in rows:
            if not tp:
                continue
            d, g = cur[key][0][i], np.asarray(gts[key], dtype=np.float64).reshape(-1, 4)[j]
            dw, dh = d[2] - d[0], d[3] - d[1]
            t.append(((g[0] + g[2] - d[0] - d[2]) / 2 / dw, (g[1] + g[3] - d[1] - d[3]) / 2 / dh,
                      (g[2] - g[0]) / dw, (g[3] - g[1]) / dh))
        if not t:
            break
        tx, ty, sx, sy = np.mean(t, axis=0)
        total = compose_box_styles(total, (tx, ty, sx, sy))
        for key, (b, s) in cur.items():
            w, h = (b[:, 2] - b[:, 0]) / 2, (b[:, 3] - b[:, 1]) / 2
            cx, cy = (b[:, 0] + b[:, 2]) / 2 + tx * 2 * w, (b[:, 1] + b[:, 3]) / 2 + ty * 2 * h
            cur[key] = (np.stack([cx - w * sx, cy - h * sy, cx + w * sx, cy + h * sy], axis=1), s)
    return cur, total


def match_boxes(gt_boxes: np.ndarray, det_boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """One-to-one greedy matching of faces to detections by decreasing IoU (for scoring the
    landmarks/pose/gender of detected faces). gt_boxes: (M, 4); det_boxes: (N, 4), both
    x1, y1, x2, y2. Returns (M,) index of the matched detection, -1 where none has IoU > threshold.
    """
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    out = np.full(len(g), -1, dtype=int)
    if not len(g) or not len(d):
        return out
    ov = iou_plus1(g, d)
    for flat in np.argsort(-ov, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, ov.shape)
        if ov[i, j] <= iou_threshold:
            break
        if out[i] < 0 and j not in out:
            out[i] = j
    return out


def score_summary(scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Distribution of face probabilities on ground-truth boxes.

    scores: (F,). Returns {"score_mean", "score_median", "frac_above": fraction > threshold, "n"};
    NaN statistics for F = 0.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(s):
        return {"score_mean": float("nan"), "score_median": float("nan"), "frac_above": float("nan"), "n": 0}
    return {"score_mean": float(s.mean()), "score_median": float(np.median(s)),
            "frac_above": float((s > threshold).mean()), "n": int(len(s))}


def fp_per_image_at_recall(result: APResult, n_images: int, recall: float) -> float:
    """False positives per image at the first rank where `result` reaches `recall` (inf if it never does)."""
    reached = np.flatnonzero(np.asarray(result.recall) >= recall - 1e-12)
    if len(reached) == 0 or n_images <= 0:
        return float("inf")
    k = int(reached[0])
    tp = result.recall[k] * result.n_positives
    fp = tp / max(result.precision[k], np.finfo(np.float64).eps) - tp
    return float(round(fp) / n_images)


def best_f1_threshold(result: APResult) -> tuple[float, float, float, float]:
    """(score threshold, precision, recall, F1) of the ranked detections of `result` where F1 is
    highest: keeping the detections scored >= threshold. (nan, 0, 0, 0) without detections."""
    scores = np.asarray(result.scores, dtype=np.float64)
    if len(scores) == 0 or result.n_positives == 0:
        return float("nan"), 0.0, 0.0, 0.0
    tp = np.asarray(result.recall) * result.n_positives
    kept = np.arange(1, len(scores) + 1)
    f1 = 2 * tp / (result.n_positives + kept)
    # a cut can only fall between different scores: take the last rank of each run of equal scores
    last_of_score = np.r_[scores[1:] != scores[:-1], True]
    k = int(np.flatnonzero(last_of_score)[np.argmax(f1[last_of_score])])
    return float(scores[k]), float(tp[k] / kept[k]), float(tp[k] / result.n_positives), float(f1[k])
