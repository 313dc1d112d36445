"""Speed of the HyperFace pipeline on this CPU (Section 5.6 style).

Prints: selective search seconds (fast / quality), forward proposals/s per backend and batch size
(and as a fraction of this CPU's fp32 sgemm peak, measured with numpy; net FLOPs counted from the
prototxt shapes), IRP + L-NMS seconds, end-to-end s/image for HyperFace (selective search) and
Fast-HyperFace (SSD proposals), and peak memory. Nets get random weights: speed does not depend on
them (except how many boxes pass the threshold into IRP/L-NMS).

    python benchmarks/speed.py [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.config import DATA_ROOT, load_config  # noqa: E402
from pipeline import HyperFace  # noqa: E402
from pipeline.backends import installed_backends, make_backend  # noqa: E402
from pipeline.fixtures import make_model_dir  # noqa: E402
from pipeline.net_shapes import infer_shapes  # noqa: E402
from pipeline.postprocess import Regions, landmark_boxes, landmark_nms  # noqa: E402
from pipeline.geometry import mean_shape  # noqa: E402
from pipeline.proposals import selective_search  # noqa: E402

log = logging.getLogger("speed")
DATA = DATA_ROOT


def sgemm_peak(n: int, repeats: int) -> float:
    """Best fp32 FLOP/s of numpy's (BLAS) n x n matrix product."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_image(width: int, height: int) -> np.ndarray:
    """A real photo (afw_sample) resized to width x height; noise if the data folder is missing."""
    path = DATA / "afw_sample" / "1004109301.jpg"
    image = cv2.imread(str(path))
    if image is None:
        log.warning("%s not found: timing on a noise image", path)
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def synthetic_regions(n: int, rng) -> Regions:
    """n detected regions around 5 faces, for timing IRP's box fits and L-NMS."""
    centres = rng.uniform(100, 500, (5, 2))
    pick = rng.integers(0, 5, n)
    side = rng.uniform(60, 120, n)
    x1y1 = centres[pick] + rng.normal(0, 8, (n, 2)) - side[:, None] / 2
    lms = mean_shape()[None] * side[:, None, None] + x1y1[:, None, :]
    boxes = np.column_stack([x1y1, x1y1 + side[:, None]])
    return Regions(boxes, rng.uniform(0.5, 1, n), lms, np.ones((n, 21)), rng.normal(0, 10, (n, 3)),
                   rng.uniform(0, 1, n), np.full((n, 4), np.nan))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes and the tiny fixture net (for tests)")
    ap.add_argument("--prototxt", type=Path, default=REPO / "prototxt" / "hyperface" / "deploy.prototxt")
    ap.add_argument("--ssd-prototxt", type=Path, default=REPO / "prototxt" / "fast_hyperface_ssd" / "deploy.prototxt")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--model", type=Path, default=None,
                    help="also time the end-to-end paths with this trained model folder (and its proposals/ net)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cfg = load_config()
    if args.quick:
        args.prototxt = REPO / "tests" / "fixtures" / "tiny_hyperface" / "deploy.prototxt"
        width, height, batches, gemm_n, reps, n_regions = 160, 120, (1, 4), 256, 2, 50
    else:
        width, height, batches, gemm_n, reps, n_regions = 640, 480, (1, 8, 32), 2048, 3, 500
    backends = [b for b in installed_backends() if b != "caffe"]
    try:
        import caffe  # noqa: F401, PLC0415
        backends.append("caffe")
    except ImportError:
        log.warning("pycaffe not importable: not timing the caffe backend")
    res: dict = {"image": f"{width}x{height}", "net": str(args.prototxt.relative_to(REPO))}
    image = test_image(width, height)

    peak = sgemm_peak(gemm_n, reps)
    res["sgemm_peak_gflops"] = peak / 1e9
    print(f"sgemm peak (numpy, n={gemm_n}): {peak / 1e9:.1f} GFLOP/s")

    for mode in ("fast", "quality"):
        t = _timed(lambda: res.__setitem__(f"ss_{mode}_boxes", len(selective_search(image, cfg.selective_search, mode))))
        res[f"ss_{mode}_s"] = t
        print(f"selective search {mode}: {t:.2f} s ({res[f'ss_{mode}_boxes']} boxes)")

    flops = infer_shapes(args.prototxt, batch=1).total_flops
    res["net_gflops_per_region"] = flops / 1e9
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model_dir(args.prototxt, Path(tmp) / "model", seed=0)
        from pipeline.model_store import load_model  # noqa: PLC0415
        loaded = load_model(model)
        size = cfg.input.size
        for name in backends:
            backend = make_backend(name, loaded.prototxt, loaded.caffemodel)
            for bs in batches:
                batch = np.random.default_rng(0).normal(0, 30, (bs, 3, size, size)).astype(np.float32)
                backend.forward(batch)
                t = min(_timed(lambda: backend.forward(batch)) for _ in range(reps))
                rate = bs / t
                frac = rate * flops / peak
                res[f"forward_{name}_bs{bs}_per_s"] = rate
                res[f"forward_{name}_bs{bs}_peak_fraction"] = frac
                print(f"forward {name} batch {bs}: {rate:.1f} proposals/s ({100 * frac:.1f}% of sgemm peak, "
                      f"{flops / 1e9:.2f} GFLOP/proposal)")

        regions = synthetic_regions(n_regions, np.random.default_rng(0))
        t_irp = _timed(lambda: landmark_boxes(regions, cfg.test))
        t_lnms = _timed(lambda: landmark_nms(regions, cfg.test))
        res["irp_boxes_s"], res["lnms_s"] = t_irp, t_lnms
        print(f"IRP box fits for {n_regions} regions: {t_irp:.3f} s; L-NMS: {t_lnms:.3f} s")

        hf = HyperFace(model, config=cfg, proposals="fast")
        t = _timed(lambda: hf.detect(image))
        res["hyperface_s_per_image"] = t
        res["hyperface_regions_forwarded"] = hf.last_timings.get("regions", 0)
        print(f"HyperFace end to end (selective search fast, IRP T={hf.irp_iterations}, L-NMS): {t:.2f} s/image "
              f"({res['hyperface_regions_forwarded']} regions forwarded)")
        if args.ssd_prototxt.is_file():
            make_model_dir(args.ssd_prototxt, model / "proposals", seed=1)
            fast = HyperFace(model, config=cfg, proposals="ssd")
            t = _timed(lambda: fast.detect(image))
            res["fast_hyperface_s_per_image"] = t
            print(f"Fast-HyperFace end to end (SSD proposals): {t:.2f} s/image "
                  f"({fast.last_timings['num_proposals']} proposals)")
    if args.model is not None:
        _time_trained(args.model, image, cfg, res)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {res['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return res


def _time_trained(model: Path, image: np.ndarray, cfg, res: dict) -> None:
    """End to end with trained weights: how many regions pass the thresholds (and so IRP's work)
    depends on them. Best of 3 after a warm-up call (the first call converts and loads the nets).
    With the default backend and, when that is OpenVINO, with ONNX Runtime too (the fp32 reference)."""
    from pipeline.backends import DEFAULT_BACKEND  # noqa: PLC0415
    engines = [DEFAULT_BACKEND] + (["onnxruntime"] if DEFAULT_BACKEND.startswith("openvino") else [])
    paths = []
    for engine in engines:
        tag = "" if engine == DEFAULT_BACKEND else f"_{engine}"
        paths.append((f"hyperface_trained{tag}", "selective search fast", engine,
                      HyperFace(model, config=cfg, proposals="fast", backend=engine)))
        if (model / "proposals").is_dir():
            paths.append((f"fast_hyperface_trained{tag}", "SSD proposals", engine,
                          HyperFace(model, config=cfg, proposals="ssd", backend=engine)))
    for key, what, engine, det in paths:
        det.detect(image)
        t = min(_timed(lambda: det.detect(image)) for _ in range(3))
        res[f"{key}_s_per_image"] = t
        print(f"{model.name} end to end ({what}, trained weights, backend {engine}): {t:.2f} s/image, best of 3 "
              f"({det.last_timings.get('num_proposals', '?')} proposals, {det.last_timings.get('regions', '?')} regions forwarded)")


if __name__ == "__main__":
    main()
