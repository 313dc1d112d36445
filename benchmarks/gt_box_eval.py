"""Held-out evaluation on GIVEN face boxes (no detection), plus the one held-out report.

Each held-out face is cut from its image exactly as the pipeline cuts a region
(pipeline.geometry.make_batch), forwarded in batches through the model's deploy net with the
pipeline's backend (pipeline.backends.DEFAULT_BACKEND: the fastest installed, OpenVINO, ONNX
Runtime or OpenCV DNN) and decoded by the pipeline (pipeline.postprocess.decode_outputs into its Regions: eq. 8
landmarks in image pixels, pose in degrees). The predictions are then scored with the benchmark
metrics (benchmarks.metrics.*; this module only picks them per set and writes the report).

Face boxes (the ones data_prep trains with, read by the same readers, split="test"):
  aflw_crops  the whole 120x120 crop (data_prep.readers.aflw_crops), core/splits.py test split;
  helen       the tight box of the 68 points (data_prep.readers.pts300w), testset;
  utkface     the central 80 % of the chip (data_prep.readers.utkface), test split;
  aflw2000    the tight box of the visible points (data_prep.readers.aflw2000), the 16 samples;
  afw         AFW's annotated boxes (benchmarks.datasets.afw), the 10 sample images;
  fddb        the bounding box of each FDDB ellipse (benchmarks.datasets.fddb);
  wider_val   WIDER val boxes, invalid and tiny (< sampling.min_face_side) faces left out.

Predictions are cached per set in <out>/gt_boxes/<set>.npz, keyed by the model's weights and the
set's boxes, so a rerun scores without forwarding again.

CLI (make bench-heldout runs it after the two detection runs):
  python -m benchmarks.gt_box_eval --model DIR --out DIR [--data ../shared/data]
         [--det-afw RESULTS_DIR] [--det-helen RESULTS_DIR] [--det-limit N] [--backend openvino|openvino-fp32|onnxruntime|opencv|caffe]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import plots, results_io
from benchmarks.errors import BenchmarkDataError
from benchmarks.metrics.detection import score_summary
from benchmarks.metrics.fddb import ellipse_boxes
from benchmarks.metrics.gender import gender_accuracy
from benchmarks.metrics.landmarks import (AFW6_FROM_AFLW21, angle_error_deg, balanced_yaw_subset, ced,
                                          mean_abs_angle_error, mean_or_nan, nme, nme_per_yaw_group, normaliser,
                                          visibility_accuracy)
from benchmarks.report import write_report
from core.config import DATA_ROOT, HyperFaceConfig, load_config
from core.errors import HyperFaceError
from core.records import FaceRecord
from pipeline.backends import BACKENDS, DEFAULT_BACKEND
from pipeline.postprocess import Regions

log = logging.getLogger("benchmarks.gt_box_eval")

SETS = ("aflw_crops", "helen", "utkface", "aflw2000", "afw", "fddb", "wider_val")
YAW = 2  # index of yaw in pose_deg (roll, pitch, yaw)


class HeldoutError(BenchmarkDataError):
    """A held-out set or model that cannot be evaluated; str() is '<path>: <problem>'."""


# ----------------------------------------------------------------------------- held-out faces
def load_heldout(data_root: str | Path, sets: Sequence[str] = SETS, config: HyperFaceConfig | None = None,
                 limit: int | None = None) -> dict[str, list[tuple[Path, FaceRecord]]]:
    """set name -> [(image path, FaceRecord)] of the held-out faces (module docstring: boxes).
    limit: at most this many faces per set (for tests)."""
    from benchmarks.datasets.afw import load_afw
    from benchmarks.datasets.fddb import load_fddb
    from data_prep.readers import read_dataset
    from data_prep.readers.wider import is_ignore

    cfg = config or load_config()
    root = Path(data_root)
    out: dict[str, list[tuple[Path, FaceRecord]]] = {}
    for name in sets:   # data_prep's readers raise DataPrepError, the benchmark loaders BenchmarkDataError
        if name == "aflw_crops":
            recs = read_dataset("aflw_crops", root / "aflw_crops", split="test", config=cfg)
        elif name == "helen":
            recs = read_dataset("300w", root / "helen", split="test")
        elif name == "utkface":
            recs = read_dataset("utkface", root / "utkface", split="test", config=cfg)
        elif name == "aflw2000":
            left_out: list = []
            recs = read_dataset("aflw2000", root / "aflw2000_sample", skipped=left_out)
            if left_out:
                log.warning("aflw2000: skipped %d file(s): %s", len(left_out),
                            "; ".join(f"{Path(p).name}: {r}" for p, r in left_out))
        elif name == "afw":
            recs = load_afw(root / "afw_sample")
        elif name == "wider_val":
            recs = read_dataset("wider", root / "wider_sample", split="val", config=cfg)
            for r in recs:
                r.faces = [f for f in r.faces if not is_ignore(f)]
        elif name == "fddb":
            recs = [(im.path, FaceRecord(box=b, face_id=f"{im.image_id}#{k}"))
                    for im in load_fddb(root / "fddb_sample") for k, b in enumerate(ellipse_boxes(im.ellipses))]
            out[name] = recs[:limit] if limit else recs
            continue
        else:
            raise ValueError(f"unknown held-out set {name!r}; known: {SETS}")
        faces = [(Path(r.path), f) for r in recs for f in r.faces]
        out[name] = faces[:limit] if limit else faces
    return out


# ----------------------------------------------------------------------------- forward
def _cache_key(model, items: Sequence[tuple[Path, FaceRecord]]) -> str:
    h = hashlib.sha1(Path(model.prototxt).read_bytes())
    with open(model.caffemodel, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
    for path, face in items:
        h.update(f"{path}|{np.round(face.box, 3).tolist()}".encode())
    return h.hexdigest()


def predict_on_boxes(backend, items: Sequence[tuple[Path, FaceRecord]], cfg: HyperFaceConfig,
                     desc: str = "faces") -> Regions:
    """Forward every face box through `backend` (pipeline.backends) in batches of test.batch_size:
    crops by pipeline.geometry.make_batch, outputs decoded by pipeline.postprocess.decode_outputs
    (one Regions row per face, in item order)."""
    from pipeline.geometry import make_batch
    from pipeline.postprocess import decode_outputs

    bs = cfg.test.batch_size
    parts, crops, boxes = [], [], []
    last_path, image = None, None

    def flush():
        if crops:
            b = np.stack(boxes)
            parts.append(decode_outputs(backend.forward(np.concatenate(crops)), b))
            crops.clear()
            boxes.clear()

    for path, face in tqdm(items, desc=desc, unit="face"):
        if path != last_path:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise HeldoutError(path, "cannot read the image (missing or not an image)")
            last_path = path
        crops.append(make_batch(image, face.box[None], cfg.input.size, cfg.input.mean_bgr))
        boxes.append(face.box)
        if len(crops) == bs:
            flush()
    flush()
    return Regions.concat(parts) if parts else Regions.empty()


def predict_cached(model, backend, name: str, items, cfg: HyperFaceConfig, cache_dir: Path | None) -> Regions:
    """predict_on_boxes, reusing <cache_dir>/<name>.npz when it was made for the same weights and boxes."""
    if cache_dir is None:
        return predict_on_boxes(backend, items, cfg, name)
    key = _cache_key(model, items)
    path = Path(cache_dir) / f"{name}.npz"
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key:
                log.info("%s: %d predictions reused from %s", name, len(items), path)
                return Regions(*(z[f] for f in Regions.__dataclass_fields__))
    pred = predict_on_boxes(backend, items, cfg, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, key=key, **{f: getattr(pred, f) for f in Regions.__dataclass_fields__})
    tmp.replace(path)
    return pred


# ----------------------------------------------------------------------------- scoring
def _stack(faces: Sequence[FaceRecord], attr: str, shape: tuple) -> np.ndarray:
    return np.stack([getattr(f, attr) if getattr(f, attr) is not None else np.full(shape, np.nan) for f in faces]) \
        if faces else np.zeros((0, *shape))


def score_set(name: str, faces: Sequence[FaceRecord], pred: Regions, cfg: HyperFaceConfig) -> dict:
    """Metrics (name -> number) and curves (key -> (thresholds, fractions)) of one held-out set."""
    b, t = cfg.benchmark, cfg.test
    metrics: dict[str, object] = {"faces": len(faces)}
    curves: dict[str, tuple] = {}
    summ = score_summary(pred.scores, t.detection_threshold)
    metrics["score_mean"], metrics["score>thr"] = summ["score_mean"], summ["frac_above"]
    t_lm = np.linspace(0, b.ced_max_landmarks, 61)
    t_pose = np.linspace(0, b.ced_max_pose_deg, 61)
    if not faces:
        return {"metrics": metrics, "curves": curves}
    gt_pose = np.stack([f.pose_deg for f in faces])
    if name in ("aflw_crops", "aflw2000", "afw", "helen"):
        gt = _stack(faces, "landmarks", (21, 2))
        lm = pred.landmarks
        if name == "afw":
            gt, lm = gt[:, AFW6_FROM_AFLW21], lm[:, AFW6_FROM_AFLW21]
        boxes = np.stack([f.box for f in faces])
        if name == "helen":
            gt68 = _stack(faces, "landmarks68", (68, 2))
            err_io = nme(lm, gt, normaliser("inter_ocular", gt68))
            metrics["NME_inter_ocular"] = mean_or_nan(err_io)
            curves["ced_NME_inter_ocular"] = (t_lm, ced(err_io, t_lm))
        err = nme(lm, gt, normaliser("box", gt, boxes))
        metrics["NME_box"] = mean_or_nan(err)
        curves["ced_NME_box"] = (t_lm, ced(err, t_lm))
        if name == "aflw_crops":
            yaws = gt_pose[:, YAW]
            try:
                subset = balanced_yaw_subset(yaws, b.yaw_group_edges, b.aflw_subset_size, b.seed)
            except ValueError as small:   # fewer faces than the subset needs (a --limit run): use them all
                log.warning("%s: %s; yaw groups over all %d faces", name, small, len(faces))
                subset = np.arange(len(faces))
            metrics["yaw_subset_faces"] = len(subset)
            for g, v in nme_per_yaw_group(err[subset], yaws[subset], b.yaw_group_edges).items():
                metrics[f"NME_box_yaw{g}"] = v
            vis = np.stack([f.visibility for f in faces])
            lab = np.stack([f.landmarks_labelled for f in faces])
            metrics["visibility_acc"] = visibility_accuracy(pred.visibility, vis, lab, t.visibility_threshold)
    for k, comp in enumerate(("roll", "pitch", "yaw")):
        known = np.isfinite(gt_pose[:, k])
        if known.any():
            e = angle_error_deg(pred.pose_deg[known, k], gt_pose[known, k])
            metrics[f"MAE_{comp}_deg"] = mean_abs_angle_error(pred.pose_deg[known, k], gt_pose[known, k])
            if comp == "yaw":
                curves["ced_yaw"] = (t_pose, ced(e, t_pose))
    genders = np.array([f.gender or "" for f in faces], dtype=object)
    if name == "utkface":
        labels = np.where(np.isnan(pred.gender_prob_male), "", np.where(pred.gender_prob_male >= 0.5, "m", "f"))
        g = gender_accuracy(labels.astype(object), genders)
        metrics["gender_acc"] = g["accuracy"]
        metrics["gender_acc_m"] = gender_accuracy(labels[genders == "m"].astype(object), genders[genders == "m"])["accuracy"]
        metrics["gender_acc_f"] = gender_accuracy(labels[genders == "f"].astype(object), genders[genders == "f"])["accuracy"]
    return {"metrics": metrics, "curves": curves}


def score_helen_detection(faces: Sequence[FaceRecord], image_ids: Sequence[str], results: dict, cfg: HyperFaceConfig) -> dict:
    """The pipeline's detections on HELEN images (one annotated face each; other faces in the photo
    are unannotated, so AP counts them as false positives): AP, recall of the annotated face, and
    19-point NME (inter-ocular) and yaw error of the matched detection."""
    from benchmarks.score import matched_faces, score_detection_ap
    from core.records import ImageRecord

    recs = [ImageRecord(path=Path(i), faces=[f], image_id=i) for f, i in zip(faces, image_ids)]
    det = score_detection_ap({r.image_id: r.faces[0].box[None] for r in recs}, results, cfg)
    pairs = matched_faces(recs, results, cfg.benchmark.eval_iou)
    found = [(r, f) for r, f in pairs if f is not None]
    m = {"images": len(recs), "AP": det["metrics"]["AP"], "recall": len(found) / max(len(pairs), 1)}
    if found:
        gt = np.stack([r.landmarks for r, _ in found])
        lm = np.stack([f.landmarks for _, f in found])
        m["NME_inter_ocular"] = mean_or_nan(nme(lm, gt, normaliser("inter_ocular", np.stack([r.landmarks68 for r, _ in found]))))
        m["MAE_yaw_deg"] = mean_abs_angle_error(np.array([f.pose_deg[YAW] for _, f in found]),
                                                np.array([r.pose_deg[YAW] for r, _ in found]))
    return {"metrics": m, "curves": {"pr": det["curves"]["pr"]}}


# ----------------------------------------------------------------------------- run + report
def evaluate(model_dir: str | Path, data_root: str | Path, out_dir: str | Path, sets: Sequence[str] = SETS,
             cfg: HyperFaceConfig | None = None, backend: str = DEFAULT_BACKEND, limit: int | None = None,
             cache: bool = True) -> dict[str, dict]:
    """GT-box evaluation of a model directory on the held-out sets: set -> {"metrics", "curves"}."""
    from pipeline.detector import HyperFace

    cfg = cfg or load_config()
    hf = HyperFace(model_dir, backend=backend, config=cfg)   # the pipeline's model checks and backend
    held = load_heldout(data_root, sets, cfg, limit)
    out: dict[str, dict] = {}
    for name, items in held.items():
        t0 = time.perf_counter()
        pred = predict_cached(hf.model, hf.backend, name, items, cfg, Path(out_dir) / "gt_boxes" if cache else None)
        out[name] = score_set(name, [f for _, f in items], pred, cfg)
        log.info("%s: %d faces in %.1f s: %s", name, len(items), time.perf_counter() - t0, out[name]["metrics"])
    return out


def _detection_sections(data_root: Path, det_afw: Path | None, det_helen: Path | None, det_limit: int | None,
                        cfg: HyperFaceConfig) -> tuple[dict, dict]:
    from benchmarks.score import load_ground_truth, score_one

    tables, curves = {}, {}
    if det_afw is not None and (Path(det_afw) / results_io.JSON_DIR).is_dir():
        gt, _ = load_ground_truth("afw", data_root / "afw_sample", cfg)
        results = results_io.read_results(det_afw)
        gt = [r for r in gt if r.image_id in results]       # the images detection has run on
        s = score_one("afw", gt, results, cfg)
        tables[f"afw_sample ({len(gt)} images)"] = dict(s["metrics"])
        curves["afw_pr"] = s["curves"]["pr"]
    if det_helen is not None and (Path(det_helen) / results_io.JSON_DIR).is_dir():
        from data_prep.readers import read_dataset

        results = results_io.read_results(det_helen)
        recs = read_dataset("300w", data_root / "helen", split="test", limit=det_limit)
        recs = [r for r in recs if r.image_id in results]
        s = score_helen_detection([r.faces[0] for r in recs], [r.image_id for r in recs], results, cfg)
        tables[f"helen testset (first {len(recs)} images)"] = s["metrics"]
        curves["helen_pr"] = s["curves"]["pr"]
    return tables, curves


def write_heldout_report(out_dir: str | Path, model_dir: str | Path, gt_results: dict[str, dict],
                         det_tables: dict, det_curves: dict, settings: dict, cfg: HyperFaceConfig) -> Path:
    """report.md + PNGs (CED per metric over the sets, PR per detection set) in out_dir."""
    out_dir = Path(out_dir)
    figures = []
    keys = list(dict.fromkeys(k for r in gt_results.values() for k in r["curves"]))
    for key in keys:
        cs = [(name, *r["curves"][key]) for name, r in gt_results.items() if key in r["curves"]]
        xlabel = "Yaw error (degrees)" if key == "ced_yaw" else "Normalised mean error"
        figures.append(plots.plot_ced(cs, out_dir / f"heldout_{key}.png", f"Held-out, GT boxes: CED {key[4:]}", xlabel))
    for key, (rec, prec, ap) in det_curves.items():
        figures.append(plots.plot_pr([(key.split("_")[0], rec, prec, ap)], out_dir / f"heldout_{key}.png",
                                     f"{key.split('_')[0]} detection PR (pipeline)"))
    meta_path = Path(model_dir) / "model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    model_settings = {f"model.json {k}": json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in meta.items()}
    rows: dict[str, dict[str, object]] = {}
    for n, r in gt_results.items():            # metrics as rows, sets as columns (7 sets side by side)
        for k, v in r["metrics"].items():
            rows.setdefault(k, {})[n] = v
    tables = {"Given face boxes (no detection)": rows}
    tables.update({f"Full detection: {k}": {"pipeline": v} for k, v in det_tables.items()})
    notes = [
        "NME_box: mean point error / sqrt(w*h) of the given face box, the box training uses (aflw_crops: the "
        "120x120 crop, also in `python -m benchmarks aflw`; helen: tight box of the 68 points; aflw2000: box of "
        "the visible points; afw: annotated box, 6 points).",
        "NME_inter_ocular (helen): over the 19 AFLW points mapped from iBUG-68 (ears unlabelled), "
        "normalised by the outer eye corner distance (iBUG 37-46).",
        f"NME_box_yaw*: aflw_crops test split, balanced subset of {cfg.benchmark.aflw_subset_size} "
        f"(one third per |yaw| group, seed {cfg.benchmark.seed}); 'all' is the mean of the group means.",
        "helen yaw ground truth is the PnP yaw of the 68 points (data_prep.ibug68.pose_from_68), not an annotation.",
        f"score>thr: fraction of given boxes with face probability > test.detection_threshold "
        f"({cfg.test.detection_threshold}): a sanity check of the detection head on true faces.",
        "Detection: selective search fast, IRP, L-NMS (settings above); HELEN has one annotated face per image, "
        "so unannotated faces in the photo are false positives in its AP.",
    ]
    return write_report(out_dir / "report.md", "HyperFace on held-out data", {Path(model_dir).name: str(model_dir)},
                        {**settings, **model_settings}, tables, figures, notes)


def summary_table(report_md: str) -> str:
    """The result tables of a report (from the first '## Given' heading up to the figures)."""
    start = report_md.find("## Given")
    end = report_md.find("## Figures")
    return report_md[start:end if end > start else None].strip()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m benchmarks.gt_box_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model directory (pipeline/model_store.py)")
    p.add_argument("--out", required=True, help="output folder (report.md, PNGs, gt_boxes/ cache)")
    p.add_argument("--data", default=str(DATA_ROOT), help="folder holding the held-out sets (default core.config.DATA_ROOT)")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--det-afw", default=None, help="results folder of `python -m benchmarks afw` to include")
    p.add_argument("--det-helen", default=None, help="results folder of `python -m benchmarks ibug` on helen/testset")
    p.add_argument("--det-limit", type=int, default=None, help="the --limit the HELEN detection ran with")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    p.add_argument("--config", default=None)
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
        out = Path(args.out)
        data = Path(args.data)
        gt = evaluate(args.model, data, out, args.sets, cfg, args.backend)
        det_tables, det_curves = _detection_sections(data, Path(args.det_afw) if args.det_afw else None,
                                                     Path(args.det_helen) if args.det_helen else None, args.det_limit, cfg)
        settings = {"data": str(data), "backend": args.backend, "detection: proposals": "fast (selective search)",
                    "detection: irp_iterations": cfg.test.irp_iterations, "detection: post": "lnms",
                    "detection: helen limit": args.det_limit,
                    **{f"test.{k}": v for k, v in vars(cfg.test).items()},
                    **{f"benchmark.{k}": v for k, v in vars(cfg.benchmark).items()}}
        report = write_heldout_report(out, args.model, gt, det_tables, det_curves, settings, cfg)
    except HyperFaceError as err:
        log.error("%s", err)
        return 2
    print(summary_table(report.read_text()))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
