"""Command line:
  python -m benchmarks <dataset> --data DIR --model DIR --out DIR [--proposals fast|quality|ssd]
                       [--post lnms|nms] [--irp N] [--limit N] [--config YAML]   run detection, then score
  python -m benchmarks score <dataset> --data DIR --results DIR [--results DIR ...] [--label NAME ...] --out DIR
  python -m benchmarks ablation [afw|wider-heldout] --data DIR --model DIR --out DIR [--proposals fast|quality|ssd]
                       [--limit N] [--threshold T]   Section 5.5 ablation (default: AFW, fast and quality SS)
  python -m benchmarks threshold --model DIR --results DIR [--set wider-heldout]   choose + record the default threshold
  python -m benchmarks proposals [--out DIR] [--model DIR] [--limit N]   proposal recall (benchmarks/proposals.py)
  python -m benchmarks baselines [--set NAME[=DIR]] [--methods haar mtcnn] [--model DIR] [--out DIR]   MTCNN/Haar side by side (benchmarks/baselines.py)
Datasets: afw pascal fddb aflw aflw2000 ibug celeba lfwa utkface.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from benchmarks.errors import BenchmarkDataError
from core.config import load_config
from core.errors import HyperFaceError

log = logging.getLogger("benchmarks")


def _parser() -> argparse.ArgumentParser:
    from benchmarks.score import DATASETS
    from pipeline.backends import BACKENDS, DEFAULT_BACKEND

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=DATASETS + ("score", "ablation"))
    p.add_argument("score_dataset", nargs="?", choices=DATASETS,
                   help="with 'score': the dataset to score; with 'ablation': the detection set (default afw)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--model", help="model folder (for running detection)")
    p.add_argument("--out", required=True, help="output folder (results, PNGs, report.md)")
    p.add_argument("--results", action="append", default=[], help="with 'score': a results folder (repeat for several models)")
    p.add_argument("--label", action="append", default=[], help="with 'score': a name for each --results")
    p.add_argument("--proposals", default=None, choices=("fast", "quality", "ssd", "fast+ssd"),
                   help="default: the config's test.proposals")
    p.add_argument("--post", default="lnms", choices=("lnms", "nms"))
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS, help="default: the fastest installed")
    p.add_argument("--irp", type=int, default=None, help="IRP iterations T (default: config test.irp_iterations)")
    p.add_argument("--threshold", type=float, default=None,
                   help="detection threshold (default: the model's, chosen on held-out data; else the config's)")
    p.add_argument("--box-style", default="model", choices=("model", "raw"),
                   help="output boxes in the model's recorded box style (default) or as L-NMS fits them to the "
                        "landmarks, with no SSD box fused in (raw: what `benchmarks threshold` calibrates a box style from)")
    p.add_argument("--limit", type=int, default=None, help="detect and score only the first N images (loader order)")
    p.add_argument("--config", default=None, help="config YAML (default config/hyperface.yaml)")
    return p


RUN_SETTINGS = "run_settings.json"


def check_run_settings(results_dir: Path, settings: dict, detector=None) -> None:
    """Record the settings a results folder is made with; a resume with other settings would mix two
    runs' results in one folder, so it stops with one line instead. With `detector`, the settings also
    hold what the pipeline's own folder runs record (pipeline.run_state.run_settings: SHA-1 of the
    weights and of the proposal net's, the model's threshold and box style, the config sections
    detection reads), so new weights, a recalibrated model or a changed default is caught too."""
    import json

    from pipeline.run_state import run_settings, settings_difference
    if detector is not None:
        settings = {**settings, "pipeline": run_settings(detector)}
    path = Path(results_dir) / RUN_SETTINGS
    if path.is_file():
        before = json.loads(path.read_text())
        if "pipeline" in settings and "pipeline" not in before:
            raise BenchmarkDataError(path, "these results were made before results folders recorded the pipeline's "
                                           "settings (weights, threshold, box style, config); use another --out or "
                                           "delete the folder")
        changed = settings_difference(before, settings)
        if changed:
            shown = "; ".join(changed[:4]) + (f"; {len(changed) - 4} more" if len(changed) > 4 else "")
            raise BenchmarkDataError(path, f"these results were made with other settings ({shown}); "
                                           "use another --out or delete the folder")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["threshold"]:  # default detection threshold chosen on held-out results (benchmarks/threshold.py)
        from benchmarks.threshold import main as threshold_main

        return threshold_main(argv[1:])
    if argv[:1] == ["proposals"]:  # proposal recall: its own options (benchmarks/proposals.py)
        from benchmarks.proposals import main as proposals_main

        return proposals_main(argv[1:])
    if argv[:1] == ["baselines"]:  # MTCNN and Haar side by side: its own options (benchmarks/baselines.py)
        from benchmarks.baselines import main as baselines_main

        return baselines_main(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except HyperFaceError as err:   # bad benchmark, data_prep or model files: one line
        log.error("%s", err)
        return 2


def _run(args) -> int:
    from benchmarks.score import load_ground_truth, score_runs

    cfg = load_config(args.config)
    out = Path(args.out)
    if args.dataset == "ablation":
        from benchmarks.ablation import PROPOSALS, run_ablation

        if not args.model:
            raise BenchmarkDataError("--model", "ablation needs a model folder")
        modes = (args.proposals,) if args.proposals else PROPOSALS
        table = run_ablation(args.data, args.model, out, cfg, args.score_dataset or "afw", modes, args.limit, args.threshold)
        for row, cols in table.items():
            print(row, " ".join(f"{k}={100 * v:.2f}" for k, v in cols.items()))
        return 0
    if args.dataset == "score":
        if not args.score_dataset or not args.results:
            raise BenchmarkDataError("score", "usage: python -m benchmarks score <dataset> --data DIR --results DIR --out DIR")
        labels = args.label + [Path(r).name for r in args.results[len(args.label):]]
        metrics = score_runs(args.score_dataset, args.data, dict(zip(labels, args.results)), out, cfg)
    else:
        from benchmarks.run_detection import make_detector, run_detection

        _, images = load_ground_truth(args.dataset, args.data, cfg, args.limit)
        if not args.model or not Path(args.model).is_dir():
            raise BenchmarkDataError(args.model or "--model", "model folder not found (train one or pass --model DIR)")
        irp = cfg.test.irp_iterations if args.irp is None else args.irp
        from pipeline.detector import resolve_proposals
        args.proposals = resolve_proposals(args.proposals, cfg, args.model)  # the settings record the mode used
        rdir = out / "results"
        # raw: the landmark-fitted boxes alone (no SSD box fused in), what a box style is calibrated from
        det_cfg = (dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, ssd_box_weight=0.0))
                   if args.box_style == "raw" else cfg)
        detector = make_detector(args.model, proposals=args.proposals, post=args.post, irp_iterations=irp,
                                 config=det_cfg, backend=args.backend, detection_threshold=args.threshold,
                                 box_style=(0.0, 0.0, 1.0, 1.0) if args.box_style == "raw" else None)
        check_run_settings(rdir, {"model": str(Path(args.model).resolve()), "proposals": args.proposals, "post": args.post,
                                  "irp_iterations": irp, "detection_threshold": args.threshold, "box_style": args.box_style,
                                  "config": args.config}, detector)
        run_detection(images, detector, rdir)
        settings = {"model": args.model, "proposals": args.proposals, "post": args.post, "irp_iterations": irp,
                    "detection_threshold": args.threshold if args.threshold is not None else "model default",
                    "box_style": args.box_style,
                    **({"limit": args.limit} if args.limit is not None else {})}
        metrics = score_runs(args.dataset, args.data, {Path(args.model).name: rdir}, out, cfg, settings, args.limit)
    for label, m in metrics.items():
        print(label, " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    print(f"report: {out / 'report.md'}")
    return 0
