"""The onnxruntime backend: pipeline/caffe_to_onnx.py layer by layer against OpenCV DNN (tiny nets),
the full HyperFace and R-CNN Face deploy nets against OpenCV DNN and pycaffe, the unsupported-layer
error, the cache, and HyperFace(..., backend="onnxruntime").detect on a real image."""
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from core.config import DATA_ROOT  # noqa: E402
from pipeline import HyperFace  # noqa: E402
from pipeline.backends import OnnxRuntimeBackend, OpenCVBackend, make_backend  # noqa: E402
from pipeline.caffe_to_onnx import UnsupportedLayerError, cached_onnx, convert  # noqa: E402
from pipeline.fixtures import make_model_dir  # noqa: E402
from pipeline.geometry import mean_shape  # noqa: E402
from pipeline.model_store import write_caffemodel  # noqa: E402
from pipeline.net_shapes import random_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AFW_IMAGE = DATA_ROOT / "afw_sample" / "1004109301.jpg"
TINY = REPO / "tests" / "fixtures" / "tiny_hyperface" / "deploy.prototxt"
DEPLOYS = [REPO / "prototxt" / n / "deploy.prototxt" for n in ("hyperface", "rcnn_face")]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERFACE_MODEL_CACHE", str(tmp_path / "cache"))


def _net(body: str, shape=(2, 8, 9, 9)) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'name: "t"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            + body)


def _compare(tmp_path, text: str, shape=(2, 8, 9, 9), weights=None, lrn_as_conv=True, atol=1e-5,
             against_opencv=True):
    """onnxruntime outputs of a tiny net (asserted equal to OpenCV DNN's unless against_opencv=False)."""
    proto = tmp_path / "net.prototxt"
    proto.write_text(_net(text, shape))
    cm = write_caffemodel(proto, weights if weights is not None else random_weights(proto, 1), tmp_path / "w.caffemodel")
    x = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    if lrn_as_conv:
        got = OnnxRuntimeBackend(proto, cm).forward(x)
    else:
        import onnxruntime as ort
        model = convert(proto, cm, lrn_as_conv=False)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        got = dict(zip(names, sess.run(names, {"data": x})))
    if against_opencv:
        want = OpenCVBackend(proto, cm).forward(x)
        assert set(got) == set(want)
        for name in want:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=1e-5, err_msg=name)
    return got


CONV = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param '
        '{ num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 } }\n')


def test_convolution_group_pad_stride_and_relu(tmp_path):
    got = _compare(tmp_path, CONV + 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n'
                   'layer { name: "c2" type: "Convolution" bottom: "c" top: "c2" convolution_param '
                   '{ num_output: 4 kernel_h: 2 kernel_w: 3 pad_h: 0 pad_w: 1 bias_term: false } }\n'
                   'layer { name: "leaky" type: "ReLU" bottom: "c2" top: "leaky" relu_param { negative_slope: 0.1 } }\n')
    # (OpenCV DNN looks outputs up by layer name, so each compared blob is named after its layer and
    # is not in-place; in-place chains inside the net are covered)
    assert got["leaky"].shape == (2, 4, 4, 5) and (got["leaky"] < 0).any()  # (9+2-3)/2+1 = 5; then 5-2+1, 5+2-3+1


