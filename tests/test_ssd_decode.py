"""The SSD proposal net in every backend: PriorBox and DetectionOutput in numpy (pipeline/ssd_decode.py)
equal Caffe's layers, and the ONNX conversion (Normalize, Permute, Reshape, pruned before PriorBox)
equals pycaffe and OpenCV DNN on the loc/conf outputs."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.config import DATA_ROOT
from pipeline.backends import OnnxRuntimeBackend, make_backend
from pipeline.model_store import write_caffemodel
from pipeline.net_shapes import random_weights
from pipeline.ssd_decode import (CONF_BLOB, LOC_BLOB, DetectionSettings, decode_boxes, detection_rows,
                                  detection_settings, prior_boxes)

REPO = Path(__file__).resolve().parents[1]
SSD = REPO / "prototxt" / "fast_hyperface_ssd" / "deploy.prototxt"
PHOTO = DATA_ROOT / "afw_sample" / "1004109301.jpg"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERFACE_MODEL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def ssd_weights(tmp_path_factory):
    """Random weights scaled so the class scores spread over (0, 1) (zero weights tie every score)."""
    w = random_weights(SSD, 7)
    w["conv3_2_norm"][0][:] = 1.0
    for name in w:  # 32,760 priors: full-scale random heads saturate the top scores at 1.0 (ties)
        if name.endswith("_mbox_conf"):
            w[name] = [blob * 0.25 for blob in w[name]]
    return write_caffemodel(SSD, w, tmp_path_factory.mktemp("ssd") / "w.caffemodel")


def _photo_input() -> np.ndarray:
    image = cv2.imread(str(PHOTO)) if PHOTO.is_file() else \
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    x = cv2.resize(image, (512, 512)).astype(np.float32) - np.array([104, 117, 123], np.float32)
    return x.transpose(2, 0, 1)[None] / 64.0  # unit-scale input keeps random-weight activations O(1)


def test_decode_by_hand():
    """One prior (0.2, 0.2)-(0.4, 0.6), variances 0.1/0.2: offsets (1, -1, ln 2 / 0.2, 0) move the
    centre by 0.1 * w = 0.02 right and 0.1 * h = 0.04 up and double the width."""
    priors = np.array([[0.2, 0.2, 0.4, 0.6]])
    var = np.array([[0.1, 0.1, 0.2, 0.2]])
    box = decode_boxes(np.array([1.0, -1.0, np.log(2) / 0.2, 0.0]), priors, var)[0]
    np.testing.assert_allclose(box, [0.12, 0.16, 0.52, 0.56], atol=1e-12)
    settings = DetectionSettings(2, 0, 0.3, 0.5, 10, 2)
    three = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.55], [0.5, 0.5, 1.0, 1.0]])
    conf = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4]])
    rows = detection_rows(np.zeros(12), conf, three, np.full((3, 4), 0.1), settings)
    # the second box overlaps the first at IoU 0.909 > 0.5 (suppressed); the third scores 0.4 > 0.3
    np.testing.assert_allclose(rows[:, 2], [0.9, 0.4])
    np.testing.assert_allclose(rows[:, 3:], three[[0, 2]])


def test_priors_equal_caffe(caffe, ssd_weights):
    net = caffe.Net(str(SSD), caffe.TEST, weights=str(ssd_weights))
    net.forward()
    want = net.blobs["mbox_priorbox"].data[0]
    priors, variances = prior_boxes(SSD)
    # 6 feature maps of 64, 32, 16, 8, 4, 2 cells a side, 6 priors per cell: 5,460 cells x 6
    assert priors.shape == (32760, 4)
    # cell (0, 0) of conv3_2_norm, in Caffe's order: per min size m (16, then 23) a square of m, a square of
    # sqrt(m * max) and a box 0.5 wide/tall of area m^2
    r = 0.5 ** 0.5
    np.testing.assert_allclose((priors[:6, 2] - priors[:6, 0]) * 512, [16, 368 ** .5, 16 * r, 23, 736 ** .5, 23 * r], rtol=1e-5)
    np.testing.assert_allclose((priors[:6, 3] - priors[:6, 1]) * 512, [16, 368 ** .5, 16 / r, 23, 736 ** .5, 23 / r], rtol=1e-5)
    np.testing.assert_allclose(priors, want[0].reshape(-1, 4), atol=1e-6)
    np.testing.assert_allclose(variances, want[1].reshape(-1, 4), atol=1e-7)


@pytest.mark.parametrize("nms", [None, 0.45])
def test_detection_rows_equal_caffe_detection_output(caffe, ssd_weights, tmp_path, nms):
    """The deploy net's DetectionOutput (no NMS, keep 200) and one with NMS 0.45 and keep 50."""
    proto = SSD
    if nms is not None:
        proto = tmp_path / "nms.prototxt"
        proto.write_text(SSD.read_text().replace("nms_threshold: 1.0", f"nms_threshold: {nms}")
                         .replace("keep_top_k: 200", "keep_top_k: 50"))
    settings = detection_settings(proto)
    assert (settings.nms_threshold, settings.keep_top_k) == pytest.approx((1.0, 200) if nms is None else (nms, 50))
    net = caffe.Net(str(proto), caffe.TEST, weights=str(ssd_weights))
    net.blobs["data"].data[...] = _photo_input()
    net.forward()
    want = net.blobs["detection_out"].data.reshape(-1, 7)
    got = detection_rows(net.blobs[LOC_BLOB].data[0], net.blobs[CONF_BLOB].data[0], *prior_boxes(SSD), settings)
    assert len(got) == len(want) == settings.keep_top_k
    assert len(np.unique(want[:, 2])) >= 0.9 * len(want)  # few ties: the order is the scores' order
    np.testing.assert_allclose(got[:, 2], want[:, 2], atol=1e-6)
    # rows with the same score may come in either order: compare each score group's boxes as sets
    for score in np.unique(want[:, 2]):
        g = got[np.abs(got[:, 2] - score) < 1e-6, 3:]
        w = want[np.abs(want[:, 2] - score) < 1e-6, 3:]
        np.testing.assert_allclose(g[np.lexsort(g.T)], w[np.lexsort(w.T)], atol=1e-5)


