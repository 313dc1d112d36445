"""test.flip_rescore: each face's score is the mean of its region's score and that region's score in
the mirrored photo, computed here with a direct forward of the shipped net; faces that fall under
the threshold afterwards are gone, the rest are best first."""
import dataclasses

import cv2
import numpy as np
import pytest

from core.config import load_config
from pipeline.detector import HyperFace, interleave_unique
from pipeline.geometry import make_batch, mirror_boxes

CFG = load_config()
THRESHOLD = 0.15  # low, so that the demo photos give faces near it: the cat's one (0.22) falls under it (0.14)


def test_mirror_boxes_hand_case():
    boxes = np.array([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 100.0, 50.0]])
    assert mirror_boxes(boxes, 100).tolist() == [[70.0, 5.0, 90.0, 25.0], [0.0, 0.0, 100.0, 50.0]]
    assert mirror_boxes(mirror_boxes(boxes, 100), 100).tolist() == boxes.tolist()


def test_interleave_unique_hand_case():
    first = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=float)
    # [0, 0, 10, 9] overlaps first[0] by IoU 0.9 (dropped at 0.7, kept at 0.95); [60, 0, 70, 10] is new
    second = np.array([[0, 0, 10, 9], [60, 0, 70, 10]], dtype=float)
    assert interleave_unique(first, second, 0.7, 10).tolist() == [
        [0, 0, 10, 10], [20, 0, 30, 10], [60, 0, 70, 10], [40, 0, 50, 10]]
    assert interleave_unique(first, second, 0.95, 10).tolist() == [
        [0, 0, 10, 10], [0, 0, 10, 9], [20, 0, 30, 10], [60, 0, 70, 10], [40, 0, 50, 10]]
    assert interleave_unique(first, second, 0.7, 2).tolist() == [[0, 0, 10, 10], [20, 0, 30, 10]]
    assert interleave_unique(first, np.zeros((0, 4)), 0.7, 10).tolist() == first.tolist()
    assert interleave_unique(np.zeros((0, 4)), np.zeros((0, 4)), 0.7, 10).shape == (0, 4)


def test_crop_of_the_mirrored_box_is_the_mirrored_crop():
    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 5.0, 40.0, 35.0], [-8.0, 20.0, 30.0, 70.0], [50.0, -5.0, 95.0, 40.0]])
    direct = make_batch(image, boxes, 64, CFG.input.mean_bgr)
    mirrored = make_batch(np.ascontiguousarray(image[:, ::-1]), mirror_boxes(boxes, image.shape[1]), 64, CFG.input.mean_bgr)
    # the same pixels, mirrored; bilinear resampling of a mirrored cut differs by at most a rounding step
    assert np.abs(mirrored[..., ::-1] - direct).max() <= 1.0


@pytest.fixture(scope="module")
def detectors(repo_root):
    model = repo_root / "models" / "hyperface"
    # the proposals of the photo alone, so that the counts below depend on the re-scoring only
    plain = dataclasses.replace(CFG, test=dataclasses.replace(CFG.test, flip_rescore=False, ssd_flip_proposals=False))
    flip = dataclasses.replace(CFG, test=dataclasses.replace(CFG.test, flip_rescore=True, ssd_flip_proposals=False))
    return (HyperFace(model, config=plain, detection_threshold=THRESHOLD),
            HyperFace(model, config=flip, detection_threshold=THRESHOLD))


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])  # a face, and no face
def test_flip_rescore_is_the_mean_with_the_mirrored_region(detectors, repo_root, name):
    plain, flip = detectors
    image = cv2.imread(str(repo_root / "examples" / "images" / f"{name}.jpg"))
    before = plain.detect(image)
    after = flip.detect(image)
    assert before and all(f.region is not None for f in before)
    regions = np.array([f.region for f in before])
    batch = make_batch(np.ascontiguousarray(image[:, ::-1]), mirror_boxes(regions, image.shape[1]),
                       CFG.input.size, CFG.input.mean_bgr)
    mirrored_scores = np.asarray(plain.backend.forward(batch)["detection_prob"])[:, 1]
    expected = [((f.score + s) / 2, f.region.tolist()) for f, s in zip(before, mirrored_scores)]
    expected = sorted([e for e in expected if e[0] >= THRESHOLD], key=lambda e: -e[0])
    assert len(after) == len(expected) == {"astronaut": 2, "chelsea": 0}[name]
    for face, (score, region) in zip(after, expected):
        assert face.score == pytest.approx(score, abs=1e-6)
        assert face.region.tolist() == region
    assert [f.score for f in after] == sorted((f.score for f in after), reverse=True)
    # the mirrored view changes the scores (the net is not mirror-symmetric), so the test can fail
    assert not np.allclose(mirrored_scores, [f.score for f in before], atol=1e-4)


def test_ssd_flip_proposals_merge_the_mirrored_photos_proposals(detectors, repo_root):
    """test.ssd_flip_proposals: the proposals are the photo's and the mirrored photo's SSD boxes, in turn,
    near-duplicates dropped; the demo photo's mirror adds boxes the photo alone does not give."""
    plain, _ = detectors
    image = cv2.imread(str(repo_root / "examples" / "images" / "astronaut.jpg"))
    own = plain.ssd(image)
    mirrored = mirror_boxes(plain.ssd(np.ascontiguousarray(image[:, ::-1])), image.shape[1])
    on = HyperFace(repo_root / "models" / "hyperface",
                   config=dataclasses.replace(CFG, test=dataclasses.replace(CFG.test, ssd_flip_proposals=True)))
    merged = on.propose(image)
    assert merged.tolist() == interleave_unique(own, mirrored, CFG.test.ssd_flip_merge_iou, CFG.test.ssd_max_proposals).tolist()
    assert len(merged) <= CFG.test.ssd_max_proposals
    assert merged[0].tolist() == own[0].tolist() and merged[1].tolist() != own[1].tolist()
    assert on.last_ssd_boxes.tolist() == merged.tolist()  # the boxes L-NMS fuses in are these
