"""Numerical checks of the layers that third_party/caffe/speed.patch rewrote (OpenMP im2col/col2im via
Convolution, Pooling MAX/AVE, LRN across channels, ReLU), each in a tiny real pycaffe net against a
float64 numpy reference of Caffe's definition, forward values and backward gradients; plus the
net-level check that the HyperFace deploy outputs equal the stock build's (saved fixture) and OpenCV
DNN's within 1e-4 on the same weights."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "speed_hyperface_stock.npz"
RTOL = 2e-5  # float32 arithmetic vs the float64 reference, relative to the output's scale


def _net(caffe, text: str):
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write("force_backward: true\n" + text)
    try:
        return caffe.Net(f.name, caffe.TEST)
    finally:
        os.unlink(f.name)


def _layer_net(caffe, shape, layer: str, extra_input: str = ""):
    dims = " ".join(f"dim: {d}" for d in shape)
    return _net(caffe, f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
                       f'layer {{ name: "l" bottom: "data" top: "out" {layer} }}\n{extra_input}')


def _run(net, x, g):
    net.blobs["data"].data[...] = x
    net.forward()
    net.blobs["out"].diff[...] = g
    net.backward()
    return net.blobs["out"].data.astype(np.float64), net.blobs["data"].diff.astype(np.float64)


def _close(actual, expected, rtol=RTOL):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# ---------------------------------------------------------------- convolution (im2col / col2im)
def _im2col(x, kh, kw, stride, pad):
    """(C, H, W) -> (C*kh*kw, OH*OW), Caffe's row order (channel, kernel row, kernel col)."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    cols = np.empty((c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return cols.reshape(c * kh * kw, oh * ow), (oh, ow)


def _col2im(cols, shape, kh, kw, stride, pad, out_hw):
    c, h, w = shape
    oh, ow = out_hw
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
    cols = cols.reshape(c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, i, j]
    return xp[:, pad:pad + h, pad:pad + w]


@pytest.mark.parametrize("cin,cout,k,stride,pad,group,hw", [
    (3, 4, 11, 4, 0, 1, 27),   # conv1-like
    (4, 6, 5, 1, 2, 2, 9),     # conv2-like, grouped
    (6, 4, 3, 1, 1, 2, 7),     # conv4/5-like
    (5, 3, 3, 2, 1, 1, 8),     # stride 2 with padding (the strided im2col branch)
])
def test_convolution_forward_backward(caffe, cin, cout, k, stride, pad, group, hw):
    net = _layer_net(caffe, (2, cin, hw, hw), f'type: "Convolution" convolution_param {{ num_output: {cout} '
                     f'kernel_size: {k} stride: {stride} pad: {pad} group: {group} }}')
    rng = np.random.default_rng(1)
    weight, bias = net.params["l"][0], net.params["l"][1]
    weight.data[...] = rng.standard_normal(weight.data.shape)
    bias.data[...] = rng.standard_normal(bias.data.shape)
    x = rng.standard_normal((2, cin, hw, hw))
    g = rng.standard_normal(net.blobs["out"].data.shape)
    out, dx = _run(net, x, g)
    W, b = weight.data.astype(np.float64), bias.data.astype(np.float64)
    cg, og = cin // group, cout // group
    ref = np.zeros_like(out)
    ref_dx = np.zeros_like(x)
    ref_dw = np.zeros_like(W)
    for n in range(2):
        for gi in range(group):
            cols, ohw = _im2col(x[n, gi * cg:(gi + 1) * cg], k, k, stride, pad)
            w2 = W[gi * og:(gi + 1) * og].reshape(og, -1)
            gn = g[n, gi * og:(gi + 1) * og].reshape(og, -1)
            ref[n, gi * og:(gi + 1) * og] = (w2 @ cols).reshape(og, *ohw)
            ref_dw[gi * og:(gi + 1) * og] += (gn @ cols.T).reshape(og, cg, k, k)
            ref_dx[n, gi * cg:(gi + 1) * cg] = _col2im(w2.T @ gn, (cg, hw, hw), k, k, stride, pad, ohw)
    ref += b[None, :, None, None]
    assert out.shape == ref.shape
    _close(out, ref)
    _close(dx, ref_dx)
    _close(weight.diff.astype(np.float64), ref_dw)
    _close(bias.diff.astype(np.float64), g.sum(axis=(0, 2, 3)))


