"""Choose a model's default detection threshold and output box style on held-out photos and record
them in its model.json.

  python -m benchmarks threshold --model DIR --results DIR [--set wider-heldout] [--data DIR] [--limit N]
  python -m benchmarks threshold --model DIR --results DIR --check --skip N --limit M   (images N..M)

`--results` holds the pipeline's results on the held-out set, run at a threshold at or below any
candidate and with raw boxes (`python -m benchmarks wider-heldout ... --threshold 0.3 --box-style raw`,
as `make calibrate-threshold` runs it), so the box style found is the whole style, not a correction of
the one the model already had. The
box style is face-eval's box-style calibration (mean centre shift and scale from matched detections to
the faces, 3 rounds): the landmark-fitted boxes of L-NMS follow the AFLW crops' box, wider than a
WIDER/AFW face box. The threshold is the score where face-eval F1 (IoU 0.5, faces under 30 px ignored)
of the styled boxes is highest. Both go to model.json (`box_style`, `detection_threshold`, with the set,
AP, F1, precision and recall), and the pipeline applies them unless a caller passes other values.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from benchmarks import results_io
from benchmarks.metrics.detection import best_f1_threshold, calibrate_boxes, face_eval_ap
from core.config import DATA_ROOT, load_config
from core.errors import HyperFaceError
from core.model_store import record_in_model

log = logging.getLogger(__name__)
# rounds of face-eval's box-style calibration for the recorded box style (converged after ~3 here)
BOX_STYLE_ITERATIONS = 3


def _heldout_detections(dataset: str, data_dir: Path, results_dir: Path, cfg, limit: int | None, skip: int,
                        styled_ok: bool = False):
    """(face boxes, detections) of images skip..limit of the set (loader order); detections only of
    those images, from results made with raw boxes (or, with styled_ok, with the model's box style)."""
    from benchmarks.score import load_ground_truth
    gt, _ = load_ground_truth(dataset, data_dir, cfg, limit)
    records = (gt[0] if dataset == "pascal" else gt)[skip:]
    boxes = {r.image_id: (np.stack([f.box for f in r.faces]) if r.faces else np.zeros((0, 4))) for r in records}
    settings_path = Path(results_dir) / "run_settings.json"
    if settings_path.is_file():
        import json
        used = json.loads(settings_path.read_text()).get("box_style")
        if used != "raw" and not (styled_ok and used == "model"):
            raise HyperFaceError(results_dir, f"made with box style {used!r}; a box style is calibrated from raw "
                                              "boxes (run the benchmark with --box-style raw)")
    results = results_io.read_results(results_dir)
    missing = sorted(set(boxes) - set(results))
    if missing:   # scored as photos without detections, as face-eval does
        log.warning("%s: no results for %d of the %d images (first: %s)", results_dir, len(missing), len(boxes), missing[0])
    empty = (np.zeros((0, 4)), np.zeros(0))
    return boxes, {k: results_io.boxes_scores(results[k]) if k in results else empty for k in boxes}


def proposal_weights_sha1(model_dir: Path | str | None) -> str | None:
    """weights_sha1 of a model folder's Fast-HyperFace proposal net (proposals/model.json), if it has one:
    a threshold and box style are chosen with one proposal net and hold for that one."""
    path = Path(model_dir) / "proposals" / "model.json" if model_dir else None
    return json.loads(path.read_text()).get("weights_sha1") if path and path.is_file() else None


def choose_threshold(dataset: str, data_dir: Path, results_dir: Path, cfg, limit: int | None = None,
                     model_dir: Path | None = None) -> dict:
    boxes, dets = _heldout_detections(dataset, data_dir, results_dir, cfg, limit, 0)
    b = cfg.benchmark
    raw = face_eval_ap(dets, boxes, b.face_eval_min_gt_side, b.eval_iou)
    # the box style first (face-eval's calibration, BOX_STYLE_ITERATIONS rounds), then the threshold on styled boxes
    styled, style = calibrate_boxes(dets, boxes, b.face_eval_min_gt_side, b.eval_iou, BOX_STYLE_ITERATIONS)
    r = face_eval_ap(styled, boxes, b.face_eval_min_gt_side, b.eval_iou)
    thr, precision, recall, f1 = best_f1_threshold(r)
    settings_path = Path(results_dir) / "run_settings.json"
    run = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    return {"detection_threshold": round(thr, 4), "box_style": [round(float(v), 4) for v in style],
            "chosen_on": dataset, "proposals": run.get("proposals"),
            **({"proposal_weights_sha1": proposal_weights_sha1(run.get("model") or model_dir)}
               if "ssd" in str(run.get("proposals")) else {}),
            "images": len(boxes), "faces": r.n_positives,
            "AP_raw": round(raw.ap, 4), "AP_styled": round(r.ap, 4),
            "f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
            "results_min_score": round(float(min(r.scores)) if len(r.scores) else float("nan"), 4)}


def check_choice(dataset: str, data_dir: Path, results_dir: Path, cfg, style, threshold: float,
                 limit: int | None, skip: int) -> dict:
    """A recorded box style and threshold on other held-out images (skip..limit): face-eval AP of the
    styled boxes, and precision / recall / F1 of the detections scored >= threshold. Results made with
    the model's box style (`--box-style model`: the pipeline's own boxes, with the Fast-HyperFace box
    fused in) are scored as they are; raw ones are styled here."""
    from pipeline.postprocess import restyle_boxes
    boxes, dets = _heldout_detections(dataset, data_dir, results_dir, cfg, limit, skip, styled_ok=True)
    b = cfg.benchmark
    settings_path = Path(results_dir) / "run_settings.json"
    raw = not settings_path.is_file() or json.loads(settings_path.read_text()).get("box_style") == "raw"
    styled = {k: (restyle_boxes(d, style) if len(d) and raw else d, s) for k, (d, s) in dets.items()}
    r = face_eval_ap(styled, boxes, b.face_eval_min_gt_side, b.eval_iou)
    kept = {k: (d[s >= threshold], s[s >= threshold]) for k, (d, s) in styled.items()}
    at = face_eval_ap(kept, boxes, b.face_eval_min_gt_side, b.eval_iou)
    found, called = at.n_tp, at.n_tp + at.n_fp
    precision = found / called if called else 0.0
    recall = found / r.n_positives if r.n_positives else 0.0
    return {"images": len(boxes), "faces": r.n_positives, "AP_styled": round(r.ap, 4), "threshold": threshold,
            "TP": found, "FP": at.n_fp, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(2 * precision * recall / (precision + recall), 4) if found else 0.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks threshold", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--results", required=True, type=Path)
    p.add_argument("--set", default="wider-heldout")
    p.add_argument("--data", type=Path, default=DATA_ROOT / "wider_train")
    p.add_argument("--config", default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the set (as the run's --limit)")
    p.add_argument("--check", action="store_true",
                   help="record nothing: score the model's recorded box style and threshold on images --skip..--limit")
    p.add_argument("--skip", type=int, default=0, help="with --check: leave out the first N images (those chosen on)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.check:
            from core.model_store import load_model
            meta = load_model(args.model).meta
            if "box_style" not in meta or "detection_threshold" not in meta:
                raise HyperFaceError(args.model, "no recorded box_style and detection_threshold to check")
            checked = check_choice(args.set, args.data, args.results, load_config(args.config), meta["box_style"],
                                   float(meta["detection_threshold"]), args.limit, args.skip)
            print(" ".join(f"{k}={v}" for k, v in checked.items()))
            return 0
        chosen = choose_threshold(args.set, args.data, args.results, load_config(args.config), args.limit, args.model)
        record_in_model(args.model, detection_threshold=chosen["detection_threshold"], box_style=chosen["box_style"],
                        detection_threshold_chosen=chosen)
    except HyperFaceError as err:
        log.error("%s", err)
        return 2
    print(" ".join(f"{k}={v}" for k, v in chosen.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
