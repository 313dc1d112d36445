"""Where the whole pipeline loses held-out faces, and where its false positives come from.

    python benchmarks/miss_analysis.py --model models/hyperface [--proposals ssd|fast|fast+ssd]
           [--set wider-heldout|afw] [--first 31 --last 150] [--data DIR] [--out runs/bench/misses]

Runs the detector (the model's threshold and box style, or --threshold) over the held-out WIDER
training photos (benchmarks.score's "wider-heldout", photos first..last in loader order; 31-150 by
default, since threshold calibration chooses on photos 1-30) or an AFW folder, and sorts every counted face (face-eval:
faces under benchmark.face_eval_min_gt_side ignored) and every false positive by cause
(benchmarks.metrics.misses). Prints a table, by face size too, and writes misses.json under --out.
The answer says what to train next: proposal recall, the score, or L-NMS and the box.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks.metrics.detection import ignore_small_faces, keep_large_detections, min_detection_side
from benchmarks.metrics.misses import FACE_CAUSES, FP_CAUSES, miss_causes
from benchmarks.score import load_ground_truth
from core.config import REPO_ROOT, load_config
from core.config import DATA_ROOT  # noqa: E402

SIZE_EDGES = (30, 60, 120)


def size_bin(face: np.ndarray) -> str:
    side = min(face[2] - face[0] + 1, face[3] - face[1] + 1)
    if side < SIZE_EDGES[1]:
        return "30-60 px"
    return "60-120 px" if side < SIZE_EDGES[2] else "> 120 px"


def analyse(model: Path, data: Path, proposals: str | None, first: int, last: int | None, threshold: float | None,
            config: Path | None = None, dataset: str = "wider-heldout") -> dict:
    from benchmarks.run_detection import make_detector

    cfg = load_config(config)
    gt, images = load_ground_truth(dataset, data, cfg)
    last = len(images) if last is None else last
    gt, images = gt[first - 1:last], images[first - 1:last]
    detector = make_detector(model, proposals=proposals, config=cfg, detection_threshold=threshold)
    test = detector.cfg.test
    min_gt = cfg.benchmark.face_eval_min_gt_side
    face_counts, fp_counts, by_size = Counter(), Counter(), {}
    for rec, (image_id, path) in tqdm(list(zip(gt, images)), desc="miss analysis", unit="img"):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        faces = np.stack([f.box for f in rec.faces]) if rec.faces else np.zeros((0, 4))
        found = detector.detect(image)
        dets = np.array([f.box for f in found]).reshape(-1, 4)
        scores = np.array([f.score for f in found])
        keep = keep_large_detections(dets, min_detection_side(min_gt))
        ignored = ignore_small_faces(faces, min_gt)
        regions = detector.last_regions
        face_causes, fp_causes = miss_causes(faces, ignored, regions.boxes, regions.scores, dets[keep], scores[keep],
                                             test.detection_threshold, cfg.benchmark.eval_iou)
        face_counts.update(face_causes)
        fp_counts.update(fp_causes)
        for face, cause in zip(faces[~ignored], face_causes):
            by_size.setdefault(size_bin(face), Counter())[cause] += 1
    return {"model": str(model), "set": dataset, "proposals": detector.proposals, "photos": f"{first}-{last}",
            "threshold": test.detection_threshold, "faces": sum(face_counts.values()),
            "face_causes": {c: face_counts[c] for c in FACE_CAUSES},
            "face_causes_by_size": {s: {c: by_size[s][c] for c in FACE_CAUSES} for s in sorted(by_size)},
            "false_positives": sum(fp_counts.values()), "fp_causes": {c: fp_counts[c] for c in FP_CAUSES}}


def print_table(result: dict) -> None:
    n = max(result["faces"], 1)
    print(f"{result['model']}  {result['set']} photos {result['photos']}  proposals={result['proposals']}  "
          f"threshold {result['threshold']:.4f}  {result['faces']} counted faces")
    print("| face cause | all | " + " | ".join(result["face_causes_by_size"]) + " |")
    print("|---|---:|" + "---:|" * len(result["face_causes_by_size"]))
    for cause in FACE_CAUSES:
        sizes = " | ".join(str(v[cause]) for v in result["face_causes_by_size"].values())
        print(f"| {cause} | {result['face_causes'][cause]} ({100 * result['face_causes'][cause] / n:.1f} %) | {sizes} |")
    print(f"false positives: {result['false_positives']}  " +
          "  ".join(f"{c}: {v}" for c, v in result["fp_causes"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "hyperface")
    ap.add_argument("--set", choices=("wider-heldout", "afw"), default="wider-heldout")
    ap.add_argument("--data", type=Path, default=None,
                    help="default: ../shared/data/wider_train (wider-heldout) or ../shared/data/afw_sample (afw)")
    ap.add_argument("--proposals", choices=("fast", "quality", "ssd", "fast+ssd"), default=None)
    ap.add_argument("--first", type=int, default=None,
                    help="first photo (1-based, loader order); default 31 for wider-heldout (1-30 chose the threshold), else 1")
    ap.add_argument("--last", type=int, default=None, help="last photo; default 150 for wider-heldout, else all")
    ap.add_argument("--threshold", type=float, default=None, help="default: the model's")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench" / "misses")
    args = ap.parse_args(argv)
    if not args.model.is_dir():
        print(f"{args.model}: model folder not found", file=sys.stderr)
        return 2
    wider = args.set == "wider-heldout"
    data = args.data or DATA_ROOT / ("wider_train" if wider else "afw_sample")
    first = args.first or (31 if wider else 1)
    last = args.last or (150 if wider else None)
    result = analyse(args.model, data, args.proposals, first, last, args.threshold, args.config, args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"misses_{args.set}_{result['proposals']}_{result['photos']}.json"
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"written: {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
