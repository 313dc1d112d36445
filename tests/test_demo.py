"""`make demo` (the README's first command) and `make setup-inference`: real make, real protoc-generated
caffe_pb2, real OpenCV DNN forward of the HyperFace deploy net (random fp16 weights), Caffe prefix
hidden so the no-pycaffe path is the one exercised."""
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import cv2
import jsonschema
import pytest

from core.config import DATA_ROOT
from pipeline.backends import DEFAULT_BACKEND
from pipeline.fixtures import make_model_dir

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "prototxt" / "hyperface" / "deploy.prototxt"
EXAMPLES = REPO / "examples" / "images"
EXAMPLE_NAMES = ["astronaut", "cameraman", "chelsea"]
SCHEMA = json.loads((REPO / "pipeline" / "face_schema.json").read_text())
AFW_IMAGE = DATA_ROOT / "afw_sample" / "1004109301.jpg"
VENV_PY = REPO / ".venv" / "bin" / "python"

_spec = importlib.util.spec_from_file_location("hyperface_demo", REPO / "examples" / "demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Model cache in a temp folder (caffe_pb2 generated there), Caffe prefix pointed at nothing."""
    root = tmp_path_factory.mktemp("demo")
    e = dict(os.environ)
    e["HYPERFACE_MODEL_CACHE"] = str(root / "model_cache")
    for var in ("CAFFE_PREFIX", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL"):
        e.pop(var, None)
    setup = subprocess.run(["bash", str(REPO / "scripts" / "setup_inference.sh")], env=e, cwd=REPO,
                           capture_output=True, text=True, timeout=1200)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    cfg = root / "small.yaml"  # few proposals: the test checks plumbing, not accuracy
    cfg.write_text("selective_search: {max_side: 200, max_proposals: 40}\ntest: {batch_size: 16, max_image_side: 700, proposals: fast}\n")
    return {"root": root, "env": e, "config": cfg, "pb2": root / "model_cache" / "caffe_pb2" / "caffe_pb2.py",
            "setup_out": setup.stdout}


@pytest.fixture(scope="module")
def model(env):
    return make_model_dir(DEPLOY, env["root"] / "model", fp16=True, seed=3)


def make(env, *args, timeout=600):
    return subprocess.run(["make", "--no-print-directory", *args, f"CAFFE_PREFIX={env['root'] / 'no_caffe'}"],
                          env=env["env"], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_setup_inference_generates_importable_caffe_pb2(env):
    assert env["pb2"].is_file() and "check (venv protobuf loads caffe_pb2)" in env["setup_out"]
    stamp = (env["pb2"].parent / ".stamp").read_text()
    assert "c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a" in stamp and "libprotoc" in stamp
    # core.caffe_proto finds exactly this file when pycaffe is absent, and it (de)serialises SSD layers
    probe = ("from core.caffe_proto import caffe_pb2; pb = caffe_pb2(); print(pb.__file__); "
             "n = pb.NetParameter(name='x'); n.layer.add(type='PriorBox').prior_box_param.max_size.append(7.5); "
             "print(pb.NetParameter.FromString(n.SerializeToString()).layer[0].prior_box_param.max_size[0])")
    e = dict(env["env"], PYTHONPATH=str(REPO), CAFFE_PREFIX=str(env["root"] / "no_caffe"))
    done = subprocess.run([str(VENV_PY), "-c", probe], env=e, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(env["pb2"]), "7.5"]
    # second run: everything cached (what it skips is checked, not its wall time: speed belongs in benchmarks/)
    again = subprocess.run(["bash", str(REPO / "scripts" / "setup_inference.sh")], env=env["env"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "caffe_pb2 (cached at" in again.stdout and "fetch sdist" not in again.stdout


def test_make_demo_writes_schema_valid_json_and_png_per_image(env, model):
    out = env["root"] / "out"
    done = make(env, "demo", f"MODEL={model}", f"DEMO_OUT={out}", f"DEMO_ARGS=--config {env['config']}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "==> [setup-inference] done" in done.stdout and "[setup]" not in done.stdout  # never the Caffe build
    assert f"are in {out}" in done.stdout and "3 done, 0 already done, 0 skipped" in done.stdout
    assert sorted(p.name for p in out.glob("*.json")) == [f"{n}.json" for n in EXAMPLE_NAMES]
    for name in EXAMPLE_NAMES:
        image = cv2.imread(str(EXAMPLES / f"{name}.jpg"), cv2.IMREAD_UNCHANGED)
        doc = json.loads((out / f"{name}.json").read_text())
        jsonschema.validate(doc, SCHEMA)
        assert (doc["width"], doc["height"], doc["model"], doc["backend"]) == (image.shape[1], image.shape[0], "hyperface", DEFAULT_BACKEND)
        assert doc["notes"] == (["grayscale -> BGR"] if name == "cameraman" else [])
        overlay = cv2.imread(str(out / f"{name}.png"))
        assert overlay.shape == (image.shape[0], image.shape[1], 3)
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith(f"examples/images/{name}.jpg: "))
        assert line.startswith(f"examples/images/{name}.jpg: {len(doc['faces'])} face(s)")
        assert line.endswith(f" -> {out / (name + '.png')}, {out / (name + '.json')}")
        if doc["faces"]:
            assert f"best score {doc['faces'][0]['score']:.2f}" in line
    # rerun: resumed, nothing recomputed
    again = make(env, "demo", f"MODEL={model}", f"DEMO_OUT={out}", f"DEMO_ARGS=--config {env['config']}")
    assert again.returncode == 0 and "0 done, 3 already done, 0 skipped" in again.stdout


@pytest.mark.skipif(not AFW_IMAGE.is_file(), reason="needs ../shared/data/afw_sample")
def test_make_demo_images_override(env, model):
    out = env["root"] / "out_afw"
    done = make(env, "demo", f"MODEL={model}", f"DEMO_OUT={out}", f"IMAGES={AFW_IMAGE}",
                f"DEMO_ARGS=--config {env['config']}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".json", ".png")) == ["1004109301.json", "1004109301.png"]
    jsonschema.validate(json.loads((out / "1004109301.json").read_text()), SCHEMA)


def test_make_demo_missing_model_is_one_line_error(env):
    missing = env["root"] / "no_such_model"
    done = make(env, "demo", f"MODEL={missing}", timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"model directory '{missing}' not found" in lines[0], done.stderr
    assert "[setup-inference]" not in done.stdout  # fails before any setup work


def test_model_key_errors_name_the_file(tmp_path):
    with pytest.raises(demo.DemoError, match=f"{tmp_path / 'nope'}: model directory not found"):
        demo.model_key(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    with pytest.raises(demo.DemoError, match="no deploy.prototxt"):
        demo.model_key(tmp_path / "m")
    (tmp_path / "m" / "deploy.prototxt").write_text("name: 'x'\n")
    (tmp_path / "m" / "model.json").write_text("{broken")
    with pytest.raises(demo.DemoError, match=r"model.json: not valid JSON"):
        demo.model_key(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text('{"weights_sha1": "abc"}')
    assert demo.model_key(tmp_path / "m") == "abc"


def test_outputs_of_other_weights_are_cleared(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.json", "a.png", "run_log.txt", "keep.txt"):
        (out / name).write_text("x")
    demo.clear_if_model_changed(out, "sha-A")  # first demo here: nothing removed, marker written
    assert sorted(p.name for p in out.iterdir()) == [".demo_model", "a.json", "a.png", "keep.txt", "run_log.txt"]
    demo.clear_if_model_changed(out, "sha-A")  # same weights: resume
    assert (out / "a.json").is_file()
    demo.clear_if_model_changed(out, "sha-B")  # new weights: old results removed, other files kept
    assert sorted(p.name for p in out.iterdir()) == [".demo_model", "keep.txt"]
    assert (out / ".demo_model").read_text().strip() == "sha-B"


def test_schema_backend_names_are_the_pipelines_backends():
    # every backend a result can be written with validates (a new backend once failed every run's JSON)
    from pipeline.backends import BACKENDS
    assert SCHEMA["properties"]["backend"]["enum"] == list(BACKENDS)
