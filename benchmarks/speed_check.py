"""The issue-7 speed targets of HyperFace on this CPU, in samples/s, proposals/s and % of the sgemm peak.

    python benchmarks/speed_check.py [--batch 32] [--iters 3] [--threads 2 ...]
    python benchmarks/speed_check.py --ab PREFIX_A PREFIX_B [--rounds 3]   # A/B two Caffe builds

Measures, for the HyperFace deploy net with random weights (speed does not depend on them):
  * training forward+backward with pycaffe (samples/s; target >= 25),
  * inference forward with pycaffe and with OpenCV DNN (DNN_BACKEND_OPENCV, CPU target) at each
    --threads count (proposals/s; target >= 120),
  * the sgemm peak with numpy (benchmarks/blas_peak.py) and each rate as % of it (forward FLOPs of
    conv + fc layers counted from the net; training counts 3x the forward FLOPs).
--ab runs this script alternately under two Caffe install prefixes (A B A B ...) in subprocesses, so
that a busy machine affects both alike, and prints the per-round rates and the median B/A ratio.
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

log = logging.getLogger("speed_check")
TRAIN_TARGET, FORWARD_TARGET = 25.0, 120.0  # issue 7: samples/s (fwd+bwd), proposals/s (fwd)


class SpeedCheckError(Exception):
    """A bad argument or Caffe prefix, with the path it concerns."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


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
    parser.add_argument("--json", action="store_true", help="print one JSON line (used by --ab)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.batch < 1 or args.iters < 1:
        raise SpeedCheckError("--batch/--iters", "must be >= 1")
    try:
        if args.ab:
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
