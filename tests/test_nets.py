"""prototxt/: every net parses and builds in pycaffe, deploys agree with OpenCV DNN, HyperFace has
the shapes of Section 3.1, loss weights equal core/config.py, net surgery copies bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest

import cv2
from test_nets_support import CFG, aflw_samples, caffe, randomize, train_val_net, write_lmdbs

from core import net_io
from core.labels import SEGMENTS
from prototxt import MODELS, PROTOTXT_DIR, model_path
from prototxt.net_surgery import TRUNK, SurgeryError, copy_params, transfer
from prototxt.netspec_utils import PrototxtError, read_net, read_solver, solver_for, with_data_sources

ALEXNET_FAMILY = ("rcnn_face", "rcnn_fiducial", "rcnn_pose", "rcnn_gender", "multitask_face", "hyperface",
                  "hyperface_ibug68")
LOSS_TASK = {"loss_detection": "detection", "loss_landmarks": "landmarks", "loss_visibility": "visibility",
             "loss_pose": "pose", "loss_gender": "gender", "loss_bbox": "bbox", "loss_landmarks68": "landmarks68"}


@pytest.fixture(scope="module")
def lmdbs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nets_lmdb")
    return write_lmdbs(tmp, aflw_samples(4))


@pytest.mark.parametrize("model", MODELS)
def test_every_prototxt_parses(model):
    for kind in ("train_val", "deploy"):
        net = read_net(model_path(model, kind))
        assert len(net.layer) > 10
    solver = read_solver(model_path(model, "solver"))
    assert solver.net == f"prototxt/{model}/train_val.prototxt"
    assert solver.snapshot_prefix == f"snapshots/{model}"


@pytest.mark.parametrize("model", MODELS)
def test_loss_weights_match_config(model):
    net = read_net(model_path(model, "train_val"))
    losses = {layer.name: list(layer.loss_weight) for layer in net.layer if layer.type.endswith("Loss")}
    assert losses, f"{model}: no loss layer"
    for name, weights in losses.items():
        if model == "fast_hyperface_ssd":
            assert name == "mbox_loss" and weights in ([], [1.0])
            continue
        expected = getattr(CFG.loss_weights, LOSS_TASK[name])
        assert weights == [pytest.approx(expected)], f"{model}/{name}: {weights} != config {expected}"


@pytest.mark.parametrize("model", ALEXNET_FAMILY)
def test_label_slice_and_masks(model):
    net = read_net(model_path(model, "train_val"))
    (slice_layer,) = [layer for layer in net.layer if layer.type == "Slice"]
    assert list(slice_layer.top) == list(SEGMENTS)
    from core.labels import SLICE_POINTS
    assert list(slice_layer.slice_param.slice_point) == SLICE_POINTS
    data_layers = [layer for layer in net.layer if layer.type == "Data"]
    assert sorted(layer.data_param.source for layer in data_layers) == [
        "lmdb/train_images", "lmdb/train_labels", "lmdb/val_images", "lmdb/val_labels"]
    for layer in data_layers:
        assert not layer.transform_param.mirror
        if layer.top[0] == "data":
            assert tuple(layer.transform_param.mean_value) == CFG.input.mean_bgr
    # every label segment is consumed (by a loss, a mask product or the Silence layer)
    consumers = {b for layer in net.layer if layer.type != "Slice" for b in layer.bottom if b in SEGMENTS}
    assert consumers == set(SEGMENTS)
    # each masked Euclidean loss compares pred * mask with target * mask
    for layer in net.layer:
        if layer.type == "EuclideanLoss":
            task = layer.name[len("loss_"):]
            assert list(layer.bottom) == [f"{task}_masked", f"{task}_target_masked"]
    for layer in net.layer:
        if layer.type == "Eltwise":
            assert layer.eltwise_param.operation == 0  # PROD
            assert layer.bottom[1].endswith("_mask")


@pytest.mark.parametrize("model", ALEXNET_FAMILY)
def test_train_val_builds_on_real_lmdb(model, lmdbs, tmp_path):
    path = train_val_net(model, *lmdbs, tmp_path, batch=2)
    net = caffe.Net(str(path), caffe.TRAIN)
    net.forward()
    assert net.blobs["data"].data.shape == (2, 3, CFG.input.size, CFG.input.size)
    assert net.blobs["label"].data.shape == (2, 414, 1, 1)
    losses = [name for name in net.outputs if name.startswith("loss_")]
    assert losses and all(np.isfinite(net.blobs[name].data).all() for name in losses)


def _compare_with_opencv(model, tmp_path, outputs=None, gain=1.0):
    net = caffe.Net(str(model_path(model)), caffe.TEST)
    randomize(net, gain=gain)
    weights = tmp_path / f"{model}.caffemodel"
    net.save(str(weights))
    shape = net.blobs["data"].data.shape
    x = np.random.default_rng(1).normal(0, 40, shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    names = outputs or list(net.outputs)
    cv_net = cv2.dnn.readNetFromCaffe(str(model_path(model)), str(weights))
    cv_net.setInput(x)
    cv_out = cv_net.forward(names)
    for name, theirs in zip(names, cv_out):
        ours = net.blobs[name].data
        assert ours.size == theirs.size, name
        scale = max(1.0, float(np.abs(ours).max()))
        assert np.abs(ours.reshape(theirs.shape) - theirs).max() / scale < 1e-4, name
    return net


@pytest.mark.parametrize("model", ALEXNET_FAMILY)
def test_deploy_matches_opencv(model, tmp_path):
    net = _compare_with_opencv(model, tmp_path)
    for name in net.outputs:
        assert name in (*net_io.HYPERFACE_OUTPUTS, net_io.BBOX_DELTAS, net_io.LANDMARKS68)
        if name.endswith("_prob"):
            np.testing.assert_allclose(net.blobs[name].data.sum(axis=1), 1.0, rtol=1e-5)


def test_hyperface_blob_shapes():
    net = caffe.Net(str(model_path("hyperface")), caffe.TEST)
    net.blobs["data"].reshape(2, 3, 227, 227)
    net.reshape()
    expected = {"pool1": (96, 27, 27), "conv3": (384, 13, 13), "pool5": (256, 6, 6), "conv1a": (256, 6, 6),
                "conv3a": (256, 6, 6), "concat": (768, 6, 6), "conv_all": (192, 6, 6), "fc_full": (3072,),
                "fc_detection": (512,), "fc_landmarks": (512,), "fc_visibility": (512,), "fc_pose": (512,),
                "fc_gender": (512,), "detection_prob": (2,), "landmarks": (42,), "visibility": (21,),
                "pose": (3,), "gender_prob": (2,)}
    for blob, shape in expected.items():
        assert net.blobs[blob].data.shape == (2, *shape), blob
    assert set(net.outputs) == set(net_io.HYPERFACE_OUTPUTS)
    conv = read_net(model_path("hyperface"))
    params = {layer.name: layer.convolution_param for layer in conv.layer if layer.type == "Convolution"}
    assert [params[n].group for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert (params["conv1a"].kernel_size[0], params["conv1a"].stride[0]) == (4, 4)
    assert (params["conv3a"].kernel_size[0], params["conv3a"].stride[0]) == (2, 2)
    types = [layer.type for layer in conv.layer]
    assert types.count("LRN") == 2 and types.count("Pooling") == 3  # no pooling in the fusion part
    relu_on = {layer.bottom[0] for layer in conv.layer if layer.type == "ReLU"}
    learned = [layer.name for layer in conv.layer if layer.type in ("Convolution", "InnerProduct")]
    assert relu_on == {name for name in learned if name.startswith(("conv", "fc"))}


def test_ibug68_head():
    net = caffe.Net(str(model_path("hyperface_ibug68")), caffe.TEST)
    assert net.blobs["fc_landmarks68"].data.shape == (1, 512)
    assert net.blobs[net_io.LANDMARKS68].data.shape == (1, 136)
    assert net.params["fc_landmarks68"][0].data.shape == (512, 3072)  # on fc_full


def test_ssd_deploy(tmp_path):
    net = _compare_with_opencv("fast_hyperface_ssd", tmp_path, ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"],
                               gain=0.6)  # 14 layers at He gain 1 saturate the softmax
    out = net.blobs["detection_out"].data
    assert out.shape[:2] == (1, 1) and out.shape[3] == 7 and 1 <= out.shape[2] <= 200
    assert np.all(out[0, 0, :, 2] >= 0.01) and np.all(out[0, 0, :, 1] == 1)
    assert net.blobs["data"].data.shape == (1, 3, 512, 512)
    param = [l for l in read_net(model_path("fast_hyperface_ssd")).layer if l.type == "DetectionOutput"][0]
    p = param.detection_output_param
    assert (p.keep_top_k, p.confidence_threshold, p.nms_param.nms_threshold) == (200, pytest.approx(0.01), 1.0)


def test_with_data_sources_and_solver_for(tmp_path):
    text = with_data_sources(model_path("hyperface", "train_val"), train_images="/a/ti", train_labels="/a/tl",
                             val_images="/a/vi", val_labels="/a/vl", batch_size=7)
    path = tmp_path / "tv.prototxt"
    path.write_text(text)
    layers = [l for l in read_net(path).layer if l.type == "Data"]
    assert sorted((l.data_param.source, l.data_param.batch_size) for l in layers) == [
        ("/a/ti", 7), ("/a/tl", 7), ("/a/vi", 7), ("/a/vl", 7)]
    ssd = with_data_sources(model_path("fast_hyperface_ssd", "train_val"), train_images="/s/t", train_labels=None)
    (tmp_path / "ssd.prototxt").write_text(ssd)
    assert {l.data_param.source for l in read_net(tmp_path / "ssd.prototxt").layer if l.type == "AnnotatedData"} == {"/s/t"}
    solver = solver_for(model_path("hyperface", "solver"), path, tmp_path / "snap", max_iter=9, test_iter=0)
    (tmp_path / "solver.prototxt").write_text(solver)
    parsed = read_solver(tmp_path / "solver.prototxt")
    assert (parsed.net, parsed.max_iter, list(parsed.test_iter)) == (str(path), 9, [])
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { nme: 1 }")
    with pytest.raises(PrototxtError, match="bad.prototxt"):
        with_data_sources(bad, train_images="x", train_labels="y")


def test_net_surgery_copies_trunk_bit_exactly(tmp_path):
    src = caffe.Net(str(model_path("rcnn_face")), caffe.TEST)
    randomize(src, seed=3)
    src_weights = tmp_path / "rcnn_face.caffemodel"
    src.save(str(src_weights))
    out = tmp_path / "hyperface_init.caffemodel"
    copied = transfer(model_path("rcnn_face"), src_weights, model_path("hyperface"), out, layers=list(TRUNK))
    assert copied == list(TRUNK)
    dst = caffe.Net(str(model_path("hyperface")), str(out), caffe.TEST)
    for name in TRUNK:
        for a, b in zip(src.params[name], dst.params[name]):
            assert np.array_equal(a.data, b.data), name
    # multitask takes every common layer, including fc6/fc7 and the detection output
    multitask = caffe.Net(str(model_path("multitask_face")), caffe.TEST)
    copied = copy_params(src, multitask)
    assert copied == [*TRUNK, "fc6", "fc7", "detection_score"]
    # hyperface's detection_score takes 512 inputs, R-CNN Face's 4096: a clear one-line error
    hyperface = caffe.Net(str(model_path("hyperface")), caffe.TEST)
    with pytest.raises(SurgeryError, match=r"layer 'detection_score': source shapes \[\(2, 4096\), \(2,\)\] != target"):
        copy_params(src, hyperface)


def test_ssd_train_val_builds_on_annotated_lmdb(tmp_path):
    """A 2-image AnnotatedDatum LMDB (AFLW crops, the face box normalised) feeds the SSD train net."""
    import lmdb
    from caffe.proto import caffe_pb2
    db = tmp_path / "ssd_lmdb"
    with lmdb.open(str(db), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for i, (image, _) in enumerate(aflw_samples(2)):
            anno = caffe_pb2.AnnotatedDatum(type=caffe_pb2.AnnotatedDatum.BBOX)
            ok, jpg = cv2.imencode(".jpg", image)
            anno.datum.CopyFrom(caffe_pb2.Datum(channels=3, height=image.shape[0], width=image.shape[1],
                                                data=jpg.tobytes(), encoded=True))
            group = anno.annotation_group.add(group_label=1)
            group.annotation.add(instance_id=0, bbox=caffe_pb2.NormalizedBBox(xmin=0.2, ymin=0.15, xmax=0.8, ymax=0.9))
            txn.put(f"{i:08d}".encode(), anno.SerializeToString())
    path = tmp_path / "ssd_train_val.prototxt"
    path.write_text(with_data_sources(model_path("fast_hyperface_ssd", "train_val"), train_images=db,
                                      train_labels=None, batch_size=2))
    net = caffe.Net(str(path), caffe.TRAIN)
    net.forward()
    assert net.blobs["data"].data.shape == (2, 3, 512, 512)
    # 6 priors per cell (see test_ssd_decode), 4 coordinates each
    assert net.blobs["mbox_priorbox"].data.shape == (1, 2, 4 * 6 * (64**2 + 32**2 + 16**2 + 8**2 + 4**2 + 2**2))
    assert np.isfinite(net.blobs["mbox_loss"].data).all() and float(net.blobs["mbox_loss"].data) > 0
