"""Detection is a pure function of the image and the settings (issue 13 item 3): the same photos in
two orders, in one process and in two processes, give exactly the same faces and JSON. OpenCV's
selective search alone returns its boxes in another order on a second call; core.proposals puts
them in canonical order and every suppression step sorts stably. Real photos, the shipped model."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from core.config import load_config
from core.config import DATA_ROOT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AFW = DATA_ROOT / "afw_sample"
MODEL = REPO / "models" / "hyperface"
NAMES = ("1004109301", "1224897301", "1139324862")
pytestmark = pytest.mark.skipif(not (AFW / f"{NAMES[0]}.jpg").is_file() or not MODEL.is_dir(),
                                reason="shared data or shipped model not here")
SMALL = "selective_search: {max_side: 200, max_proposals: 60}\ntest: {max_image_side: 700, proposals: fast}\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    photos = root / "photos"
    photos.mkdir()
    for name in NAMES:
        shutil.copy(AFW / f"{name}.jpg", photos / f"{name}.jpg")
    cfg = root / "small.yaml"
    cfg.write_text(SMALL)
    return {"root": root, "photos": photos, "config": cfg}


def test_two_orders_in_one_process_give_the_same_faces(setup):
    from pipeline import HyperFace

    hf = HyperFace(MODEL, config=load_config(setup["config"]))
    images = {n: cv2.imread(str(setup["photos"] / f"{n}.jpg")) for n in NAMES}
    forward = {n: [f.to_dict() for f in hf.detect(images[n])] for n in NAMES}
    backward = {n: [f.to_dict() for f in hf.detect(images[n])] for n in reversed(NAMES)}
    assert any(forward.values())  # the shipped model finds something in these photos
    assert forward == backward


def test_two_orders_in_two_processes_give_the_same_json(setup):
    outs = []
    for k, order in enumerate((NAMES, NAMES[::-1])):
        out = setup["root"] / f"out{k}"
        cmd = [sys.executable, "-m", "pipeline", "run", *[str(setup["photos"] / f"{n}.jpg") for n in order],
               "--model", str(MODEL), "--out", str(out), "--config", str(setup["config"])]
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        outs.append(out)
    for name in NAMES:
        first, second = (o / f"{name}.json" for o in outs)
        assert first.read_bytes() == second.read_bytes(), name
        assert json.loads(first.read_text())["faces"] is not None
