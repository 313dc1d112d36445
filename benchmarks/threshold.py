"""Choose a model's default detection threshold and output box style on held-out photos and record
them in its model.json.

  python -m benchmarks threshold --model DIR --results DIR [--set wider-heldout] [--data DIR]

`--results` holds the pipeline's results on the held-out set, run at a threshold at or below any
candidate (e.g. `python -m benchmarks wider-heldout ... --config low_threshold.yaml`). The
box style is face-eval's box-style calibration (mean centre shift and scale from matched detections to
the faces, 3 rounds): the landmark-fitted boxes of L-NMS follow the AFLW crops' box, wider than a
WIDER/AFW face box. The threshold is the score where face-eval F1 (IoU 0.5, faces under 30 px ignored)
of the styled boxes is highest. Both go to model.json (`box_style`, `detection_threshold`, with the set,
AP, F1, precision and recall), and the pipeline applies them unless a caller passes other values.
"""
from __future__ import annotations

import argparse
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


def choose_threshold(dataset: str, data_dir: Path, results_dir: Path, cfg, limit: int | None = None) -> dict:
    from benchmarks.score import load_ground_truth
    gt, _ = load_ground_truth(dataset, data_dir, cfg, limit)
    records = gt[0] if dataset == "pascal" else gt
    boxes = {r.image_id: (np.stack([f.box for f in r.faces]) if r.faces else np.zeros((0, 4))) for r in records}
    results = results_io.read_results(results_dir)
    dets = {k: results_io.boxes_scores(v) for k, v in results.items()}
    b = cfg.benchmark
    raw = face_eval_ap(dets, boxes, b.face_eval_min_gt_side, b.eval_iou)
    # the box style first (face-eval's calibration, BOX_STYLE_ITERATIONS rounds), then the threshold on styled boxes
    styled, style = calibrate_boxes(dets, boxes, b.face_eval_min_gt_side, b.eval_iou, BOX_STYLE_ITERATIONS)
    r = face_eval_ap(styled, boxes, b.face_eval_min_gt_side, b.eval_iou)
    thr, precision, recall, f1 = best_f1_threshold(r)
    return {"detection_threshold": round(thr, 4), "box_style": [round(float(v), 4) for v in style],
            "chosen_on": dataset, "images": len(boxes), "faces": r.n_positives,
            "AP_raw": round(raw.ap, 4), "AP_styled": round(r.ap, 4),
            "f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
            "results_min_score": round(float(min(r.scores)) if len(r.scores) else float("nan"), 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks threshold", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--results", required=True, type=Path)
    p.add_argument("--set", default="wider-heldout")
    p.add_argument("--data", type=Path, default=DATA_ROOT / "wider_train")
    p.add_argument("--config", default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the set (as the run's --limit)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        chosen = choose_threshold(args.set, args.data, args.results, load_config(args.config), args.limit)
        record_in_model(args.model, detection_threshold=chosen["detection_threshold"], box_style=chosen["box_style"],
                        detection_threshold_chosen=chosen)
    except HyperFaceError as err:
        log.error("%s", err)
        return 2
    print(" ".join(f"{k}={v}" for k, v in chosen.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
