"""Per-batch sampler of HyperFace training (training/sampler.py) on the real shared sets."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.config import load_config
from core.geometry import box_iou, crop_and_warp
from core.labels import OFFSETS
from data_prep.readers import read_dataset
from training.sampler import RegionSampler, build_pools, random_region, sampler_sets

from core.config import DATA_ROOT as SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "wider_train").is_dir(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def sampler():
    cfg = load_config()
    pools = build_pools(sampler_sets(SHARED_DATA, cfg), cfg)
    return RegionSampler(pools, cfg, batch_size=32, seed=7)


def test_pools_hold_train_splits_only(sampler):
    counts = sampler.pools.counts()
    # aflw_crops: 18585 - 1000 held out - the 50 bad crops of the train split; UTKFace: 3000 - 500
    assert counts["faces"]["aflw_crops"] == 17535
    assert counts["faces"]["utkface"] == 2500
    assert counts["background_photos"] == 1239 - 150
    assert counts["face_free_photos"] == 822
    held_out = {r.image_id for r in read_dataset("wider", SHARED_DATA / "wider_train", split="train-heldout")}
    assert len(held_out) == 150
    assert not held_out & {r.image_id for r in sampler.pools.background_photos}


def test_batch_composition_and_overlaps(sampler):
    cfg = sampler.cfg
    crops, labels, info = sampler.draw(3)
    det = labels[:, OFFSETS["detection"].start]
    kinds = [k for k, _, _ in info]
    assert kinds.count("face") == 8 and kinds.count("partial") == 4 and kinds.count("background") == 20
    assert np.array_equal(det[:8], np.ones(8))
    assert np.array_equal(det[12:], np.zeros(20))
    records = {str(r.path): r for r in sampler.pools.background_photos + sampler.pools.photos_with_faces
               + sampler.pools.face_free_photos}
    for kind, path, region in info:
        if kind != "background":
            continue
        faces = np.array([f.box for f in records[str(path)].faces]).reshape(-1, 4)
        if len(faces):  # ignored tiny faces included: no background region covers any face
            assert box_iou(region, faces).max() < cfg.iou.detection_negative
    for (kind, _, region), row in zip(info[:8], labels[:8]):
        assert row[OFFSETS["bbox_mask"]].sum() == 4  # positives carry box-regression targets
    assert all(c.shape == (227, 227, 3) and c.dtype == np.uint8 for c in crops)


def test_batches_are_a_function_of_the_iteration(sampler):
    a, la, _ = sampler.draw(11)
    b, lb, _ = sampler.draw(11)
    c, _, _ = sampler.draw(12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and np.array_equal(la, lb)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_net_batch_layout(sampler):
    data, labels = sampler.batch(0)
    assert data.shape == (32, 3, 227, 227) and data.dtype == np.float32
    assert labels.shape == (32, 414, 1, 1)
    crops, _, _ = sampler.draw(0)
    assert np.allclose(data[0, 0], crops[0][:, :, 0].astype(np.float32) - 104.0)


def test_random_region_avoids_faces():
    rng = np.random.default_rng(0)
    faces = np.array([[0, 0, 50, 50], [60, 60, 100, 100]], dtype=float)
    for _ in range(50):
        region = random_region(100, 100, rng, 20, faces, 0.35)
        if region is not None:
            assert box_iou(region, faces).max() < 0.35
            assert region[0] >= 0 and region[1] >= 0 and region[2] <= 100 and region[3] <= 100


def test_crop_outside_the_image_repeats_edges():
    """No flat mean-colour frame: a chip's jittered box must not be separable by its padding."""
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :, 0] = np.arange(10, dtype=np.uint8)[None, :] * 20   # blue ramps left to right
    crop = crop_and_warp(image, np.array([-10, 0, 10, 10]), 20, (104, 117, 123))
    # left half is the replicated first column (0), not the mean blue 104
    assert np.all(crop[:, :8, 0] == 0)
    assert crop[:, -1, 0].min() >= 160


def test_low_resolution_shrinks_large_regions_only():
    from training.sampler import low_resolution
    rng_state = np.random.default_rng(0)
    # a 1-px checkerboard: any shrink to <= 64 px and back averages it to flat grey
    board = (np.indices((227, 227)).sum(axis=0) % 2 * 255).astype(np.uint8)
    crop = np.repeat(board[:, :, None], 3, axis=2)
    big, small = np.array([0, 0, 200, 200.0]), np.array([0, 0, 20, 20.0])
    out = low_resolution(crop, np.random.default_rng(1), big, 1.0, (24, 64))
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert crop.std() > 120 and out.std() < 40
    # a region already smaller than any drawn side, or fraction 0: the crop is returned as it is
    assert low_resolution(crop, np.random.default_rng(1), small, 1.0, (24, 64)) is crop
    assert low_resolution(crop, rng_state, big, 0.0, (24, 64)) is crop
    # the draw: side 24..64 log-uniform; the result is the INTER_AREA shrink warped back up
    rng = np.random.default_rng(5)
    assert rng.random() < 1.0
    side = int(round(np.exp(rng.uniform(np.log(24), np.log(64)))))
    expected = cv2.resize(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA), (227, 227),
                          interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(low_resolution(crop, np.random.default_rng(5), big, 1.0, (24, 64)), expected)


def test_low_resolution_is_drawn_for_every_kind_alike(sampler):
    # the share of blurred crops must not tell faces from background: compare the sharpness of the
    # same draws with the jitter on and off (same rng stream otherwise)
    import dataclasses
    cfg = sampler.cfg
    off = RegionSampler(sampler.pools, dataclasses.replace(cfg, training=dataclasses.replace(
        cfg.training, low_res_fraction=0.0)), batch_size=32, seed=7)
    on = RegionSampler(sampler.pools, dataclasses.replace(cfg, training=dataclasses.replace(
        cfg.training, low_res_fraction=1.0)), batch_size=32, seed=7)
    changed = {"face": 0, "background": 0}
    for it in range(4):
        a, _, info = off.draw(it)
        b, _, _ = on.draw(it)
        for (kind, _, _), x, y in zip(info, a, b):
            if kind in changed and not np.array_equal(x, y):
                changed[kind] += 1
    assert changed["face"] >= 8 and changed["background"] >= 30
