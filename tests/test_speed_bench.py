"""benchmarks/blas_peak.py and benchmarks/speed_check.py run at tiny size and report consistent numbers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import blas_peak  # noqa: E402


def test_gemm_gflops_is_positive_and_rejects_bad_shapes():
    g = blas_peak.gemm_gflops(64, 64, 64, repeats=1, min_seconds=0.01)
    assert 0.1 < g < 1e5
    with pytest.raises(ValueError, match="bad shape"):
        blas_peak.gemm_gflops(0, 4, 4)


def test_forward_gflop_of_hyperface_is_the_papers_alexnet_count(caffe):
    import net_speed  # noqa: PLC0415
    import speed_check  # noqa: PLC0415
    g = speed_check.forward_gflop(net_speed.load("hyperface", 1))
    assert g == pytest.approx(1.457, abs=0.005)  # conv1..conv5 + conv1a/3a/all + fc layers


def test_speed_check_cli_tiny(caffe_env):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed_check.py"), "--batch", "1", "--iters", "1",
                          "--peak-n", "128", "--threads", "1"], capture_output=True, text=True, env=caffe_env,
                         check=True).stdout.splitlines()
    assert out[0].startswith("sgemm peak") and "1.457 GFLOP/sample" in out[0]
    assert out[1].startswith("train fwd+bwd (pycaffe):") and "samples/s" in out[1] and "target 25" in out[1]
    assert out[2].startswith("forward (pycaffe):") and "proposals/s" in out[2]
    assert out[3].startswith("forward (OpenCV DNN, 1 threads):")


def test_speed_check_ab_rejects_a_bad_prefix(tmp_path, caffe_env):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed_check.py"), "--ab", str(tmp_path),
                          str(tmp_path), "--rounds", "1"], capture_output=True, text=True, env=caffe_env)
    assert out.returncode == 2
    assert out.stderr.strip() == f"speed_check: {tmp_path}: not a Caffe install prefix (no python/caffe/__init__.py)"


def test_blas_peak_cli_tiny():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "blas_peak.py"), "--n", "128", "--repeats", "1",
                          "--threads", "1"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("sgemm peak:") and "GFLOP/s (n=128, 1 threads)" in out[0]
    assert [line.split()[0] for line in out[1:]] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
