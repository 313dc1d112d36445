"""Speed and held-out AP of the selective-search path, before and after issue 12 item 3, in one run.

    python benchmarks/ss_path.py [--model models/hyperface] [--wider 40] [--variants before after] [--out DIR]

Photos: the 10 afw_sample photos (full size, 497x333 to 2402x1824) and the first --wider of the 150
held-out WIDER training photos (core.splits.held_out_names(ids, 150, "wider_train"); 640 px).
Variants (same model, backend, fast selective search, IRP T=1, L-NMS):
  before  no face filter (match_iou 0), no near-duplicate merge (merge_iou 1), IRP from every region
          above threshold (irp_suppress_first false): the pipeline before issue 12;
  after   config/hyperface.yaml as shipped;
  fp32    "after" with ONNX Runtime fp32 (the default backend before OpenVINO bf16);
  int8    "after" with the int8 ONNX Runtime engine (pipeline/int8.py, calibration of benchmarks/engines.py).
"after" runs on the default backend (pipeline.backends.DEFAULT_BACKEND).
Per photo: selective search s, crop s (in the crop thread, overlapped with the net), forward s, wall
s of detect(); per set: face-eval AP (faces under 30 px ignored). Results (one JSON per photo, as
`python -m benchmarks`) and timings.jsonl go to --out/<variant>/<set>/; a rerun skips photos that
have both. The variants alternate photo by photo, so machine load hits both alike. Prints the table and writes --out/report.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import results_io  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from benchmarks.score import score_detection_ap  # noqa: E402
from core.config import HyperFaceConfig, load_config  # noqa: E402
from core.config import DATA_ROOT  # noqa: E402
from pipeline.backends import DEFAULT_BACKEND  # noqa: E402

DATA = DATA_ROOT


def variant_config(cfg: HyperFaceConfig, name: str) -> HyperFaceConfig:
    """A variant's config; "after:key=value,..." is "after" with those selective_search settings changed
    (for example after:merge_iou=0.9), so a candidate setting runs beside the shipped one."""
    if ":" in name:
        base, _, changes = name.partition(":")
        ss = cfg.selective_search
        for change in changes.split(","):
            key, _, value = change.partition("=")
            if not hasattr(ss, key):
                raise ValueError(f"variant {name!r}: selective_search has no setting {key!r}")
            ss = dataclasses.replace(ss, **{key: type(getattr(ss, key))(value)})
        return dataclasses.replace(variant_config(cfg, base), selective_search=ss)
    if name in ("after", "int8", "fp32"):
        return cfg
    if name == "before":
        ss = dataclasses.replace(cfg.selective_search, match_iou=0.0, merge_iou=1.0)
        test = dataclasses.replace(cfg.test, irp_suppress_first=False)
        return dataclasses.replace(cfg, selective_search=ss, test=test)
    raise ValueError(f"unknown variant {name!r}")


def photo_sets(cfg: HyperFaceConfig, n_wider: int) -> dict[str, list[tuple[str, Path, np.ndarray]]]:
    from benchmarks.proposals import held_out_photos

    photos = held_out_photos(DATA, cfg)
    return {"afw": [p for p in photos if p[0].startswith("afw/")],
            "wider": [p for p in photos if p[0].startswith("wider/")][:n_wider]}


def _timing_rows(out: Path) -> dict:
    f = out / "timings.jsonl"
    rows = {}
    if f.is_file():
        for line in f.read_text().splitlines():
            row = json.loads(line)
            rows[row["id"]] = row
    return rows


def run_photo(hf, photo_id: str, path: Path, out: Path) -> dict:
    """Detect on one photo, write its JSON and timing row."""
    image = cv2.imread(str(path))
    t = time.perf_counter()
    faces = hf.detect(image)
    wall = time.perf_counter() - t
    results_io.write_image_result(out, photo_id, path, faces)
    lt = hf.last_timings
    row = {"id": photo_id, "size": f"{image.shape[1]}x{image.shape[0]}", "wall_s": wall,
           "proposals_s": lt.get("proposals", 0.0), "crop_s": lt.get("crop", 0.0),
           "forward_s": lt.get("forward", 0.0), "evaluate_s": lt.get("evaluate", 0.0),
           "post_s": lt.get("post", 0.0), "proposals": lt.get("num_proposals", 0),
           "regions": lt.get("regions", 0), "faces": len(faces)}
    out.mkdir(parents=True, exist_ok=True)
    with (out / "timings.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "hyperface"))
    ap.add_argument("--wider", type=int, default=40, help="held-out WIDER photos (of 150) to run")
    ap.add_argument("--variants", nargs="+", default=["before", "after"],
                    help="before, after, fp32, int8, or after:key=value,... (selective_search settings changed)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "ss_path")
    ap.add_argument("--config", default=None)
    args = ap.parse_args(argv)
    base = load_config(args.config)
    try:
        for v in args.variants:
            variant_config(base, v)
    except ValueError as err:
        print(f"ss_path.py: {err}", file=sys.stderr)
        return 2
    sets = photo_sets(base, args.wider)
    configs = {v: variant_config(base, v) for v in args.variants}
    detectors: dict = {}
    table = {}
    for set_name, photos in sets.items():
        if not photos:
            continue
        rows = {v: _timing_rows(args.out / v / set_name) for v in args.variants}
        for photo_id, path, _ in photos:       # the variants alternate photo by photo (same machine load)
            for v in args.variants:
                out = args.out / v / set_name
                if photo_id in rows[v] and results_io.json_path(out, photo_id).is_file():
                    continue
                if v not in detectors:
                    from pipeline import HyperFace

                    # the SS path, whatever the default proposals
                    detectors[v] = HyperFace(args.model, config=configs[v], proposals="fast",
                                             backend="onnxruntime" if v in ("fp32", "int8") else DEFAULT_BACKEND)
                    if v == "int8":  # the int8 engine of pipeline/int8.py, calibrated as benchmarks/engines.py says
                        from benchmarks.engines import int8_backend

                        detectors[v].backend = int8_backend(args.model, configs[v])
                row = rows[v][photo_id] = run_photo(detectors[v], photo_id, path, out)
                print(f"  {v} {photo_id} {row['size']}: {row['wall_s']:.2f} s ({row['proposals']} proposals, "
                      f"{row['regions']} regions; SS {row['proposals_s']:.2f} s, crop {row['crop_s']:.2f} s, "
                      f"forward {row['forward_s']:.2f} s, {row['faces']} faces)", flush=True)
        for v in args.variants:
            out = args.out / v / set_name
            done = [rows[v][p[0]] for p in photos]
            results = results_io.read_results(out)
            gt = {pid: boxes for pid, _, boxes in photos}
            ap_ = score_detection_ap(gt, {pid: results.get(pid, []) for pid in gt}, configs[v])["metrics"]
            mean = {k: float(np.mean([r[k] for r in done])) for k in
                    ("wall_s", "proposals_s", "crop_s", "forward_s", "evaluate_s", "post_s", "proposals", "regions")}
            table[f"{v} / {set_name}"] = {
                "photos": len(done), "AP": ap_["AP"], "AP calibrated": ap_["AP_calibrated"], "TP": ap_["TP"],
                "FP": ap_["FP"], "faces": ap_["faces"], "s/photo": mean["wall_s"],
                "max s/photo": max(r["wall_s"] for r in done), "SS s": mean["proposals_s"], "crop s": mean["crop_s"],
                "forward s": mean["forward_s"], "crop+forward wall s": mean["evaluate_s"],
                "proposals": mean["proposals"], "regions forwarded": mean["regions"]}
    for name, row in table.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    write_report(args.out / "report.md", "Selective-search path: speed and held-out AP, before / after issue 12 item 3",
                 {"model": args.model}, {"variants": args.variants, "wider held-out photos": args.wider,
                                         "backend": f"{DEFAULT_BACKEND} (default)", "proposals": "fast", "post": "lnms"},
                 {"SS path": table},
                 notes=["Times on 2 cores; AP is face-eval's on these photos only."])
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