@pytest.mark.parametrize("beta,k", [(0.75, 1), (0.6, 1), (0.75, 2)])
@pytest.mark.parametrize("lrn_as_conv", [True, False])
def test_lrn_across_channels_both_forms(tmp_path, beta, k, lrn_as_conv):
    # O(10) activations so that alpha/n * sum(x^2) is not negligible next to k
    text = (f'layer {{ name: "s" type: "Scale" bottom: "data" top: "s" }}\n'
            f'layer {{ name: "n" type: "LRN" bottom: "s" top: "n" lrn_param '
            f'{{ local_size: 5 alpha: 0.01 beta: {beta} k: {k} }} }}\n')
    # OpenCV DNN 4.11 ignores LRN's k (always 1; pycaffe agrees with the reference below for k=2),
    # so k != 1 is checked against the float64 reference of Caffe's formula only
    got = _compare(tmp_path, text, weights={"s": [np.full(8, 30.0, np.float32)]}, lrn_as_conv=lrn_as_conv,
                   atol=1e-4, against_opencv=k == 1)
    x = 30.0 * np.random.default_rng(0).normal(0, 1, (2, 8, 9, 9)).astype(np.float32).astype(np.float64)
    padded = np.pad(x ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(padded[:, i:i + 8] for i in range(5))
    np.testing.assert_allclose(got["n"], x * (k + 0.01 / 5 * window) ** -beta, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
@pytest.mark.parametrize("pad", [0, 1])
def test_pooling_ceil_rounding_and_padding(tmp_path, pool, pad):
    # 10 wide, kernel 3, stride 2: Caffe rounds up to ceil((10+2p-3)/2)+1 outputs, the last window overhangs
    text = (f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
            f'{{ pool: {pool} kernel_size: 3 stride: 2 pad: {pad} }} }}\n')
    got = _compare(tmp_path, text, shape=(2, 3, 10, 10))
    assert got["p"].shape == ((2, 3, 5, 5) if pad == 0 else (2, 3, 6, 6))


def test_global_pooling_concat_innerproduct_softmax(tmp_path):
    text = (CONV + 'layer { name: "g" type: "Pooling" bottom: "c" top: "g" pooling_param { pool: AVE global_pooling: true } }\n'
            'layer { name: "m" type: "Pooling" bottom: "c" top: "m" pooling_param { pool: MAX global_pooling: true } }\n'
            'layer { name: "cat" type: "Concat" bottom: "g" bottom: "m" top: "cat" concat_param { axis: 1 } }\n'
            'layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 5 } }\n'
            'layer { name: "fc4" type: "InnerProduct" bottom: "c" top: "fc4" inner_product_param { num_output: 3 bias_term: false } }\n'
            'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n'
            'layer { name: "d" type: "Dropout" bottom: "fc4" top: "fc4" }\n'
            'layer { name: "f" type: "Flatten" bottom: "c" top: "f" }\n')
    got = _compare(tmp_path, text)
    assert got["prob"].shape == (2, 5) and got["fc4"].shape == (2, 3) and got["f"].shape == (2, 6 * 5 * 5)
    np.testing.assert_allclose(got["prob"].sum(1), 1.0, atol=1e-6)


def test_eltwise_batchnorm_scale(tmp_path):
    text = (CONV + 'layer { name: "c3" type: "Convolution" bottom: "data" top: "c3" convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 } }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "c" bottom: "c3" top: "sum" eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }\n'
            'layer { name: "prod" type: "Eltwise" bottom: "c" bottom: "c3" bottom: "sum" top: "prod" eltwise_param { operation: PROD } }\n'
            'layer { name: "max" type: "Eltwise" bottom: "c" bottom: "c3" top: "max" eltwise_param { operation: MAX } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "sum" top: "bn" batch_norm_param { eps: 0.001 } }\n'
            'layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: true } }\n')
    proto = tmp_path / "net.prototxt"
    proto.write_text(_net(text))
    w = random_weights(proto, 2)
    rng = np.random.default_rng(3)
    w["bn"] = [rng.normal(0, 1, 6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32), np.array([4.0], np.float32)]
    w["sc"] = [rng.uniform(0.5, 2, 6).astype(np.float32), rng.normal(0, 1, 6).astype(np.float32)]
    got = _compare(tmp_path, text, weights=w)
    assert got["sc"].shape == got["prod"].shape == got["max"].shape == (2, 6, 5, 5)


def _deploy_inputs(n=3):
    # unit-variance input keeps He-initialised activations O(1), the scale of trained outputs
    return np.random.default_rng(0).normal(0, 1, (n, 3, 227, 227)).astype(np.float32)


@pytest.mark.parametrize("prototxt", DEPLOYS, ids=lambda p: p.parent.name)
def test_deploy_nets_match_opencv_and_pycaffe(tmp_path, prototxt):
    cm = write_caffemodel(prototxt, random_weights(prototxt, 3), tmp_path / "w.caffemodel")
    x = _deploy_inputs()
    got = make_backend("onnxruntime", prototxt, cm)
    assert isinstance(got, OnnxRuntimeBackend)
    got = got.forward(x)
    refs = {"opencv": make_backend("opencv", prototxt, cm).forward(x)}
    try:
        import caffe  # noqa: F401
        refs["caffe"] = make_backend("caffe", prototxt, cm).forward(x)
    except ImportError:
        pass
    for ref_name, want in refs.items():
        assert set(got) == set(want)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-4,
                                       err_msg=f"{prototxt.parent.name} {name} vs {ref_name}")
    assert max(np.ptp(v, axis=0).max() for v in got.values()) > 1e-2  # the outputs differ between inputs


def test_cache_is_reused_and_keyed_by_weights(tmp_path):
    first = write_caffemodel(TINY, random_weights(TINY, 0), tmp_path / "a.caffemodel")
    second = write_caffemodel(TINY, random_weights(TINY, 1), tmp_path / "b.caffemodel")
    path = cached_onnx(TINY, first)
    assert path.is_file() and path.is_relative_to(tmp_path / "cache" / "models")
    stamp = path.stat().st_mtime_ns
    assert cached_onnx(TINY, first) == path and path.stat().st_mtime_ns == stamp
    assert cached_onnx(TINY, second) != path


def test_unsupported_layer_is_one_clear_line(tmp_path, caplog):
    proto = tmp_path / "net.prototxt"
    proto.write_text(_net(CONV + 'layer { name: "act" type: "Sigmoid" bottom: "c" top: "act" }\n'))
    cm = write_caffemodel(proto, random_weights(proto, 0), tmp_path / "w.caffemodel")
    with pytest.raises(UnsupportedLayerError) as err:
        OnnxRuntimeBackend(proto, cm)
    msg = str(err.value)
    assert "\n" not in msg and str(proto) in msg and "'act'" in msg and "Sigmoid" in msg
    # make_backend (the pipeline's entry) runs such a net with OpenCV DNN
    backend = make_backend("onnxruntime", proto, cm)
    assert isinstance(backend, OpenCVBackend) and "Sigmoid" in caplog.text
    lrn = tmp_path / "lrn.prototxt"
    lrn.write_text(_net('layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { norm_region: WITHIN_CHANNEL } }\n'))
    with pytest.raises(UnsupportedLayerError, match="'n' \\(LRN\\): LRN WITHIN_CHANNEL"):
        convert(lrn, cm)


def test_detect_with_onnxruntime_matches_opencv(tmp_path):
    # as tests/test_pipeline_e2e.py: small trunk weights (O(1) activations on mean-subtracted pixels)
    # and heads that put the mean shape in every box, so scores and boxes are not saturated
    w = random_weights(TINY, 0)
    for k in ("conv1", "conv2", "fc_full"):
        w[k][0] *= 0.05
    w["fc_detection"][1][:] = 0
    w["landmarks"][0][:] = 0
    w["landmarks"][1][:] = (mean_shape() - 0.5).ravel()
    model = make_model_dir(TINY, tmp_path / "model", w)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("selective_search: {max_side: 200, max_proposals: 40}\ntest: {batch_size: 16, max_image_side: 700, proposals: fast}\n")
    image = cv2.imread(str(AFW_IMAGE))
    assert image is not None, AFW_IMAGE
    hf = HyperFace(model, backend="onnxruntime", config=cfg)
    ref = HyperFace(model, backend="opencv", config=cfg)
    assert hf.backend.name == "onnxruntime" and ref.backend.name == "opencv"
    faces = hf.detect(image)
    assert hf.last_timings["num_proposals"] <= 40 and len(faces) >= 1
    assert faces[0].box.shape == (4,) and faces[0].landmarks.shape == (21, 2) and np.isfinite(faces[0].landmarks).all()
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    # selective search may order its boxes differently from call to call: compare on the same boxes
    boxes = hf.propose(image)
    got, want = hf.evaluate(image, boxes), ref.evaluate(image, boxes)
    assert len(got) == len(boxes) > 16  # more than one batch
    for field in ("scores", "landmarks", "visibility", "pose_deg", "gender_prob_male"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), atol=1e-3, rtol=1e-4, err_msg=field)


