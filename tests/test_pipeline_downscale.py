"""Results of an image the pipeline downscaled for detection are mapped back to its own pixels:
an exact value test. A photo upscaled 2x by pixel repetition is shrunk by test.max_image_side back
to exactly the original pixels (INTER_AREA of 2x2 equal pixels), so the CLI's faces on the big
image must be the API's faces on the original, times 2 (box and landmarks)."""
import json

import cv2
import numpy as np
import pytest

from core.config import DATA_ROOT
from core.net_shapes import random_weights
from pipeline.cli import run
from pipeline.detector import HyperFace
from pipeline.fixtures import make_model_dir
from pipeline.geometry import mean_shape

AFW_IMAGE = DATA_ROOT / "afw_sample" / "1004109301.jpg"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from pathlib import Path

    tiny = Path(__file__).resolve().parent / "fixtures" / "tiny_hyperface" / "deploy.prototxt"
    w = random_weights(tiny, 0)
    for layer in ("conv1", "conv2", "fc_full"):
        w[layer][0] *= 0.05
    w["landmarks"][0][:] = 0
    w["landmarks"][1][:] = (mean_shape() - 0.5).ravel()     # a mean-shape face in every box
    w["visibility"][0][:] = 0
    w["visibility"][1][:] = 1.0
    w["fc_detection"][1][:] = [0.0, 3.0]                    # most regions are faces (scores vary with the crop)
    return make_model_dir(tiny, tmp_path_factory.mktemp("down") / "m", w)


@pytest.mark.skipif(not AFW_IMAGE.is_file(), reason="needs the shared afw_sample")
def test_faces_of_a_downscaled_image_are_mapped_back_to_its_pixels(model, tmp_path):
    small = cv2.imread(str(AFW_IMAGE))[250:580, 160:500]           # 330 x 340 around the annotated face
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)        # 660 x 680
    cv2.imwrite(str(tmp_path / "big.png"), big)
    cfg = tmp_path / "cfg.yaml"
    # every proposal (no cap): OpenCV returns the same set of boxes in a varying order, so a cap could
    # keep a different subset on each call
    cfg.write_text("selective_search: {max_side: 200, max_proposals: 100000}\ntest: {max_image_side: 340, proposals: fast}\n")

    run([tmp_path / "big.png"], model, tmp_path / "out", backend="opencv", config=cfg, progress=False)
    doc = json.loads((tmp_path / "out" / "big.json").read_text())
    assert (doc["width"], doc["height"]) == (680, 660) and doc["notes"]    # it says it was shrunk

    expected = HyperFace(model, backend="opencv", config=cfg).detect(small)
    assert len(expected) >= 1 and len(doc["faces"]) == len(expected)
    for got, want in zip(doc["faces"], expected):
        np.testing.assert_allclose(got["box"], 2 * want.box, rtol=0, atol=1e-9)
        np.testing.assert_allclose([[p["x"], p["y"]] for p in got["landmarks"]], 2 * want.landmarks, rtol=0, atol=1e-9)
        assert got["score"] == pytest.approx(want.score, abs=0)