# ---------------------------------------------------------------- pooling
def _pool_ref(x, g, method, k, stride, pad, out_hw):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.zeros((n, c, oh, ow))
    dx = np.zeros_like(x)
    for ph in range(oh):
        for pw in range(ow):
            hs, ws = ph * stride - pad, pw * stride - pad
            if method == "MAX":
                he, we = min(hs + k, h), min(ws + k, w)
                hs, ws = max(hs, 0), max(ws, 0)
                win = x[:, :, hs:he, ws:we].reshape(n, c, -1)
                arg = win.argmax(axis=2)  # first maximum, row-major, as Caffe
                out[:, :, ph, pw] = win.max(axis=2)
                for i in range(n):
                    for j in range(c):
                        r, q = divmod(int(arg[i, j]), we - ws)
                        dx[i, j, hs + r, ws + q] += g[i, j, ph, pw]
            else:
                he, we = min(hs + k, h + pad), min(ws + k, w + pad)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                out[:, :, ph, pw] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
                dx[:, :, hs:he, ws:we] += g[:, :, ph, pw][:, :, None, None] / size
    return out, dx


@pytest.mark.parametrize("method,k,stride,pad,hw", [
    ("MAX", 3, 2, 0, 13), ("MAX", 3, 2, 1, 10), ("MAX", 2, 2, 0, 7),
    ("AVE", 3, 2, 0, 13), ("AVE", 3, 2, 1, 10), ("AVE", 3, 1, 1, 6)])
def test_pooling_forward_backward(caffe, method, k, stride, pad, hw):
    net = _layer_net(caffe, (2, 3, hw, hw), f'type: "Pooling" pooling_param {{ pool: {method} kernel_size: {k} '
                     f'stride: {stride} pad: {pad} }}')
    rng = np.random.default_rng(2)
    x = rng.permutation(2 * 3 * hw * hw).reshape(2, 3, hw, hw) / 10.0 - 20  # distinct values: no ties
    g = rng.standard_normal(net.blobs["out"].data.shape)
    out, dx = _run(net, x, g)
    ref, ref_dx = _pool_ref(x, g, method, k, stride, pad, out.shape[2:])
    _close(out, ref)
    _close(dx, ref_dx)


def test_max_pooling_ties_go_to_the_first_maximum(caffe):
    net = _layer_net(caffe, (1, 2, 5, 5), 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 }')
    out, dx = _run(net, np.ones((1, 2, 5, 5)), np.ones((1, 2, 2, 2)))
    assert out.shape == (1, 2, 2, 2) and np.all(out == 1)
    expected = np.zeros((5, 5))
    expected[[0, 0, 2, 2], [0, 2, 0, 2]] = 1  # top-left corner of each window
    np.testing.assert_array_equal(dx[0, 0], expected)
    np.testing.assert_array_equal(dx[0, 1], expected)


# ---------------------------------------------------------------- LRN
def _lrn_ref(x, g, size, alpha, beta, k):
    n, c, h, w = x.shape
    pre = (size - 1) // 2
    sq = np.pad(x ** 2, ((0, 0), (pre, size - 1 - pre), (0, 0), (0, 0)))
    scale = k + alpha / size * np.stack([sq[:, i:i + size].sum(axis=1) for i in range(c)], axis=1)
    y = x * scale ** -beta
    ratio = g * y / scale
    dx = g * scale ** -beta
    for i in range(c):  # channel j's window contains i  <=>  |i - j| within the window
        js = [j for j in range(c) if j - pre <= i <= j - pre + size - 1]
        dx[:, i] -= 2 * alpha * beta / size * x[:, i] * ratio[:, js].sum(axis=1)
    return y, dx


