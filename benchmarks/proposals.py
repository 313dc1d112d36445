"""Recall of the proposals (issue 12 item 2): `python -m benchmarks proposals [--out DIR] [--limit N]`.

Held-out detection photos: the 10 afw_sample photos (full size) and the 150 WIDER training photos
that core.splits.held_out_names(image ids, 150, "wider_train") holds out (the lead's validation
split). Faces under 30 px (width or height) are not counted. For selective search fast and
quality, "OpenCV" is the raw output as the pipeline used it before issue 12 (OpenCV's order of one
call, clipped, sides >= min_box_side, at most max_proposals) and "filtered" is core.proposals
(face filter, near-duplicate merge, canonical order); the SSD proposal net is added when
<model>/proposals/ exists. Recall at IoU > 0.5 and > 0.7 versus the number of proposals (the first
N of each photo), by face size (benchmarks.metrics.proposals), a merge_iou sweep, seconds per
photo; writes report.md, recall.png and recall.json under --out (runs/bench/proposals). Raw
selective-search boxes are cached under --out/cache, so a rerun only redoes the analysis.

`--after-irp N` adds, on the first N photos, the recall of every box the whole pipeline's net saw (fast
selective search, then the boxes IRP added at the model's threshold; detector.last_evaluated_boxes).

`--prior-coverage training|held-out [--prototxt P]` prints instead the recall of an SSD net's prior
boxes themselves (every prior, scaled to the photo): the ceiling of the faces that its MultiBoxLoss can
match at overlap 0.5 without a regressed offset. The prior design is chosen on `training` (the WIDER
train-fit photos the SSD trains on), not on the held-out photos.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.metrics.proposals import proposal_recall
from benchmarks.report import write_report
from core.config import REPO_ROOT, HyperFaceConfig, load_config
from core.proposals import SS_MODES, finish_proposals, raw_selective_search
from core.splits import held_out_names
from core.config import DATA_ROOT  # noqa: E402

log = logging.getLogger("benchmarks.proposals")
DATA = DATA_ROOT
COUNTS = (10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000)
WIDER_HELD_OUT = 150
MERGE_SWEEP = (1.0, 0.97, 0.95, 0.93, 0.9, 0.85, 0.8)


def held_out_photos(data: Path, cfg: HyperFaceConfig) -> list[tuple[str, Path, np.ndarray]]:
    """(image id, path, face boxes (m, 4)) of the held-out detection photos: afw_sample, then the
    150 held-out WIDER training photos (in the order of the annotation file)."""
    from benchmarks.datasets.afw import load_afw
    from data_prep.readers.wider import read_wider

    photos = [(f"afw/{r.image_id}", r.path, np.array([f.box for f in r.faces]).reshape(-1, 4))
              for r in load_afw(data / "afw_sample")]
    wider = read_wider(data / "wider_train", split="train", config=cfg)
    held = held_out_names([r.image_id for r in wider], WIDER_HELD_OUT, "wider_train")
    photos += [(f"wider/{r.image_id}", r.path, np.array([f.box for f in r.faces]).reshape(-1, 4))
               for r in wider if r.image_id in held]
    return photos


def training_photos(data: Path, cfg: HyperFaceConfig) -> list[tuple[str, Path, np.ndarray]]:
    """(image id, path, face boxes) of the WIDER train-fit photos (the SSD's training photos)."""
    from data_prep.readers.wider import read_wider

    return [(f"wider/{r.image_id}", r.path, np.array([f.box for f in r.faces]).reshape(-1, 4))
            for r in read_wider(data / "wider_train", split="train-fit", config=cfg)]


def prior_coverage(prototxt: Path, photos: list[tuple[str, Path, np.ndarray]]) -> dict:
    """proposal_recall of the net's priors (normalised boxes scaled to each photo, all of them)."""
    from pipeline.ssd_decode import prior_boxes

    priors = prior_boxes(prototxt)[0].astype(np.float64)
    props, gts = [], []
    for _, path, gt in photos:
        h, w = _image_size(path)
        props.append(priors * np.array([w, h, w, h], dtype=np.float64))
        gts.append(gt)
    return proposal_recall(props, gts, (len(priors),))


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header (PIL reads no pixels for this)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def legacy_proposals(raw: np.ndarray, width: int, height: int, cfg: HyperFaceConfig, mode: str) -> np.ndarray:
    """The pipeline's proposals before issue 12: OpenCV's order, clipped, sides >= min_box_side, capped."""
    ss = cfg.selective_search
    boxes = np.asarray(raw, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= ss.min_box_side) & ((boxes[:, 3] - boxes[:, 1]) >= ss.min_box_side)
    return boxes[keep][:ss.max_proposals if mode == "fast" else ss.max_proposals_quality]


def _raw(photo_id: str, path: Path, image: np.ndarray, cfg: HyperFaceConfig, mode: str, cache: Path):
    """Raw OpenCV boxes and the seconds they took (cached: the time of the run that made them)."""
    ss = cfg.selective_search
    raw_settings = f"{ss.max_side}" + (f"-k{ss.fast_base_k}-{ss.fast_inc_k}" if mode == "fast" else "")
    f = cache / f"{mode}-{raw_settings}" / (photo_id.replace("/", "__") + ".npz")
    if f.is_file():
        z = np.load(f)
        return z["boxes"], float(z["seconds"])
    t = time.perf_counter()
    boxes = raw_selective_search(image, cfg.selective_search, mode)
    seconds = time.perf_counter() - t
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, boxes=boxes, seconds=seconds)
    return boxes, seconds


