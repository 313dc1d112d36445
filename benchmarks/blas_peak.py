"""Single-precision GEMM peak of this CPU, measured with numpy (its bundled OpenBLAS).

    python benchmarks/blas_peak.py [--n 2048] [--repeats 5] [--threads 2]

Prints the best GFLOP/s of C = A @ B for square float32 matrices of side n (2 n^3 flops each),
and the GFLOP/s at the GEMM shapes of HyperFace's conv layers (one image, Caffe's per-image
im2col GEMM: M = output channels per group, K = C_in/group * kh * kw, N = output pixels).
The peak is the yardstick of benchmarks/speed_check.py ("% of peak").
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

log = logging.getLogger("blas_peak")

# (name, M, K, N) of HyperFace's conv GEMMs per image (and per group), 227x227 input
CONV_GEMMS = (("conv1", 96, 363, 3025), ("conv2", 128, 1200, 729), ("conv3", 384, 2304, 169),
              ("conv4", 192, 1728, 169), ("conv5", 128, 1728, 169))


def gemm_gflops(m: int, k: int, n: int, repeats: int = 5, min_seconds: float = 0.05) -> float:
    """Best GFLOP/s of a float32 (m x k) @ (k x n) product over `repeats` timed rounds."""
    import numpy as np  # noqa: PLC0415  (after the thread variables are set)
    if min(m, k, n) < 1 or repeats < 1:
        raise ValueError(f"gemm_gflops: bad shape/repeats m={m} k={k} n={n} repeats={repeats}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up (thread pool start, page faults)
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            np.matmul(a, b, out=c)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, 2.0 * m * k * n * calls / elapsed / 1e9)
    return best


def sgemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n x n matrix product (the machine's practical peak)."""
    return gemm_gflops(n, n, n, repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="BLAS threads (set before numpy loads; default: all cores)")
    parser.add_argument("--no-conv", action="store_true", help="skip the conv-shape table")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    peak = sgemm_peak(args.n, args.repeats)
    print(f"sgemm peak: {peak:.1f} GFLOP/s (n={args.n}, {args.threads} threads)")
    if not args.no_conv:
        for name, m, k, n in CONV_GEMMS:
            g = gemm_gflops(m, k, n, args.repeats)
            print(f"  {name:<6} M={m:<4} K={k:<5} N={n:<5} {g:7.1f} GFLOP/s ({100 * g / peak:.0f}% of peak)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
