"""The issue-7 speed targets of HyperFace on this CPU, in samples/s, proposals/s and % of the sgemm peak.

    python benchmarks/speed_check.py [--batch 32] [--iters 3] [--threads 2 ...]
    python benchmarks/speed_check.py --ab PREFIX_A PREFIX_B [--rounds 3]   # A/B two Caffe builds
    python benchmarks/speed_check.py --backend-ab [--batches 1 8 32] [--rounds 3]   # OpenCV DNN vs onnxruntime

Measures, for the HyperFace deploy net with random weights (speed does not depend on them):
  * training forward+backward with pycaffe (samples/s; target >= 25),
  * inference forward with pycaffe, with OpenCV DNN (DNN_BACKEND_OPENCV, CPU target) and with
    onnxruntime (pipeline/caffe_to_onnx.py; when installed) at each --threads count (proposals/s;
    target >= 120),
  * the sgemm peak with numpy (benchmarks/blas_peak.py) and each rate as % of it (forward FLOPs of
    conv + fc layers counted from the net; training counts 3x the forward FLOPs).
--ab runs this script alternately under two Caffe install prefixes (A B A B ...) in subprocesses, so
that a busy machine affects both alike, and prints the per-round rates and the median B/A ratio.
--backend-ab needs no pycaffe: it times the pipeline's OpenCV DNN and onnxruntime backends
(pipeline/backends.py) alternately, round by round and batch by batch, in one process, and prints
each one's median proposals/s, % of the sgemm peak and the median onnxruntime/OpenCV ratio.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("GLOG_minloglevel", "2")

from core.errors import HyperFaceError  # noqa: E402

log = logging.getLogger("speed_check")
TRAIN_TARGET, FORWARD_TARGET = 25.0, 120.0  # issue 7: samples/s (fwd+bwd), proposals/s (fwd)


class SpeedCheckError(HyperFaceError):
    """A bad argument or Caffe prefix, with the path it concerns."""


def forward_gflop(net) -> float:
    """GFLOP of one sample's forward through the conv and fully-connected layers (2 flops per MAC)."""
    batch = net.blobs["data"].data.shape[0]
    flops = 0.0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in ("Convolution", "InnerProduct"):
            continue
        weight = net.params[name][0].data
        if layer.type == "InnerProduct":
            flops += 2.0 * weight.size
        else:
            top = net.blobs[net.top_names[name][0]].data
            flops += 2.0 * (top.size / batch) * (weight.size / weight.shape[0])
    return flops / 1e9