@pytest.mark.parametrize("size,alpha,beta,k,channels", [
    (5, 1e-4, 0.75, 1.0, 8),    # AlexNet's norm1/norm2 (the sqrt fast path)
    (3, 0.5, 0.6, 2.0, 5),      # another beta (std::pow path), strong normalisation
    (5, 2.0, 0.75, 1.0, 3)])    # window wider than the channel count
def test_lrn_across_channels_forward_backward(caffe, size, alpha, beta, k, channels):
    net = _layer_net(caffe, (3, channels, 6, 7), f'type: "LRN" lrn_param {{ local_size: {size} alpha: {alpha} '
                     f'beta: {beta} k: {k} }}')
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, channels, 6, 7)) * 3
    g = rng.standard_normal(x.shape)
    out, dx = _run(net, x, g)
    ref, ref_dx = _lrn_ref(x, g, size, alpha, beta, k)
    _close(out, ref)
    _close(dx, ref_dx)


# ---------------------------------------------------------------- ReLU
@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu_forward_backward_parallel_size(caffe, slope):
    shape = (2, 8, 64, 64)  # 65536 elements: above the OpenMP threshold
    net = _layer_net(caffe, shape, f'type: "ReLU" relu_param {{ negative_slope: {slope} }}')
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    out, dx = _run(net, x, g)
    x32 = x.astype(np.float32).astype(np.float64)
    _close(out, np.where(x32 > 0, x32, slope * x32))
    _close(dx, np.where(x32 > 0, g, slope * g))


# ---------------------------------------------------------------- HyperFace, net level
def hyperface_case(caffe):
    """The deploy HyperFace at batch 2 with seeded He-scaled weights and unit-scale inputs (so the
    outputs are O(1)); returns (net, input)."""
    from prototxt import model_path  # noqa: PLC0415
    net = caffe.Net(str(model_path("hyperface")), caffe.TEST)
    net.blobs["data"].reshape(2, *net.blobs["data"].data.shape[1:])
    net.reshape()
    rng = np.random.default_rng(7)
    for blobs in net.params.values():
        w = blobs[0].data
        blobs[0].data[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / (w.size / w.shape[0]))
        if len(blobs) > 1:
            blobs[1].data[...] = rng.normal(0, 0.1, blobs[1].data.shape)
    x = rng.standard_normal(net.blobs["data"].data.shape).astype(np.float32)
    return net, x


def hyperface_outputs(net, x) -> dict:
    net.blobs["data"].data[...] = x
    out = net.forward()
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def test_hyperface_matches_stock_build_and_opencv(caffe, tmp_path):
    import cv2  # noqa: PLC0415
    from prototxt import model_path  # noqa: PLC0415
    net, x = hyperface_case(caffe)
    ours = hyperface_outputs(net, x)
    assert set(ours) >= {"detection_prob", "landmarks", "visibility", "pose", "gender_prob"}
    assert ours["landmarks"].shape == (2, 42) and ours["pose"].shape == (2, 3)
    assert max(np.abs(v).max() for v in ours.values()) > 0.1  # outputs are not vanishing
    stock = np.load(FIXTURE)
    assert set(stock.files) == set(ours)
    for name, value in ours.items():
        np.testing.assert_allclose(value, stock[name], rtol=0, atol=1e-4, err_msg=name)
    weights = tmp_path / "hf.caffemodel"
    net.save(str(weights))
    cv_net = cv2.dnn.readNetFromCaffe(str(model_path("hyperface")), str(weights))
    cv_net.setInput(x, "data")
    names = list(ours)
    for name, value in zip(names, cv_net.forward(names)):
        np.testing.assert_allclose(np.asarray(value, np.float64).reshape(ours[name].shape), ours[name],
                                   rtol=0, atol=1e-4, err_msg=f"OpenCV {name}")


if __name__ == "__main__":  # write the fixture with the STOCK build on the path (see benchmarks/SPEED.md)
    import caffe as _caffe
    _caffe.set_mode_cpu()
    _net_, _x = hyperface_case(_caffe)
    np.savez(FIXTURE, **{k: v.astype(np.float32) for k, v in hyperface_outputs(_net_, _x).items()})
    print(f"wrote {FIXTURE} with {_caffe.__file__}")