def test_onnxruntime_runs_the_ssd_net_like_pycaffe_and_opencv(ssd_weights):
    x = _photo_input()
    ort = make_backend("onnxruntime", SSD, ssd_weights, [LOC_BLOB, CONF_BLOB])
    assert isinstance(ort, OnnxRuntimeBackend)  # converted, not the OpenCV fallback
    got = ort.forward(x)
    refs = {"opencv": make_backend("opencv", SSD, ssd_weights, [LOC_BLOB, CONF_BLOB]).forward(x)}
    try:
        import caffe  # noqa: F401
        refs["caffe"] = make_backend("caffe", SSD, ssd_weights, [LOC_BLOB, CONF_BLOB]).forward(x)
    except ImportError:
        pass
    for ref, want in refs.items():
        for blob in (LOC_BLOB, CONF_BLOB):
            assert got[blob].shape == want[blob].shape
            scale = np.abs(want[blob]).max()
            np.testing.assert_allclose(got[blob], want[blob], atol=1e-4 * max(1.0, scale), err_msg=f"{blob} vs {ref}")
    assert np.ptp(got[CONF_BLOB]) > 0.1


def test_top_k_candidates_are_the_stable_sort_of_all_with_ties_at_the_cut():
    """Only the best top_k scores are sorted; with ties at the cut the earlier priors win, as a stable
    sort of every candidate would give (hand case: 8 priors, top_k 3, scores 0.9 and three 0.5)."""
    priors = np.array([[k / 10, 0, k / 10 + 0.1, 0.1] for k in range(8)], float)
    variances = np.full((8, 4), 0.1)
    conf = np.zeros((8, 2))
    conf[:, 1] = [0.2, 0.5, 0.9, 0.5, 0.005, 0.5, 0.3, 0.1]
    conf[:, 0] = 1 - conf[:, 1]
    settings = DetectionSettings(num_classes=2, background_label_id=0, confidence_threshold=0.01,
                                 nms_threshold=1.0, top_k=3, keep_top_k=-1)
    rows = detection_rows(np.zeros((8, 4)), conf, priors, variances, settings)
    assert rows[:, 2].tolist() == [0.9, 0.5, 0.5]
    np.testing.assert_allclose(rows[:, 3], [0.2, 0.1, 0.3])  # priors 2, then 1 and 3 (not 5)
    everything = detection_rows(np.zeros((8, 4)), conf, priors, variances,
                                DetectionSettings(2, 0, 0.01, 1.0, -1, -1))
    np.testing.assert_array_equal(rows, everything[:3])
    assert len(everything) == 7  # prior 4 is under the confidence threshold
