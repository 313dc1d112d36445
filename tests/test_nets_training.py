"""Real SGD on a fixed batch of 4 AFLW crops lowers every task's loss; masked-out targets change
neither the loss nor any gradient."""
from __future__ import annotations

import numpy as np
import pytest

from test_nets_support import aflw_samples, caffe, make_solver, train_val_net, write_lmdbs

from core.labels import OFFSETS

BATCH = 4
ITERS = 12


@pytest.fixture(scope="module")
def samples():
    return aflw_samples(BATCH)


@pytest.fixture(scope="module")
def lmdbs(samples, tmp_path_factory):
    return write_lmdbs(tmp_path_factory.mktemp("train_lmdb"), samples)


@pytest.mark.parametrize("model", ["hyperface", "multitask_face", "rcnn_face", "rcnn_fiducial", "rcnn_pose",
                                   "rcnn_gender"])
def test_sgd_lowers_every_task_loss(model, lmdbs, tmp_path):
    caffe.set_random_seed(0)
    solver = make_solver(model, train_val_net(model, *lmdbs, tmp_path, batch=BATCH), tmp_path, base_lr=0.001)
    names = [name for name in solver.net.outputs if name.startswith("loss_")]
    history = {name: [] for name in names}
    for _ in range(ITERS):
        solver.step(1)
        for name in names:
            history[name].append(float(solver.net.blobs[name].data))
    for name, values in history.items():
        first, last = np.mean(values[:2]), np.mean(values[-2:])
        assert np.isfinite(values).all() and last < 0.97 * first, f"{model}/{name}: {values}"


def _loss_and_grads(net, images, labels):
    net.blobs["data"].data[...] = images
    net.blobs["label"].data[...] = labels.reshape(net.blobs["label"].data.shape)
    for blobs in net.params.values():
        for blob in blobs:
            blob.diff[...] = 0
    net.forward(start="label_flat")
    loss = {name: float(net.blobs[name].data) for name in net.outputs}
    net.backward()
    grads = {name: [blob.diff.copy() for blob in blobs] for name, blobs in net.params.items()}
    return loss, grads


def test_masked_targets_leave_loss_and_gradients_unchanged(samples, lmdbs, tmp_path):
    net = caffe.Net(str(train_val_net("hyperface", *lmdbs, tmp_path, batch=BATCH)), caffe.TRAIN)
    images = np.stack([img.transpose(2, 0, 1).astype(np.float32) - 110.0 for img, _ in samples])
    labels = np.stack([label for _, label in samples])
    base_loss, base_grads = _loss_and_grads(net, images, labels)

    # an invisible landmark of sample 0 (landmarks mask 0) gets a wild target
    invisible = np.flatnonzero(labels[0, OFFSETS["landmarks_mask"]] == 0)
    assert invisible.size, "fixture sample 0 must have an invisible landmark"
    landmark = labels.copy()
    landmark[0, OFFSETS["landmarks"].start + invisible[0]] = 7.0
    _assert_same(base_loss, base_grads, *_loss_and_grads(net, images, landmark))

    # sample 1 as an IoU-0.4 region (pose mask 0): its pose target must not matter
    iou04 = labels.copy()
    iou04[1, OFFSETS["pose_mask"]] = 0
    loss04, grads04 = _loss_and_grads(net, images, iou04)
    wild = iou04.copy()
    wild[1, OFFSETS["pose"]] = [3.0, -3.0, 2.0]
    _assert_same(loss04, grads04, *_loss_and_grads(net, images, wild))

    # and the masks are not vacuous: the same pose change on an unmasked sample moves loss and gradients
    visible = labels.copy()
    visible[1, OFFSETS["pose"]] = [3.0, -3.0, 2.0]
    moved, moved_grads = _loss_and_grads(net, images, visible)
    assert moved["loss_pose"] > base_loss["loss_pose"] + 0.3  # yaw: (2 - y)^2 / (2 * 4)
    assert not np.array_equal(moved_grads["pose"][0], base_grads["pose"][0])


def _assert_same(loss_a, grads_a, loss_b, grads_b):
    assert loss_a == loss_b
    for name in grads_a:
        for a, b in zip(grads_a[name], grads_b[name]):
            assert np.array_equal(a, b), name
