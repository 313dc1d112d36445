"""BatchNorm for from-scratch training (training/batchnorm.py): inserted where the config says, and
folded into the convolutions so the deploy net of prototxt/ equals the BN net in TEST mode."""
from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from prototxt.netspec_utils import read_net
from training.batchnorm import BN_SUFFIX, SCALE_SUFFIX, base_convolutions, fold_batchnorm, with_batchnorm

SSD_DIR = "prototxt/fast_hyperface_ssd"
SSD_BASE = ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1",
            "conv6_1", "conv6_2", "conv7_1", "conv7_2", "conv8_1", "conv8_2"]


def test_batchnorm_goes_after_every_base_convolution_of_the_ssd(repo_root):
    net = read_net(repo_root / SSD_DIR / "train_val.prototxt")
    assert base_convolutions(net) == SSD_BASE  # the loc/conf heads are linear: no BatchNorm there
    bn = with_batchnorm(net)
    names = [layer.name for layer in bn.layer]
    assert len(bn.layer) == len(net.layer) + 2 * len(SSD_BASE)
    for conv in SSD_BASE:
        i = names.index(conv)
        assert names[i + 1:i + 3] == [conv + BN_SUFFIX, conv + SCALE_SUFFIX]
        assert list(bn.layer[i + 1].bottom) == list(bn.layer[i + 1].top) == [conv]
        assert [p.lr_mult for p in bn.layer[i + 1].param] == [0, 0, 0]
    assert not any(n.startswith("conv3_2_norm_mbox") and n.endswith(BN_SUFFIX) for n in names)
    with pytest.raises(ValueError, match="nosuch"):
        with_batchnorm(net, ["nosuch"])


def _random_bn_weights(net, rng) -> dict[str, list[np.ndarray]]:
    """Weights for every parameter blob of a pycaffe net: random convolutions, BN statistics with a
    scale factor other than 1 (as Caffe stores them after training), gains and shifts away from 1/0."""
    out = {}
    for name, blobs in net.params.items():
        if name.endswith(BN_SUFFIX):
            c = blobs[0].data.shape[0]
            factor = 3.7
            out[name] = [rng.normal(0, 2, c) * factor, rng.uniform(0.5, 4, c) * factor, np.array([factor])]
        elif name.endswith(SCALE_SUFFIX):
            c = blobs[0].data.shape[0]
            out[name] = [rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c)]
        else:
            out[name] = [rng.normal(0, 0.2, b.data.shape) for b in blobs]
    return out


def test_folded_ssd_deploy_equals_the_batchnorm_net_in_test_mode(caffe, repo_root, tmp_path):
    """The real proposal net: the deploy prototxt with BN inserted, random statistics, forwarded in
    TEST mode, against the unchanged deploy prototxt with the folded weights (both pycaffe)."""
    deploy = repo_root / SSD_DIR / "deploy.prototxt"
    bn_path = tmp_path / "deploy_bn.prototxt"
    bn_path.write_text(text_format.MessageToString(with_batchnorm(read_net(deploy))))
    rng = np.random.default_rng(3)
    bn_net = caffe.Net(str(bn_path), caffe.TEST)
    weights = _random_bn_weights(bn_net, rng)
    for name, blobs in weights.items():
        for k, value in enumerate(blobs):
            bn_net.params[name][k].data[...] = value
    plain = caffe.Net(str(deploy), caffe.TEST)
    folded = fold_batchnorm(weights)
    assert set(folded) == set(plain.params)
    for name, blobs in folded.items():
        for k, value in enumerate(blobs):
            plain.params[name][k].data[...] = value
    x = rng.normal(0, 50, bn_net.blobs["data"].data.shape).astype(np.float32)
    bn_net.blobs["data"].data[...] = x
    plain.blobs["data"].data[...] = x
    bn_out, plain_out = bn_net.forward(end="mbox_conf_flatten"), plain.forward(end="mbox_conf_flatten")
    for blob in ("mbox_loc", "mbox_conf_flatten"):
        a, b = bn_net.blobs[blob].data, plain.blobs[blob].data
        assert np.abs(a).max() > 1e-3  # not a trivially zero output
        np.testing.assert_allclose(b, a, atol=1e-4 * max(1.0, np.abs(a).max()))
    assert bn_out.keys() == plain_out.keys()


def test_fold_by_hand():
    """One output channel: W=2, b=1, BN mean 3 and variance 4 stored times 2, gamma 0.5, beta 1:
    y = 0.5 * (2x + 1 - 3) / sqrt(4 + eps) + 1 = 0.5x + 0.5 (eps aside)."""
    weights = {"c": [np.full((1, 1, 1, 1), 2.0), np.array([1.0])],
               "c_bn": [np.array([6.0]), np.array([8.0]), np.array([2.0])],
               "c_scale": [np.array([0.5]), np.array([1.0])],
               "fc": [np.ones((2, 3)), np.zeros(2)]}
    out = fold_batchnorm(weights)
    assert sorted(out) == ["c", "fc"]
    assert out["c"][0].ravel()[0] == pytest.approx(0.5, abs=1e-5)
    assert out["c"][1][0] == pytest.approx(0.5, abs=1e-5)
    np.testing.assert_array_equal(out["fc"][0], np.ones((2, 3)))

