"""Inference engines side by side in one run (issue 12 item 4): ONNX Runtime fp32 (the reference),
its static int8 quantisation, and OpenVINO bf16 (the default backend "openvino" on CPUs with AMX).

    python benchmarks/engines.py [--model models/hyperface] [--engines fp32 int8 bf16] [--rounds 3] [--faces N]

Calibration (pipeline/int8.py, static, MinMax): net inputs of regions of 10 held-out WIDER training
photos (numbers 100-109 of the 150 held out by core.splits; benchmarks/ss_path.py scores the first
40): 24 random selective-search proposals and up to 8 faces >= 20 px of each.
Prints, for each engine: forward regions/s at batch 32 on real crops (rounds alternate the engines,
best of 3 iterations each), and with the GT-box protocol of benchmarks/gt_box_eval.py on the held-out
aflw_crops test faces: landmark NME / box size, yaw/pitch/roll MAE, visibility accuracy; on the
UTKFace test chips: gender accuracy; and the largest difference of the face score. Held-out AP of the
full pipeline with each engine: benchmarks/ss_path.py --variants after int8 (selective search), or
`python -m benchmarks wider-heldout --backend ...` (the default path).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.config import HyperFaceConfig, load_config  # noqa: E402
from core.config import DATA_ROOT  # noqa: E402

DATA = DATA_ROOT
CALIBRATION_PHOTOS = slice(100, 110)


def calibration_batches(cfg: HyperFaceConfig) -> list[np.ndarray]:
    """Net-input batches (one per photo) of the calibration regions (module docstring)."""
    from core.proposals import selective_search
    from core.splits import held_out_names
    from data_prep.readers.wider import read_wider
    from pipeline.geometry import make_batch

    wider = read_wider(DATA / "wider_train", split="train", config=cfg)
    held = held_out_names([r.image_id for r in wider], 150, "wider_train")
    photos = [r for r in wider if r.image_id in held][CALIBRATION_PHOTOS]
    rng = np.random.default_rng(0)
    batches = []
    for rec in photos:
        image = cv2.imread(str(rec.path))
        boxes = selective_search(image, cfg.selective_search)
        pick = boxes[np.sort(rng.choice(len(boxes), min(24, len(boxes)), replace=False))]
        faces = np.array([f.box for f in rec.faces if min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= 20]).reshape(-1, 4)
        batches.append(make_batch(image, np.concatenate([pick, faces[:8]]), cfg.input.size, cfg.input.mean_bgr))
    return batches


def int8_backend(model_dir: str | Path, cfg: HyperFaceConfig):
    from pipeline.int8 import OnnxInt8Backend
    from pipeline.model_store import load_model

    model = load_model(model_dir)
    return OnnxInt8Backend(model.prototxt, model.caffemodel, calibration_batches(cfg))


ENGINES = ("fp32", "int8", "bf16")
REFERENCE = "fp32"


def make_engine(name: str, model_dir: str | Path, cfg: HyperFaceConfig):
    """fp32: ONNX Runtime (the reference); int8: its static int8 quantisation (pipeline/int8.py);
    bf16: OpenVINO with bf16 inference precision (backend "openvino")."""
    from pipeline.backends import make_backend
    from pipeline.model_store import load_model

    model = load_model(model_dir)
    if name == "int8":
        return int8_backend(model_dir, cfg)
    return make_backend("onnxruntime" if name == "fp32" else "openvino", model.prototxt, model.caffemodel)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "hyperface"))
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES,
                    help=f"compared with {REFERENCE} (always run)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--faces", type=int, default=None, help="at most this many test faces per set")
    args = ap.parse_args(argv)
    from benchmarks.gt_box_eval import load_heldout, predict_on_boxes, score_set
    from core.proposals import selective_search
    from pipeline.geometry import make_batch

    cfg = load_config()
    names = [REFERENCE] + [n for n in args.engines if n != REFERENCE]
    t = time.perf_counter()
    engines = {name: make_engine(name, args.model, cfg) for name in names}
    print(f"engines ready in {time.perf_counter() - t:.1f} s: " +
          ", ".join(f"{n} = {getattr(e, 'name', type(e).__name__)}" for n, e in engines.items()))

    image = cv2.imread(str(DATA / "afw_sample" / "1051618982.jpg"))
    batch = make_batch(image, selective_search(image, cfg.selective_search)[:32], cfg.input.size, cfg.input.mean_bgr)
    rates: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(args.rounds):  # rounds alternate the engines, so a busy spell hits all of them
        for name, eng in engines.items():
            eng.forward(batch)
            best = min(_timed(lambda: eng.forward(batch)) for _ in range(3))
            rates[name].append(len(batch) / best)
    for name, r in rates.items():
        print(f"forward {name}, batch 32: {np.median(r):.1f} regions/s ({np.median(r) / np.median(rates[REFERENCE]):.2f}x; "
              f"rounds: {', '.join(f'{v:.1f}' for v in r)})")

    for set_name, keys in (("aflw_crops", ("NME_box", "MAE_yaw_deg", "MAE_pitch_deg", "MAE_roll_deg", "visibility_acc",
                                           "score>thr")),
                           ("utkface", ("gender_acc",))):
        items = load_heldout(DATA, [set_name], cfg, args.faces)[set_name]
        faces = [f for _, f in items]
        preds = {name: predict_on_boxes(eng, items, cfg, f"{set_name} {name}") for name, eng in engines.items()}
        scores = {name: score_set(set_name, faces, p, cfg)["metrics"] for name, p in preds.items()}
        for key in keys:
            if key not in scores[REFERENCE]:
                continue
            ref = scores[REFERENCE][key]
            print(f"{set_name} test ({len(faces)} faces) {key}: " + ", ".join(
                f"{n} {m[key]:.4f}" + ("" if n == REFERENCE else f" ({100 * (m[key] - ref) / ref:+.1f} %)")
                for n, m in scores.items()))
        for name in names[1:]:
            print(f"{set_name}: largest face-score difference {name} vs {REFERENCE}: "
                  f"{np.abs(preds[REFERENCE].scores - preds[name].scores).max():.4f}")
    return 0


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