def run(out: Path, cfg: HyperFaceConfig, model: Path, modes=SS_MODES, limit: int | None = None,
        quality_limit: int | None = None, ssd_nms: tuple[float, ...] = (), after_irp: int = 0) -> dict:
    """after_irp: on the first N photos also run the whole pipeline (fast selective search, the model's
    threshold) and score every box the net saw: the proposals, then those IRP added."""
    photos = held_out_photos(DATA, cfg)[:limit]
    methods: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, list[float]] = {}
    sweep: dict[str, dict[float, list[np.ndarray]]] = {}
    gts = [gt for _, _, gt in photos]
    subsets: dict[str, list[int]] = {}
    for mode in modes:
        n = len(photos) if mode == "fast" or quality_limit is None else min(quality_limit, len(photos))
        before, after = f"SS {mode}, OpenCV", f"SS {mode}, filtered"
        methods[before], methods[after] = [], []
        seconds[before], seconds[after] = [], []
        sweep[mode] = {m: [] for m in MERGE_SWEEP}
        subsets[before] = subsets[after] = list(range(n))
        for k, (photo_id, path, _) in enumerate(photos[:n]):
            image = cv2.imread(str(path))
            h, w = image.shape[:2]
            raw, t_raw = _raw(photo_id, path, image, cfg, mode, out / "cache")
            methods[before].append(legacy_proposals(raw, w, h, cfg, mode))
            t = time.perf_counter()
            methods[after].append(finish_proposals(raw, w, h, cfg.selective_search, mode))
            seconds[before].append(t_raw)
            seconds[after].append(t_raw + time.perf_counter() - t)
            for m in MERGE_SWEEP:
                sweep[mode][m].append(finish_proposals(raw, w, h, dataclasses.replace(cfg.selective_search, merge_iou=m), mode))
            if k % 20 == 0:
                log.info("%s: %d / %d photos", mode, k + 1, len(photos))
    ssd_dir = Path(model) / "proposals"
    ssd_note = None
    if ssd_dir.is_dir():
        from pipeline.model_store import load_model
        from pipeline.proposals import SSDProposer

        proposer = SSDProposer(load_model(ssd_dir), "onnxruntime", cfg.input, cfg.test)
        names = {nms: "SSD net" if nms == cfg.test.ssd_nms_iou else f"SSD net, NMS {nms:g}"
                 for nms in dict.fromkeys([cfg.test.ssd_nms_iou, *ssd_nms])}
        for name in names.values():
            methods[name], seconds[name], subsets[name] = [], [], list(range(len(photos)))
        for photo_id, path, _ in photos:
            image = cv2.imread(str(path))
            t = time.perf_counter()
            out_blobs = proposer.forward(image)
            t_net = time.perf_counter() - t
            for nms, name in names.items():
                t = time.perf_counter()
                methods[name].append(proposer.decode(out_blobs, image.shape[1], image.shape[0], nms))
                seconds[name].append(t_net + time.perf_counter() - t)
    else:
        ssd_note = f"SSD proposal net: skipped, no model folder {ssd_dir}"
        print(ssd_note)

    if after_irp:
        from pipeline import HyperFace

        hf = HyperFace(model, config=cfg, proposals="fast")
        before, after = f"SS fast, filtered (first {after_irp})", f"SS fast + IRP at the model's threshold (first {after_irp})"
        methods[before], methods[after], seconds[before], seconds[after] = [], [], [], []
        subsets[before] = subsets[after] = list(range(min(after_irp, len(photos))))
        for photo_id, path, _ in photos[:after_irp]:
            hf.detect(cv2.imread(str(path)))
            n = int(hf.last_timings["num_proposals"])
            methods[before].append(hf.last_evaluated_boxes[:n])
            methods[after].append(hf.last_evaluated_boxes)
            seconds[before].append(hf.last_timings["proposals"])
            seconds[after].append(hf.last_timings["total"])
    results = {name: proposal_recall(props, [gts[i] for i in subsets[name]], COUNTS) for name, props in methods.items()}
    afw = [i for i, (pid, _, _) in enumerate(photos) if pid.startswith("afw/")]
    results_afw = {name: proposal_recall([props[i] for i in afw if i < len(props)], [gts[i] for i in afw if i < len(props)],
                                         COUNTS) for name, props in methods.items()}
    tables, summary = {}, {}
    bins = results[next(iter(results))]["bins"]
    n_faces = results[next(iter(results))]["n_faces"]
    for t in (0.5, 0.7):
        rows = {}
        for name, r in results.items():
            for b in bins:
                rows[f"{name} / {b} ({r['n_faces'][b]} faces)"] = {str(c): r["recall"][t][b][k] for k, c in enumerate(COUNTS)}
        tables[f"Recall at IoU > {t} vs proposals per photo (first N)"] = rows
    for name, props in methods.items():
        n = np.array([len(p) for p in props])
        summary[name] = {"photos": len(props), "faces": results[name]["n_faces"]["all"], "median proposals": float(np.median(n)), "mean proposals": float(n.mean()),
                         "recall 0.5 (all)": results[name]["recall"][0.5]["all"][-1],
                         "recall 0.7 (all)": results[name]["recall"][0.7]["all"][-1],
                         "afw recall 0.5": results_afw[name]["recall"][0.5]["all"][-1],
                         "afw recall 0.7": results_afw[name]["recall"][0.7]["all"][-1],
                         "s/photo (mean)": float(np.mean(seconds[name])),
                         "afw s/photo": float(np.mean([seconds[name][i] for i in afw if i < len(props)])) if afw else float("nan")}
    tables = {"Summary (all proposals of each photo)": summary, **tables}
    sweep_rows = {}
    for mode, by_merge in sweep.items():
        for m, props in by_merge.items():
            r = proposal_recall(props, gts[:len(props)], (max(COUNTS),))
            sweep_rows[f"{mode}, merge_iou {m:g}"] = {
                "mean proposals": float(np.mean([len(p) for p in props])),
                "recall 0.5": r["recall"][0.5]["all"][0], "recall 0.7": r["recall"][0.7]["all"][0]}
    tables["merge_iou sweep (filtered, all proposals)"] = sweep_rows
    figure = plot_recall(results, out / "recall.png")
    ss = cfg.selective_search
    settings = {"photos": f"{len(photos)} ({len(afw)} afw_sample full size, {len(photos) - len(afw)} WIDER train held out)"
                          + (f"; quality mode on the first {quality_limit}" if quality_limit and "quality" in modes else ""),
                "faces counted": n_faces["all"], "face sizes": "sqrt(w*h); faces with w or h < 30 px not counted",
                "selective_search": dataclasses.asdict(ss)}
    notes = [ssd_note] if ssd_note else []
    notes.append("Seconds: OpenCV selective search (longer side <= max_side) per photo, plus filtering for 'filtered'; "
                 "measured on a shared 2-core machine (cached boxes keep the time of the run that made them).")
    write_report(out / "report.md", "Proposal recall on the held-out detection photos (issue 12 item 2)",
                 {"SSD model": str(ssd_dir) if ssd_dir.is_dir() else "none"}, settings, tables, [figure], notes)
    (out / "recall.json").write_text(json.dumps({"all": results, "afw": results_afw, "summary": summary,
                                                  "merge_sweep": sweep_rows}, indent=1, default=str) + "\n")
    return {"summary": summary, "merge_sweep": sweep_rows, "results": results}