def _shipped_model_batch():
    """(shipped model, number of faces, net input): the faces of an AFW photo and 3 background regions."""
    from benchmarks.datasets.afw import load_afw
    from core.config import load_config
    from core.model_store import load_model
    from pipeline.geometry import make_batch

    model_dir = REPO / "models" / "hyperface"
    if not model_dir.is_dir():
        pytest.skip("no shipped model in models/hyperface")
    cfg = load_config()
    rec = next(r for r in load_afw(DATA_ROOT / "afw_sample") if r.image_id == "1004109301")
    image = cv2.imread(str(rec.path))
    boxes = np.array([f.box for f in rec.faces] + [[0, 0, 150, 150], [300, 500, 600, 800], [-40, 600, 120, 830]], float)
    return load_model(model_dir), len(rec.faces), make_batch(image, boxes, cfg.input.size, cfg.input.mean_bgr)


def test_shipped_model_onnxruntime_matches_pycaffe(caffe):
    """ONNX Runtime with the shipped trained weights (models/hyperface, fp16 expanded) against
    pycaffe, the reference, on real face crops and background regions of an AFW photo: every output
    within 1e-4 (trained weights, not only random ones, go through the converter unchanged)."""
    model, _, x = _shipped_model_batch()
    got = make_backend("onnxruntime", model.prototxt, model.caffemodel)
    assert isinstance(got, OnnxRuntimeBackend)
    got = got.forward(x)
    want = make_backend("caffe", model.prototxt, model.caffemodel).forward(x)
    assert set(got) == set(want) and {"detection_prob", "landmarks", "visibility", "pose", "gender_prob"} <= set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-4, err_msg=name)
    assert np.ptp(want["detection_prob"][:, 1]) > 1e-3          # real outputs that differ between regions


