"""Scoring saved results against each benchmark's ground truth, and the per-run report.

Each `score_*` takes ground truth and one run's results (image_id -> list[Face]) and returns a
dict with "metrics" (name -> number) and "curves" (for plots); `score_runs` loads a dataset,
scores one or more runs (several models on one plot), draws the PNGs and writes report.md.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from benchmarks import plots, results_io
from benchmarks.datasets import afw, fddb, gender, ibug, pascal
from benchmarks.metrics.detection import fp_per_image_at_recall, calibrate_boxes, face_eval_ap, match_boxes
from benchmarks.metrics.fddb import ellipse_box_iou, fddb_roc, write_roc_files
from benchmarks.metrics.gender import gender_accuracy
from benchmarks.metrics.landmarks import (AFW6_FROM_AFLW21, angle_error_deg, balanced_yaw_subset, ced, mean_or_nan,
                                          nme, nme_per_yaw_group, normaliser)
from benchmarks.report import write_report
from core.config import HyperFaceConfig
from core.face import Face

log = logging.getLogger(__name__)

POSE_NAMES = ("roll", "pitch", "yaw")
DETECTION_SETS = ("afw", "pascal", "fddb", "wider-heldout")
DATASETS = ("afw", "pascal", "fddb", "wider-heldout", "aflw", "aflw2000", "ibug", "celeba", "lfwa", "utkface")


# ----------------------------------------------------------------------------- ground truth
def load_ground_truth(dataset: str, data_dir: str | Path, cfg: HyperFaceConfig, limit: int | None = None,
                      skipped: list | None = None):
    """(gt object, [(image_id, image path)] to run detection on) for a dataset name; with `limit`,
    only the first `limit` images (loader order) of both. skipped: a list that collects (path,
    reason) of annotation files left out (AFLW2000-3D's 23-point files), for the report."""
    gt, images = _load_ground_truth(dataset, data_dir, cfg, skipped)
    if limit is None:
        return gt, images
    gt = (gt[0][:limit], gt[1]) if dataset == "pascal" else gt[:limit]
    return gt, images[:limit]


def _load_ground_truth(dataset: str, data_dir: str | Path, cfg: HyperFaceConfig, skipped: list | None = None):
    if dataset == "afw":
        recs = afw.load_afw(data_dir)
        return recs, [(r.image_id, r.path) for r in recs]
    if dataset == "pascal":
        recs, ign = pascal.load_pascal_faces(data_dir)
        return (recs, ign), [(r.image_id, r.path) for r in recs]
    if dataset == "wider-heldout":
        # the WIDER training photos no training batch sees (data_prep reader, split train-heldout)
        from data_prep.readers import read_dataset
        recs = read_dataset("wider", data_dir, split="train-heldout", config=cfg)
        return recs, [(r.image_id, r.path) for r in recs]
    if dataset == "fddb":
        imgs = fddb.load_fddb(data_dir)
        return imgs, [(i.image_id, i.path) for i in imgs]
    if dataset in ("aflw", "aflw2000"):
        # data_prep's readers: the faces and face boxes training sees (aflw: the crop, test split only)
        from data_prep.readers import read_dataset
        recs = read_dataset("aflw_crops" if dataset == "aflw" else "aflw2000", data_dir, split="test", config=cfg,
                            skipped=skipped)
        if dataset == "aflw":
            b = cfg.benchmark
            yaws = np.array([r.faces[0].pose_deg[2] for r in recs])
            recs = [recs[i] for i in balanced_yaw_subset(yaws, b.yaw_group_edges, b.aflw_subset_size, b.seed)]
        return recs, [(r.image_id, r.path) for r in recs]
    if dataset == "ibug":
        recs = ibug.load_ibug(data_dir)
        return recs, [(r.image_id, r.path) for r in recs]
    if dataset in ("celeba", "lfwa", "utkface"):
        samples = (gender.load_utkface(data_dir, config=cfg) if dataset == "utkface"
                   else {"celeba": gender.load_celeba, "lfwa": gender.load_lfwa}[dataset](data_dir))
        return samples, [(s.image_id, s.path) for s in samples]
    raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")


def skipped_note(skipped: list) -> str:
    """One report line: how many annotation files were left out, and which, with the reason."""
    shown = "; ".join(f"{Path(p).name}: {reason}" for p, reason in skipped[:10])
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return f"Skipped {len(skipped)} annotation file(s) that do not fit the protocol: {shown}{more}."


# ----------------------------------------------------------------------------- scorers
def _dets(results: Mapping[str, list[Face]]):
    return {k: results_io.boxes_scores(v) for k, v in results.items()}


def score_detection_ap(gt_boxes: Mapping[str, np.ndarray], results: Mapping[str, list[Face]], cfg: HyperFaceConfig,
                       gt_ignore: Mapping[str, np.ndarray] | None = None) -> dict:
    """face-eval AP (and AP after box-style calibration) of one run."""
    b = cfg.benchmark
    dets = _dets(results)
    r = face_eval_ap(dets, gt_boxes, b.face_eval_min_gt_side, b.eval_iou, gt_ignore)
    cal, transform = calibrate_boxes(dets, gt_boxes, b.face_eval_min_gt_side, b.eval_iou, b.face_eval_calibration_iters)
    rc = face_eval_ap(cal, gt_boxes, b.face_eval_min_gt_side, b.eval_iou, gt_ignore)
    n_images = max(len(gt_boxes), 1)
    return {"metrics": {"AP": r.ap, "AP_calibrated": rc.ap, "TP": r.n_tp, "FP": r.n_fp, "faces": r.n_positives,
                        "recall": r.n_tp / max(r.n_positives, 1), "FP_per_image": r.n_fp / n_images,
                        "FP_per_image_at_90_recall": fp_per_image_at_recall(r, n_images, 0.9)},
            "curves": {"pr": (r.recall, r.precision, r.ap), "pr_calibrated": (rc.recall, rc.precision, rc.ap)},
            "calibration": transform}


def matched_faces(records, results: Mapping[str, list[Face]], iou_threshold: float) -> list[tuple[object, Face | None]]:
    """(FaceRecord, matched Face or None) for every annotated face."""
    out = []
    for rec in records:
        faces = results.get(rec.image_id, [])
        boxes, _ = results_io.boxes_scores(faces)
        gtb = np.stack([f.box for f in rec.faces]) if rec.faces else np.zeros((0, 4))
        idx = match_boxes(gtb, boxes, iou_threshold)
        out += [(f, faces[j] if j >= 0 else None) for f, j in zip(rec.faces, idx)]
    return out


def landmark_errors(pairs, point_index: np.ndarray | None, kind: str, use68: bool = False) -> np.ndarray:
    """Per-face NME (NaN for a missed face) for (FaceRecord, Face|None) pairs. The eye-based normalisers
    are measured on the 68 ground-truth points (iBUG sets), whichever points are scored."""
    gts, preds, boxes, norm68 = [], [], [], []
    for rec, face in pairs:
        g = rec.landmarks68 if use68 else rec.landmarks
        p = getattr(face, "landmarks68", None) if (use68 and face is not None) else (face.landmarks if face is not None else None)
        if point_index is not None:
            g = g[point_index]
            p = p[point_index] if p is not None else None
        gts.append(g)
        preds.append(np.full_like(g, np.nan) if p is None else np.asarray(p, dtype=np.float64).reshape(g.shape))
        boxes.append(rec.box)
        norm68.append(rec.landmarks68)
    if not gts:
        return np.zeros(0)
    gts, preds = np.stack(gts), np.stack(preds)
    return nme(preds, gts, normaliser(kind, gts if kind == "box" else np.stack(norm68), np.stack(boxes)))


def pose_errors(pairs) -> np.ndarray:
    """(F, 3) absolute roll/pitch/yaw errors in degrees; NaN for a missed face or unknown angle."""
    out = np.full((len(pairs), 3), np.nan)
    for i, (rec, face) in enumerate(pairs):
        if face is not None:
            out[i] = angle_error_deg(face.pose_deg, rec.pose_deg)
    return out


def score_landmarks_pose(records, results, cfg: HyperFaceConfig, dataset: str) -> dict:
    b = cfg.benchmark
    pairs = matched_faces(records, results, b.eval_iou)
    metrics, curves = {"faces": len(pairs), "detected": sum(f is not None for _, f in pairs)}, {}
    t_lm = np.linspace(0, b.ced_max_landmarks, 61)
    t_pose = np.linspace(0, b.ced_max_pose_deg, 61)
    if dataset == "ibug":
        if any(f is not None and f.landmarks68 is not None for _, f in pairs):
            err = landmark_errors(pairs, None, "inter_pupil", use68=True)
            metrics["NME_inter_pupil"] = mean_or_nan(err)
            curves["ced_landmarks"] = (t_lm, ced(err, t_lm))
        else:
            log.info("ibug: the model gives no iBUG-68 points (no 68-point head, prototxt/hyperface_ibug68): "
                     "scored on the 19 AFLW-21 points mapped from the 68 (NME19_*)")
        # the 21-point head on the 19 AFLW points the 68 give (the reader's `landmarks`, ears unlabelled)
        for kind in ("inter_ocular", "inter_pupil"):
            err = landmark_errors(pairs, None, kind)
            metrics[f"NME19_{kind}"] = mean_or_nan(err)
            if kind == "inter_ocular":
                curves["ced_landmarks19"] = (t_lm, ced(err, t_lm))
        return {"metrics": metrics, "curves": curves}
    err = landmark_errors(pairs, AFW6_FROM_AFLW21 if dataset == "afw" else None, "box")
    metrics["NME_box"] = mean_or_nan(err)
    curves["ced_landmarks"] = (t_lm, ced(err, t_lm))
    perr = pose_errors(pairs)
    for k, name in enumerate(POSE_NAMES):
        known = ~np.isnan(np.array([r.pose_deg[k] for r, _ in pairs]))
        if known.any():
            metrics[f"MAE_{name}_deg"] = mean_or_nan(perr[known, k])
            curves[f"ced_{name}"] = (t_pose, ced(perr[known, k], t_pose))
    if dataset == "aflw":
        yaws = np.array([r.pose_deg[2] for r, _ in pairs])
        for g, v in nme_per_yaw_group(err, yaws, b.yaw_group_edges).items():
            metrics[f"NME_yaw_{g}"] = v
    return {"metrics": metrics, "curves": curves}


def score_fddb(images, results, cfg: HyperFaceConfig, out_dir: Path | None = None, prefix: str = "") -> dict:
    ious, scores = [], []
    for im in images:
        boxes, s = results_io.boxes_scores(results.get(im.image_id, []))
        ious.append(ellipse_box_iou(im.ellipses, boxes))
        scores.append(s)
    roc = fddb_roc(ious, scores, cfg.benchmark.eval_iou)
    if out_dir is not None:
        write_roc_files(roc, out_dir, prefix)
    fp_at = cfg.benchmark.fddb_fp_at
    return {"metrics": {f"TPR@{fp_at}FP_discrete": roc.tpr_at(fp_at), f"TPR@{fp_at}FP_continuous": roc.tpr_at(fp_at, True),
                        "faces": roc.n_faces},
            "curves": {"roc_discrete": (roc.fp, roc.tpr_discrete), "roc_continuous": (roc.fp, roc.tpr_continuous)}}


def score_gender(samples, results) -> dict:
    pred = []
    for s in samples:
        faces = results.get(s.image_id, [])
        pred.append(max(faces, key=lambda f: f.score).gender if faces else "")
    return {"metrics": gender_accuracy(np.array(pred, dtype=object), np.array([s.gender for s in samples], dtype=object)),
            "curves": {}}


def score_one(dataset: str, gt, results, cfg: HyperFaceConfig, out_dir: Path | None = None, prefix: str = "") -> dict:
    """All metrics of one run on one dataset (merged dict of metrics and curves)."""
    if dataset == "afw":
        det = score_detection_ap({r.image_id: np.stack([f.box for f in r.faces]) for r in gt}, results, cfg)
        lp = score_landmarks_pose(gt, results, cfg, "afw")
        return {"metrics": {**det["metrics"], **lp["metrics"]}, "curves": {**det["curves"], **lp["curves"]}}
    if dataset == "pascal":
        recs, ign = gt
        boxes = {r.image_id: (np.stack([f.box for f in r.faces]) if r.faces else np.zeros((0, 4))) for r in recs}
        return score_detection_ap(boxes, results, cfg, ign)
    if dataset == "wider-heldout":  # boxes only; faces under face_eval_min_gt_side are ignored by face-eval
        boxes = {r.image_id: (np.stack([f.box for f in r.faces]) if r.faces else np.zeros((0, 4))) for r in gt}
        return score_detection_ap(boxes, results, cfg)
    if dataset == "fddb":
        return score_fddb(gt, results, cfg, out_dir, prefix)
    if dataset in ("aflw", "aflw2000", "ibug"):
        return score_landmarks_pose(gt, results, cfg, dataset)
    return score_gender(gt, results)


# ----------------------------------------------------------------------------- report
def score_runs(dataset: str, data_dir: str | Path, runs: Mapping[str, str | Path], out_dir: str | Path,
               cfg: HyperFaceConfig, settings: Mapping[str, object] | None = None,
               limit: int | None = None) -> dict[str, dict]:
    """Score each run (label -> results folder), draw the curves of all runs together, write
    out_dir/report.md. With `limit`, only the first `limit` images are scored. Returns label -> metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: list = []
    gt, _ = load_ground_truth(dataset, data_dir, cfg, limit, skipped)
    notes = [skipped_note(skipped)] if skipped else []
    scored = {}
    for label, rdir in runs.items():
        prefix = "" if len(runs) == 1 else f"{label}-"
        scored[label] = score_one(dataset, gt, results_io.read_results(rdir), cfg, out_dir, prefix)
        log.info("%s %s: %s", dataset, label, scored[label]["metrics"])
    figures = []
    first = next(iter(scored.values()))["curves"]
    for key in first:
        curves = [(lbl, *s["curves"][key]) for lbl, s in scored.items() if key in s["curves"]]
        png = out_dir / f"{dataset}_{key}.png"
        if key.startswith("pr"):
            figures.append(plots.plot_pr(curves, png, f"{dataset.upper()} {key.replace('_', ' ')}"))
        elif key.startswith("roc"):
            figures.append(plots.plot_roc(curves, png, f"{dataset.upper()} {key.replace('_', ' ')} ROC", cfg.benchmark.fddb_fp_at * 2))
        else:
            xlabel = "Pose error (degrees)" if key[4:] in POSE_NAMES else "Normalised mean error"
            figures.append(plots.plot_ced(curves, png, f"{dataset.upper()} CED {key[4:]}", xlabel))
    write_report(out_dir / "report.md", f"HyperFace benchmark: {dataset.upper()}", {k: str(v) for k, v in runs.items()},
                 {"data": str(data_dir), **(settings or {}), **{f"benchmark.{k}": v for k, v in vars(cfg.benchmark).items()}},
                 {"Results": {lbl: s["metrics"] for lbl, s in scored.items()}}, figures, notes)
    return {lbl: s["metrics"] for lbl, s in scored.items()}