def plot_recall(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = results[next(iter(results))]["bins"]
    fig, axes = plt.subplots(2, len(bins), figsize=(4 * len(bins), 7), sharex=True, sharey=True)
    for row, t in enumerate((0.5, 0.7)):
        for col, b in enumerate(bins):
            ax = axes[row, col]
            for name, r in results.items():
                ax.plot(r["counts"], r["recall"][t][b], marker=".", label=name)
            ax.set_xscale("log")
            ax.set(ylim=(0, 1.01), title=f"IoU > {t}, faces {b} px ({r['n_faces'][b]})")
            ax.grid(True)
            if row == 1:
                ax.set_xlabel("proposals per photo (first N)")
            if col == 0:
                ax.set_ylabel("recall")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks proposals", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench" / "proposals"))
    p.add_argument("--model", default=str(REPO_ROOT / "models" / "hyperface"), help="its proposals/ folder is the SSD net")
    p.add_argument("--modes", nargs="*", default=list(SS_MODES), choices=SS_MODES)
    p.add_argument("--limit", type=int, default=None, help="only the first N photos")
    p.add_argument("--quality-limit", type=int, default=None, help="quality mode (slow) on the first N photos only")
    p.add_argument("--config", default=None)
    p.add_argument("--ssd-nms", type=float, nargs="*", default=[],
                   help="also score the SSD net with these NMS IoUs (test.ssd_nms_iou is its own row)")
    p.add_argument("--after-irp", type=int, default=0, metavar="N",
                   help="also the recall of selective search after IRP (whole pipeline) on the first N photos")
    p.add_argument("--prior-coverage", choices=("training", "held-out"), default=None,
                   help="print the recall of the SSD net's priors on these photos instead")
    p.add_argument("--prototxt", default=str(REPO_ROOT / "prototxt" / "fast_hyperface_ssd" / "deploy.prototxt"),
                   help="SSD deploy net of --prior-coverage")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.prior_coverage:
        cfg = load_config(args.config)
        photos = (training_photos if args.prior_coverage == "training" else held_out_photos)(DATA, cfg)[:args.limit]
        r = prior_coverage(Path(args.prototxt), photos)
        for t in (0.5, 0.7):
            print(f"priors of {args.prototxt}, {len(photos)} {args.prior_coverage} photos, IoU > {t}: "
                  + ", ".join(f"{b} {r['recall'][t][b][0]:.3f} ({r['n_faces'][b]} faces)" for b in r["bins"]))
        return 0
    res = run(Path(args.out), load_config(args.config), Path(args.model), args.modes, args.limit, args.quality_limit,
              tuple(args.ssd_nms), args.after_irp)
    for name, row in res["summary"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    for name, row in res["merge_sweep"].items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