def _best_rate(fn, batch: int, iters: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return batch / min(times)


def measure(batch: int, iters: int, threads: list[int], peak_n: int) -> dict:
    import cv2  # noqa: PLC0415
    import caffe  # noqa: PLC0415
    import net_speed  # noqa: PLC0415
    from blas_peak import sgemm_peak  # noqa: PLC0415
    from prototxt import model_path  # noqa: PLC0415

    caffe.set_mode_cpu()
    net = net_speed.load("hyperface", batch)
    gflop = forward_gflop(net)

    def train_step():
        net.forward()
        net_speed._set_output_diffs(net)
        net.backward()

    result = {"batch": batch, "gflop_per_sample": gflop, "caffe": caffe.__file__,
              "train_samples_per_s": _best_rate(train_step, batch, iters),
              "caffe_forward_per_s": _best_rate(net.forward, batch, iters), "opencv_forward_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "hyperface.caffemodel"
        net.save(str(weights))
        data = net.blobs["data"].data.copy()
        cv_net = cv2.dnn.readNetFromCaffe(str(model_path("hyperface")), str(weights))
        cv_net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cv_net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        before = cv2.getNumThreads()
        for n in threads:
            cv2.setNumThreads(n)

            def cv_forward():
                cv_net.setInput(data, "data")
                cv_net.forward()
            result["opencv_forward_per_s"][str(n)] = _best_rate(cv_forward, batch, iters)
        cv2.setNumThreads(before)
        result["onnxruntime_forward_per_s"] = {}
        if _has_onnxruntime():
            from pipeline.backends import OnnxRuntimeBackend  # noqa: PLC0415
            os.environ.setdefault("HYPERFACE_MODEL_CACHE", str(Path(tmp) / "cache"))
            for n in threads:
                ort_net = OnnxRuntimeBackend(model_path("hyperface"), weights, threads=n)
                result["onnxruntime_forward_per_s"][str(n)] = _best_rate(lambda: ort_net.forward(data), batch, iters)
    result["sgemm_peak_gflops"] = sgemm_peak(peak_n, repeats=3)
    return result


def report(r: dict) -> list[str]:
    peak, g = r["sgemm_peak_gflops"], r["gflop_per_sample"]

    def pct(rate, factor=1.0):
        return 100.0 * rate * g * factor / peak

    lines = [f"sgemm peak {peak:.1f} GFLOP/s; HyperFace forward {g:.3f} GFLOP/sample; batch {r['batch']}",
             f"train fwd+bwd (pycaffe): {r['train_samples_per_s']:.1f} samples/s "
             f"({pct(r['train_samples_per_s'], 3):.0f}% of peak; target {TRAIN_TARGET:g})",
             f"forward (pycaffe): {r['caffe_forward_per_s']:.1f} proposals/s "
             f"({pct(r['caffe_forward_per_s']):.0f}% of peak; target {FORWARD_TARGET:g})"]
    for n, rate in r["opencv_forward_per_s"].items():
        lines.append(f"forward (OpenCV DNN, {n} threads): {rate:.1f} proposals/s ({pct(rate):.0f}% of peak)")
    for n, rate in r.get("onnxruntime_forward_per_s", {}).items():
        lines.append(f"forward (onnxruntime, {n} threads): {rate:.1f} proposals/s ({pct(rate):.0f}% of peak)")
    return lines


def _has_onnxruntime() -> bool:
    import importlib.util  # noqa: PLC0415
    return all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))


BACKEND_AB = ("opencv", "onnxruntime")


