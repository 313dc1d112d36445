"""End to end: model directories, both backends, the API and the folder CLI (resume after kill -9,
bad inputs, JSON schema) on real images from ../shared/data with a tiny fixture net."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from core.config import load_config
from pipeline import HyperFace, box_from_landmarks
from pipeline.cli import RUN_LOG, run
from pipeline.errors import ModelError
from pipeline.fixtures import make_model_dir
from pipeline.geometry import mean_shape
from pipeline.model_store import load_model, read_caffemodel, write_caffemodel
from pipeline.net_shapes import infer_shapes, random_weights
from core.config import DATA_ROOT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = DATA_ROOT
AFW = DATA / "afw_sample"
TINY = REPO / "tests" / "fixtures" / "tiny_hyperface" / "deploy.prototxt"
SSD = REPO / "prototxt" / "fast_hyperface_ssd" / "deploy.prototxt"
SCHEMA = json.loads((REPO / "pipeline" / "face_schema.json").read_text())
AFW_IMAGES = [AFW / f"{n}.jpg" for n in ("1004109301", "1051618982", "111076519")]


def tiny_weights(seed=0):
    """Random features, but heads that give a mean-shape face in every box and varied scores."""
    w = random_weights(TINY, seed)
    for k in ("conv1", "conv2", "fc_full"):
        w[k][0] *= 0.05
    w["fc_detection"][1][:] = 0
    w["landmarks"][0][:] = 0
    w["landmarks"][1][:] = (mean_shape() - 0.5).ravel()  # eq. 2 targets of the mean shape in its own box
    w["visibility"][0][:] = 0
    w["visibility"][1][:] = np.linspace(0, 1, 21)
    return w


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    patch = pytest.MonkeyPatch()
    patch.setenv("HYPERFACE_MODEL_CACHE", str(root / "cache"))  # expanded fp16 weights go here
    yield make_tiny_env(root)
    patch.undo()


def make_tiny_env(root: Path) -> dict:
    """The tiny fixture model (with a random SSD proposal net) and a small config under `root`."""
    model = make_model_dir(TINY, root / "model", tiny_weights(), fp16=True)
    if SSD.is_file():
        make_model_dir(SSD, model / "proposals", random_weights(SSD, 1), fp16=True)
    cfg = root / "small.yaml"
    cfg.write_text("selective_search: {max_side: 200, max_proposals: 40}\n"
                   "test: {batch_size: 16, max_image_side: 700, proposals: fast}\n")  # the tiny net: a few SS boxes
    return {"root": root, "model": model, "config": cfg}


def test_net_shapes_and_flops_by_hand():
    s = infer_shapes(TINY, batch=2)
    assert s.blobs["conv1"] == (2, 8, 55, 55) and s.blobs["pool2"] == (2, 8, 7, 7)
    assert s.params["conv2"] == [(8, 4, 3, 3), (8,)] and s.params["fc_full"] == [(16, 392), (16,)]
    conv = 2 * 2 * (8 * 55 * 55 * 3 * 11 * 11 + 8 * 14 * 14 * 4 * 3 * 3)
    fc = 2 * 2 * (392 * 16 + 16 * (2 + 42 + 21 + 3 + 2 + 4))
    assert s.total_flops == conv + fc


def test_model_store_fp16_roundtrip_and_errors(env, tmp_path):
    model = load_model(env["model"])
    assert model.meta["label_layout_version"] == 1 and model.meta["input"]["size"] == load_config().input.size
    got = read_caffemodel(model.caffemodel)
    for layer, blobs in tiny_weights().items():
        for a, b in zip(blobs, got[layer]):
            np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32))
    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "deploy.prototxt").write_text(TINY.read_text())
    with pytest.raises(ModelError, match="no weights"):
        load_model(bad)
    (bad / "weights.caffemodel").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match=str(bad / "weights.caffemodel")):
        read_caffemodel(bad / "weights.caffemodel")
    with pytest.raises(ModelError, match="do not fit"):
        write_caffemodel(TINY, {**tiny_weights(), "conv1": [np.zeros((3, 3)), np.zeros(8)]}, tmp_path / "x.caffemodel")


def test_backends_agree_on_random_weights(tmp_path):
    pytest.importorskip("caffe", reason="pycaffe not built yet (make setup)")
    from pipeline.backends import make_backend
    for prototxt in [TINY] + [p for p in [REPO / "prototxt" / "hyperface" / "deploy.prototxt"] if p.is_file()]:
        cm = write_caffemodel(prototxt, random_weights(prototxt, 3), tmp_path / f"{prototxt.parent.name}.caffemodel")
        # unit-variance input keeps He-initialised activations O(1), the scale of trained outputs
        batch = np.random.default_rng(0).normal(0, 1, (3, 3, 227, 227)).astype(np.float32)
        a = make_backend("opencv", prototxt, cm).forward(batch)
        b = make_backend("caffe", prototxt, cm).forward(batch)
        assert set(a) == set(b)
        for name in a:
            assert a[name].shape == b[name].shape
            np.testing.assert_allclose(a[name], b[name], atol=1e-4, rtol=1e-4, err_msg=f"{prototxt}: {name}")


def test_api_detect_on_a_real_image(env):
    hf = HyperFace(env["model"], config=env["config"])
    image = cv2.imread(str(AFW_IMAGES[0]))
    faces = hf.detect(image)
    assert hf.last_timings["num_proposals"] <= 40 and len(faces) >= 1
    f = faces[0]
    assert f.box.shape == (4,) and f.landmarks.shape == (21, 2) and np.isfinite(f.landmarks).all()
    # the fixture net predicts the mean shape in every box, so each face box is the fit of its landmarks
    # (with the mean shape of its predicted yaw: test.pose_aware_face_box)
    np.testing.assert_allclose(f.box, box_from_landmarks(f.landmarks, f.visible, f.pose_deg[2]), atol=1e-6)
    assert f.visible.tolist() == (np.linspace(0, 1, 21) >= load_config().test.visibility_threshold).tolist()
    assert [x.score for x in faces] == sorted((x.score for x in faces), reverse=True)
    gray = hf.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))  # converted, not an error
    assert isinstance(gray, list)
    nms = HyperFace(env["model"], config=env["config"], post="nms", irp_iterations=0).detect(image)
    assert len(nms) >= 1 and all(0 <= x.score <= 1 for x in nms)


@pytest.mark.skipif(not SSD.is_file(), reason="prototxt/fast_hyperface_ssd/deploy.prototxt not there")
def test_ssd_proposals_fast_hyperface(env):
    hf = HyperFace(env["model"], config=env["config"], proposals="ssd")
    boxes = hf.propose(cv2.imread(str(AFW_IMAGES[1])))
    assert 0 < len(boxes) <= load_config().test.ssd_max_proposals
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert isinstance(hf.detect(cv2.imread(str(AFW_IMAGES[1]))), list)


@pytest.mark.skipif(not SSD.is_file(), reason="prototxt/fast_hyperface_ssd/deploy.prototxt not there")
def test_default_proposals_come_from_the_config_and_fall_back_without_a_proposal_net(env, tmp_path):
    from pipeline.detector import resolve_proposals
    base = load_config(env["config"])
    ssd_default = dataclasses.replace(base, test=dataclasses.replace(base.test, proposals="ssd"))
    fast_default = dataclasses.replace(base, test=dataclasses.replace(base.test, proposals="fast"))
    assert load_config().test.proposals == "ssd" and HyperFace(env["model"]).proposals == "ssd"  # the repo default
    assert HyperFace(env["model"], config=env["config"]).proposals == base.test.proposals == "fast"
    assert HyperFace(env["model"], config=ssd_default).proposals == "ssd"
    assert HyperFace(env["model"], config=fast_default).proposals == "fast"
    no_net = tmp_path / "no_net"
    no_net.mkdir()
    for f in env["model"].iterdir():
        if f.name != "proposals":
            (no_net / f.name).symlink_to(f)
    assert resolve_proposals(None, ssd_default, no_net) == "fast"           # the default falls back
    assert resolve_proposals(None, ssd_default, no_net, env["model"] / "proposals") == "ssd"
    assert HyperFace(no_net, config=ssd_default).proposals == "fast"
    with pytest.raises(ModelError, match="proposals"):                     # an explicit request does not
        HyperFace(no_net, config=ssd_default, proposals="ssd")
    with pytest.raises(ValueError, match="unknown proposals 'selective'"):
        resolve_proposals("selective", base, env["model"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("test: {proposals: ssd512}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: test.proposals = 'ssd512' must be one of"):
        load_config(bad)


@pytest.mark.skipif(not SSD.is_file(), reason="prototxt/fast_hyperface_ssd/deploy.prototxt not there")
def test_fast_plus_ssd_proposals_are_the_ssd_boxes_then_selective_search(env):
    image = cv2.imread(str(AFW_IMAGES[1]))
    both = HyperFace(env["model"], config=env["config"], proposals="fast+ssd")
    ssd = HyperFace(env["model"], config=env["config"], proposals="ssd").propose(image)
    ss = HyperFace(env["model"], config=env["config"], proposals="fast").propose(image)
    assert len(ssd) > 0 and len(ss) > 0
    np.testing.assert_array_equal(both.propose(image), np.concatenate([ssd, ss]))
    # the config's DetectionOutput settings replace the deploy net's (nms_threshold 1.0, top_k 400 there)
    cfg = load_config(env["config"])
    d = both.ssd.detection
    assert (d.nms_threshold, d.top_k, d.keep_top_k, d.confidence_threshold) == (
        cfg.test.ssd_nms_iou, cfg.test.ssd_pre_nms_top_k, cfg.test.ssd_max_proposals, cfg.test.ssd_threshold)
    three = both.ssd.decode(both.ssd.forward(image), image.shape[1], image.shape[0], nms_iou=0.3)
    assert 0 < len(three) <= len(ssd)
    # every box the net saw: the proposals in their order, then the boxes IRP added
    both.detect(image)
    n = both.last_timings["num_proposals"]
    assert n == len(ssd) + len(ss) and len(both.last_evaluated_boxes) >= n
    np.testing.assert_array_equal(both.last_evaluated_boxes[:n], np.concatenate([ssd, ss]))


@pytest.mark.skipif(not SSD.is_file(), reason="prototxt/fast_hyperface_ssd/deploy.prototxt not there")
def test_ssd_scales_fit_the_photo_into_canvases_and_share_the_proposals(env):
    import dataclasses
    from pipeline.proposals import SSDProposer, resized_prototxt, scored_ssd_boxes
    from core.geometry import box_iou
    from pipeline.geometry import nms
    from pipeline.ssd_decode import CONF_BLOB, LOC_BLOB, detection_rows

    cfg = load_config(env["config"])
    model = load_model(env["model"] / "proposals")

    def proposer(scales, most=200, merge="quota"):
        return SSDProposer(model, "onnxruntime", cfg.input,
                           dataclasses.replace(cfg.test, ssd_scales=scales, ssd_max_proposals=most, ssd_merge=merge,
                                               ssd_nms_iou=1.0))

    assert infer_shapes(resized_prototxt(model.prototxt, 768)).blobs["data"] == (1, 3, 768, 768)
    # a 512 x 512 photo on a 512 canvas fills it: the same boxes as the net's own 512 warp
    square = cv2.resize(cv2.imread(str(AFW_IMAGES[1])), (512, 512))
    np.testing.assert_allclose(proposer((512,))(square), proposer(())(square), atol=1e-4)
    # a 400 x 300 photo at two scales: each gives its best 100 of the boxes inside the photo, in scale order
    photo = cv2.resize(square, (400, 300))
    both = proposer((256, 1024))(photo)
    first, second = proposer((256,), 100)(photo), proposer((1024,), 100)(photo)
    assert 0 < len(first) <= 100 and len(second) == 100  # the 256 canvas has few boxes above ssd_threshold
    np.testing.assert_array_equal(both, np.concatenate([first, second]))
    assert (both >= 0).all() and (both[:, [0, 2]] <= 400).all() and (both[:, [1, 3]] <= 300).all()
    # merged by score: the best 200 boxes of both scales together, whatever scale gave them
    merged = proposer((256, 1024), merge="score")
    parts = [scored_ssd_boxes(detection_rows(out[LOC_BLOB][0], out[CONF_BLOB][0], *merged._net(side)[1:],
                                             dataclasses.replace(merged.detection, keep_top_k=-1)),
                              400, 300, cfg.test.ssd_threshold, side, factor)
             for side, factor, out in merged.forward(photo)]
    boxes, scores = np.concatenate([b for b, _ in parts]), np.concatenate([s for _, s in parts])
    assert len(boxes) > 200 and len(parts[0][0]) > 0
    order = np.argsort(-scores, kind="stable")[:200]
    np.testing.assert_array_equal(merged(photo), boxes[order])
    assert not np.array_equal(merged(photo), both)  # the scales do not share the boxes half and half
    # with NMS, one NMS over the boxes of all scales, then the best 150
    thinned = SSDProposer(model, "onnxruntime", cfg.input, dataclasses.replace(
        cfg.test, ssd_scales=(256, 1024), ssd_max_proposals=150, ssd_merge="score", ssd_nms_iou=0.85))(photo)
    np.testing.assert_array_equal(thinned, boxes[nms(boxes, scores, 0.85)[:150]])
    iou = box_iou(thinned, thinned)
    assert 0 < len(thinned) <= 150 and len(nms(boxes, scores, 0.85)) < len(boxes)
    assert (iou[np.triu_indices(len(thinned), 1)] <= 0.85).all()


def bad_inputs(folder: Path) -> dict[str, str]:
    """Write one file per kind of bad input; returns name -> expected run-log word."""
    folder.mkdir()
    raw = AFW_IMAGES[2].read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (folder / "notimage.png").write_text("this is not an image\n")
    colour = cv2.imread(str(AFW_IMAGES[2]))
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep16.png"), colour.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "huge.png"), cv2.resize(colour, (1400, 1000)))  # > max_image_side 700
    return {"empty": "SKIPPED", "truncated": "SKIPPED", "notimage": "SKIPPED", "gray": "CONVERTED",
            "rgba": "CONVERTED", "deep16": "CONVERTED", "huge": "CONVERTED"}


def test_cli_resume_after_kill_and_bad_inputs(env, tmp_path):
    out = tmp_path / "out"
    images = tmp_path / "images"
    expected = bad_inputs(images)
    cmd = [sys.executable, "-m", "pipeline", "run", *map(str, AFW_IMAGES), str(images), "--model", str(env["model"]),
           "--out", str(out), "--config", str(env["config"])]
    # 1) a run killed with SIGKILL right after its first result (deterministic: the run's own crash hook)
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}",
                                              "HYPERFACE_CRASH_AT": "between_images:1"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    assert proc.returncode == -signal.SIGKILL
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert len(first) == 1
    # 2) the rerun finishes the rest and redoes nothing already written
    counts = run([*AFW_IMAGES, images], env["model"], out, config=env["config"], progress=False)
    good = [p.stem for p in AFW_IMAGES] + [k for k, v in expected.items() if v == "CONVERTED"]
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(good)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(good)
    assert not list(out.glob(".*.tmp"))  # no temp files left
    assert counts["already_done"] == len(first) and counts["done"] == len(good) - len(first)
    assert counts["skipped"] == 3
    for name, mtime in first.items():
        assert (out / name).stat().st_mtime_ns == mtime
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for p in out.glob("*.json"):
        doc = json.loads(p.read_text())
        validator.validate(doc)
        assert cv2.imread(str(out / f"{p.stem}.png")).shape[:2] == (doc["height"], doc["width"])
    huge = json.loads((out / "huge.json").read_text())
    assert (huge["width"], huge["height"]) == (1400, 1000) and any("downscaled" in n for n in huge["notes"])
    log_lines = (out / RUN_LOG).read_text().splitlines()
    for name, kind in expected.items():
        mine = [line for line in log_lines if line.startswith(f"{kind} {images / name}")]
        assert len(mine) == 1, (name, log_lines)
    assert any("empty file" in line for line in log_lines) and any("truncated JPEG" in line for line in log_lines)
    # 3) a third run does nothing and adds no line twice
    again = run([*AFW_IMAGES, images], env["model"], out, config=env["config"], progress=False)
    assert again["done"] == 0 and again["already_done"] == len(good)
    lines_after = (out / RUN_LOG).read_text().splitlines()
    assert len(lines_after) == len(set(lines_after))


def test_speed_benchmark_quick(tmp_path):
    out = tmp_path / "speed.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "speed.py"), "--quick", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HYPERFACE_MODEL_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["net_gflops_per_region"] == pytest.approx(infer_shapes(TINY, batch=1).total_flops / 1e9)
    assert res["ss_quality_boxes"] >= res["ss_fast_boxes"] > 0
    # Timing values depend on the load of the machine: only their presence and sign are checked here.
    assert res["forward_opencv_bs1_per_s"] > 0 and res["forward_opencv_bs4_peak_fraction"] > 0
    assert res["hyperface_s_per_image"] > 0 and res["peak_rss_mb"] > 0
    assert "proposals/s" in done.stdout and "s/image" in done.stdout
