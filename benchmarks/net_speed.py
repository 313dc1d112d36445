"""Forward and forward+backward speed of the deploy nets on this CPU, with a per-layer profile.

    python benchmarks/net_speed.py [--models hyperface multitask_face hf_resnet] [--batch 32] [--iters 5]

Prints, per model: ms per batch for forward and forward+backward, samples/s, and a table of the
mean forward and backward ms of every layer (each layer timed alone with pycaffe's
Net._forward(i, i) / Net._backward(i, i)). Weights are random (speed does not depend on them);
backward gets random output gradients.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GLOG_minloglevel", "2")

import caffe  # noqa: E402

from prototxt import model_path  # noqa: E402

log = logging.getLogger("net_speed")
DEFAULT_MODELS = ("hyperface", "multitask_face", "hf_resnet")


def load(model: str, batch: int):
    """The deploy net of `model` at `batch`, random weights, with force_backward (a deploy net has no
    loss, so Caffe would otherwise skip every backward)."""
    text = "force_backward: true\n" + model_path(model).read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    try:
        net = caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)
    shape = net.blobs["data"].data.shape
    net.blobs["data"].reshape(batch, *shape[1:])
    net.reshape()
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.01, blob.data.shape)
    net.blobs["data"].data[...] = rng.normal(0, 40, net.blobs["data"].data.shape)
    return net


def _set_output_diffs(net):
    for name in net.outputs:
        net.blobs[name].diff[...] = 1e-3


def time_net(net, iters: int) -> dict:
    """Mean ms of forward and forward+backward over `iters` runs (after one warm-up), and per layer."""
    names = list(net._layer_names)
    net.forward()
    forward, both = [], []
    per_forward = np.zeros(len(names))
    per_backward = np.zeros(len(names))
    for _ in range(iters):
        start = time.perf_counter()
        net.forward()
        forward.append(time.perf_counter() - start)
        _set_output_diffs(net)
        start = time.perf_counter()
        net.forward()
        _set_output_diffs(net)
        net.backward()
        both.append(time.perf_counter() - start)
        for i in range(len(names)):
            start = time.perf_counter()
            net._forward(i, i)
            per_forward[i] += time.perf_counter() - start
        _set_output_diffs(net)
        for i in reversed(range(len(names))):
            start = time.perf_counter()
            net._backward(i, i)
            per_backward[i] += time.perf_counter() - start
    return {
        "forward_ms": 1000 * float(np.mean(forward)),
        "forward_backward_ms": 1000 * float(np.mean(both)),
        "layers": [(name, net.layers[i].type, 1000 * per_forward[i] / iters, 1000 * per_backward[i] / iters)
                   for i, name in enumerate(names)],
    }


def report(model: str, batch: int, result: dict, top: int | None) -> str:
    lines = [f"{model}: batch {batch}  forward {result['forward_ms']:.1f} ms "
             f"({1000 * batch / result['forward_ms']:.1f} samples/s)  forward+backward "
             f"{result['forward_backward_ms']:.1f} ms ({1000 * batch / result['forward_backward_ms']:.1f} samples/s)",
             f"  {'layer':<28}{'type':<16}{'forward ms':>12}{'backward ms':>13}"]
    layers = result["layers"]
    if top:
        layers = sorted(layers, key=lambda row: -(row[2] + row[3]))[:top]
    lines += [f"  {name:<28}{kind:<16}{fwd:>12.2f}{bwd:>13.2f}" for name, kind, fwd, bwd in layers]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--top", type=int, default=None, help="show only the N slowest layers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    caffe.set_mode_cpu()
    for model in args.models:
        log.info("timing %s (batch %d, %d iterations)", model, args.batch, args.iters)
        result = time_net(load(model, args.batch), args.iters)
        print(report(model, args.batch, result, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