def backend_ab(batches: list[int], rounds: int, iters: int, peak_n: int, peak: float | None = None) -> dict:
    """OpenCV DNN and onnxruntime forward rates of the HyperFace deploy net (random weights),
    measured alternately: for each round, for each batch size, one backend then the other."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from blas_peak import sgemm_peak  # noqa: PLC0415
    from pipeline.backends import make_backend  # noqa: PLC0415
    from pipeline.model_store import write_caffemodel  # noqa: PLC0415
    from pipeline.net_shapes import infer_shapes, random_weights  # noqa: PLC0415
    from prototxt import model_path  # noqa: PLC0415

    if not _has_onnxruntime():
        raise SpeedCheckError("onnxruntime", "not importable (pip install -r requirements.txt)")
    proto = model_path("hyperface")
    threads = os.cpu_count() or 1
    cv2.setNumThreads(threads)
    data = np.random.default_rng(0).normal(0, 1, (max(batches), 3, 227, 227)).astype(np.float32)
    rates = {name: {str(b): [] for b in batches} for name in BACKEND_AB}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("HYPERFACE_MODEL_CACHE", str(Path(tmp) / "cache"))
        weights = write_caffemodel(proto, random_weights(proto, 0), Path(tmp) / "hyperface.caffemodel")
        nets = {name: make_backend(name, proto, weights) for name in BACKEND_AB}
        for k in range(rounds):
            for b in batches:
                for name, net in nets.items():
                    x = data[:b]
                    rates[name][str(b)].append(_best_rate(lambda: net.forward(x), b, iters))
                log.info("round %d batch %d: %s", k, b, ", ".join(f"{n} {rates[n][str(b)][-1]:.1f}/s" for n in nets))
    return {"gflop_per_sample": infer_shapes(proto, batch=1).total_flops / 1e9, "threads": threads,
            "rates": rates, "sgemm_peak_gflops": peak or sgemm_peak(peak_n, repeats=3),
            "peak_measured": peak is None}


def backend_ab_report(r: dict) -> list[str]:
    peak, g = r["sgemm_peak_gflops"], r["gflop_per_sample"]
    source = "measured now" if r.get("peak_measured", True) else "given with --peak"
    lines = [f"sgemm peak {peak:.1f} GFLOP/s ({source}); HyperFace forward {g:.3f} GFLOP/sample; {r['threads']} threads; "
             f"median of {len(next(iter(r['rates']['opencv'].values())))} alternating rounds"]
    for b, cv_rates in r["rates"]["opencv"].items():
        ort_rates = r["rates"]["onnxruntime"][b]
        ratio = statistics.median(o / c for o, c in zip(ort_rates, cv_rates))
        parts = []
        for name, label in (("opencv", "OpenCV DNN"), ("onnxruntime", "onnxruntime")):
            rate = statistics.median(r["rates"][name][b])
            parts.append(f"{label} {rate:.1f} proposals/s ({100 * rate * g / peak:.0f}% of peak)")
        lines.append(f"batch {b}: " + "; ".join(parts) + f"; onnxruntime/OpenCV {ratio:.2f}x "
                     f"(target {FORWARD_TARGET:g})")
    return lines


def prefix_env(prefix: Path) -> dict:
    if not (prefix / "python" / "caffe" / "__init__.py").is_file():
        raise SpeedCheckError(prefix, "not a Caffe install prefix (no python/caffe/__init__.py)")
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{prefix / 'python'}:{ROOT}"
    env["LD_LIBRARY_PATH"] = f"{prefix / 'lib'}:" + env.get("LD_LIBRARY_PATH", "")
    return env


def ab(prefixes: list[Path], rounds: int, args) -> list[str]:
    runs = {str(p): [] for p in prefixes}
    for k in range(rounds):
        for p in prefixes:
            cmd = [sys.executable, __file__, "--json", "--batch", str(args.batch), "--iters", str(args.iters),
                   "--peak-n", str(args.peak_n), "--threads", *map(str, args.threads)]
            out = subprocess.run(cmd, env=prefix_env(p), capture_output=True, text=True)
            if out.returncode:
                raise SpeedCheckError(p, f"benchmark failed: {out.stderr.strip().splitlines()[-1:]}")
            runs[str(p)].append(json.loads(out.stdout.strip().splitlines()[-1]))
            log.info("round %d %s: train %.1f/s forward %.1f/s", k, p.name,
                     runs[str(p)][-1]["train_samples_per_s"], runs[str(p)][-1]["caffe_forward_per_s"])
    a, b = (runs[str(p)] for p in prefixes)
    lines = []
    for key in ("train_samples_per_s", "caffe_forward_per_s"):
        ratios = [y[key] / x[key] for x, y in zip(a, b)]
        lines.append(f"{key}: A {[round(x[key], 1) for x in a]}  B {[round(y[key], 1) for y in b]}  "
                     f"median B/A {statistics.median(ratios):.2f}")
    lines.append(f"A = {prefixes[0]}\nB = {prefixes[1]}")
    lines += ["B (last round):"] + report(b[-1])
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1],
                        help="OpenCV DNN thread counts to try")
    parser.add_argument("--peak-n", type=int, default=2048, help="matrix side for the sgemm peak")
    parser.add_argument("--ab", nargs=2, type=Path, metavar=("PREFIX_A", "PREFIX_B"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peak", type=float, default=None,
                        help="--backend-ab: sgemm peak in GFLOP/s to report against (e.g. one measured idle) "
                             "instead of measuring it now")
    parser.add_argument("--backend-ab", action="store_true",
                        help="time the OpenCV DNN and onnxruntime pipeline backends alternately (no pycaffe)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes for --backend-ab")
    parser.add_argument("--json", action="store_true", help="print one JSON line (used by --ab)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.batch < 1 or args.iters < 1:
        raise SpeedCheckError("--batch/--iters", "must be >= 1")
    try:
        if args.backend_ab:
            if min(args.batches) < 1 or args.rounds < 1:
                raise SpeedCheckError("--batches/--rounds", "must be >= 1")
            result = backend_ab(args.batches, args.rounds, args.iters, args.peak_n, args.peak)
            lines = [json.dumps(result)] if args.json else backend_ab_report(result)
        elif args.ab:
            lines = ab(list(args.ab), args.rounds, args)
        else:
            result = measure(args.batch, args.iters, args.threads, args.peak_n)
            lines = [json.dumps(result)] if args.json else report(result)
    except SpeedCheckError as err:
        print(f"speed_check: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