def test_shipped_model_openvino_fp32_and_bf16_against_pycaffe(caffe):
    """OpenVINO on the same converted graph: fp32 within 1e-4 of pycaffe; bf16 (the default backend on
    CPUs with AMX / AVX512_BF16) within the error of an 8-bit mantissa on every output, and the same
    face / background decision for every region at the pipeline's threshold."""
    pytest.importorskip("openvino")
    from pipeline.backends import OpenVINOBackend

    model, faces, x = _shipped_model_batch()
    want = make_backend("caffe", model.prototxt, model.caffemodel).forward(x)
    exact = make_backend("openvino-fp32", model.prototxt, model.caffemodel)
    assert isinstance(exact, OpenVINOBackend) and exact.name == "openvino-fp32" and exact.precision == "f32"
    got = exact.forward(x)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=1e-4, err_msg=name)
    fast = make_backend("openvino", model.prototxt, model.caffemodel)
    assert fast.name == "openvino" and fast.precision in ("bf16", "f32")  # f32 where the CPU has no bf16 units
    got = fast.forward(x)
    # measured here: 6e-6, 8e-4, 2.5e-3, 1.8e-3, 2.9e-3
    tolerance = {"detection_prob": 0.005, "gender_prob": 0.01, "visibility": 0.015, "landmarks": 0.01, "pose": 0.015}
    for name, atol in tolerance.items():
        np.testing.assert_allclose(got[name], want[name], atol=atol, err_msg=name)
    assert np.array_equal(got["detection_prob"][:, 1] >= 0.5, want["detection_prob"][:, 1] >= 0.5)
    assert (want["detection_prob"][:, 1] >= 0.5).sum() == faces  # real faces, real background
