"""Issue 13, "never lose a photo or a result": one test per numbered item of the folder CLI and the
API, on real photos (../shared/data/afw_sample) copied into temp folders, with the tiny fixture net;
a Hypothesis fuzz test of the decoder and the API; kill -9 at fixed points of a run, whose final JSON
must equal an uninterrupted run's byte for byte."""
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.config import DATA_ROOT, load_config
from pipeline import HyperFace
from pipeline.cli import RUN_LOG, main, run
from pipeline.errors import BadImageError, ModelError
from pipeline.fixtures import make_model_dir
from pipeline.images import decode_image, read_image, to_bgr8
from pipeline.model_store import WEIGHTS_FP16, load_model
from pipeline.run_state import RUN_STATE
from test_pipeline_e2e import TINY, make_tiny_env, tiny_weights  # the tiny fixture net: a mean-shape face in every box

REPO = Path(__file__).resolve().parents[1]
AFW = DATA_ROOT / "afw_sample"
pytestmark = pytest.mark.skipif(not AFW.is_dir(), reason=f"needs the shared data folder ({AFW} not found)")
PHOTOS = [AFW / f"{n}.jpg" for n in ("1004109301", "1051618982", "111076519")]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    patch = pytest.MonkeyPatch()
    patch.setenv("HYPERFACE_MODEL_CACHE", str(root / "cache"))
    yield make_tiny_env(root)
    patch.undo()


def photos(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in PHOTOS[:n]:
        shutil.copyfile(p, folder / p.name)
    return folder


def cli(env, *args):
    return main(["run", *map(str, args), "--model", str(env["model"]), "--config", str(env["config"])])


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------ 1. outputs never shadow inputs
def test_1_out_never_overwrites_or_shadows_inputs(env, tmp_path, capsys):
    folder = photos(tmp_path / "photos")
    cv2.imwrite(str(folder / "c.png"), cv2.imread(str(PHOTOS[2]))[:200, :200])
    before = files_of(folder)
    assert cli(env, folder, "--out", folder) == 2
    err = one_line(capsys.readouterr().err)
    assert err == (f"error: {folder}: --out is an input folder: the overlays (*.png) written there would be read "
                   "as new inputs by the next run, and could overwrite photos; choose another --out")
    # a PNG named as an input inside --out: its overlay would be written over it
    assert cli(env, folder / "c.png", "--out", folder) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {folder / 'c.png'}: is an input and would be overwritten "
                                                 f"by the output {(folder / 'c.png').resolve()}; choose another --out")
    assert files_of(folder) == before  # nothing written, nothing chmod'ed


# ------------------------------------------------------------------ 2. truncation decided by decoding
def test_2_jpeg_with_bytes_after_its_end_marker_is_a_valid_photo(env, tmp_path):
    raw = PHOTOS[0].read_bytes()
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(raw + b"\x00" * 100 + b"camera maker notes " * 200)
    loaded = read_image(padded, 4096)
    np.testing.assert_array_equal(loaded.image, cv2.imread(str(PHOTOS[0])))
    assert loaded.notes == []
    with pytest.raises(BadImageError) as cut:
        read_image(_write(tmp_path / "cut.jpg", raw[: len(raw) // 2]), 4096)
    assert cut.value.problem == ("truncated JPEG (decoding failed and the file does not end with the end-of-image "
                                 "marker)")
    corrupt = bytearray(raw)
    corrupt[52958] ^= 0xFF  # one flipped byte in the entropy-coded data: libjpeg warns and decodes
    image, notes = decode_image(bytes(corrupt), "x.jpg")
    assert image.shape == (800, 600, 3)
    assert notes == ["decoder warning: Corrupt JPEG data: premature end of data segment"]
    out = tmp_path / "out"
    assert run([padded], env["model"], out, config=env["config"], progress=False)["done"] == 1
    assert (out / "padded.json").is_file()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ 4. resume: settings, fingerprint, invalid results
def test_4_resume_redoes_invalid_results_and_refuses_other_settings(env, tmp_path, capsys):
    folder, out = photos(tmp_path / "in"), tmp_path / "out"
    ssd = ("--proposals", "ssd")  # the settings record names the SSD model's weights too
    assert cli(env, folder, "--out", out, *ssd) == 0
    a, b = (out / f"{p.stem}.json" for p in PHOTOS[:2])
    reference = {p.name: p.read_bytes() for p in (a, b)}
    doc = json.loads(reference[a.name])
    sha1 = hashlib.sha1((env["model"] / WEIGHTS_FP16).read_bytes()).hexdigest()
    assert doc["format_version"] == 2 and doc["settings"]["weights_sha1"] == sha1
    assert doc["settings"]["proposals"] == "ssd" and doc["settings"]["config"]["test"]["batch_size"] == 16
    ssd_npz = env["model"] / "proposals" / WEIGHTS_FP16
    assert doc["settings"]["ssd_weights_sha1"] == hashlib.sha1(ssd_npz.read_bytes()).hexdigest()
    assert json.loads((out / RUN_STATE).read_text())["settings"] == doc["settings"]
    # a cut-short and a 0-byte result are redone, to the same bytes
    a.write_bytes(reference[a.name][:500])
    b.write_bytes(b"")
    capsys.readouterr()
    assert cli(env, folder, "--out", out, *ssd) == 0
    assert capsys.readouterr().out.startswith("2 done, 0 already done, 0 skipped, 0 failed, 0 missing")
    assert {p.name: p.read_bytes() for p in (a, b)} == reference
    log = (out / RUN_LOG).read_text().splitlines()
    assert f"REDONE {folder / a.name.replace('.json', '.jpg')}: {a.name} is not valid JSON (cut short?)" in log
    assert f"REDONE {folder / b.name.replace('.json', '.jpg')}: {b.name} is empty (0 bytes)" in log
    # other settings: refused, naming the difference; --force redoes them
    assert cli(env, folder, "--out", out, *ssd, "--post", "nms", "--irp", "0") == 2
    assert one_line(capsys.readouterr().err) == (
        f"error: {out}: holds results made with other settings (irp_iterations: 1 -> 0; post: lnms -> nms); rerun "
        "with the same settings, use another --out, or add --force to redo them")
    assert {p.name: p.read_bytes() for p in (a, b)} == reference
    assert cli(env, folder, "--out", out, *ssd, "--post", "nms", "--irp", "0", "--force") == 0
    assert json.loads(a.read_text())["settings"]["post"] == "nms"
    # another model (other weights) is another setting too
    other = make_model_dir(TINY, tmp_path / "other_model", tiny_weights(seed=5), fp16=True)
    shutil.copytree(env["model"] / "proposals", other / "proposals")
    capsys.readouterr()
    assert main(["run", str(folder), "--out", str(out), "--model", str(other), "--config", str(env["config"]),
                 *ssd, "--post", "nms", "--irp", "0"]) == 2
    assert "weights_sha1: " in one_line(capsys.readouterr().err)


def test_4_load_model_verifies_the_weights_sha1(env, tmp_path):
    model = shutil.copytree(env["model"], tmp_path / "m", ignore=shutil.ignore_patterns("proposals"))
    assert load_model(model).weights_sha1 == hashlib.sha1((model / WEIGHTS_FP16).read_bytes()).hexdigest()
    data = bytearray((model / WEIGHTS_FP16).read_bytes())
    data[len(data) // 2] ^= 0x01
    (model / WEIGHTS_FP16).write_bytes(bytes(data))
    want = json.loads((model / "model.json").read_text())["weights_sha1"]
    with pytest.raises(ModelError) as err:
        load_model(model)
    assert str(err.value) == (f"{model / WEIGHTS_FP16}: SHA-1 {hashlib.sha1(bytes(data)).hexdigest()} does not "
                              f"match model.json's weights_sha1 {want} (corrupt, truncated or replaced weight file)")


# ------------------------------------------------------------------ 5. stable, collision-free names
def test_5_same_stem_inputs_keep_stable_names(env, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    shutil.copyfile(PHOTOS[0], folder / "a.jpg")
    assert run([folder], env["model"], out, config=env["config"], progress=False)["done"] == 1
    first = (out / "a.json").read_bytes()
    cv2.imwrite(str(folder / "a.png"), cv2.imread(str(PHOTOS[1])))
    counts = run([folder], env["model"], out, config=env["config"], progress=False)
    assert (counts["done"], counts["already_done"]) == (1, 1)
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "a_png.json"]
    assert (out / "a.json").read_bytes() == first
    assert json.loads((out / "a_png.json").read_text())["image"] == str(folder / "a.png")
    # the png alone, later: still a_png (the name was chosen once)
    assert run([folder / "a.png"], env["model"], out, config=env["config"], progress=False)["already_done"] == 1
    names = json.loads((out / RUN_STATE).read_text())["names"]
    assert names == {str((folder / "a.jpg").resolve()): "a", str((folder / "a.png").resolve()): "a_png"}


# ------------------------------------------------------------------ 6. exit codes and the summary
def test_6_exit_status_counts_and_run_log(env, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no_such_folder"
    assert cli(env, missing, "--out", out) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == f"0 done, 0 already done, 0 skipped, 0 failed, 1 missing (see {out / RUN_LOG})"
    assert captured.err.strip() == f"error: {missing}: no such file or folder"
    assert (out / RUN_LOG).read_text() == f"MISSING {missing}: no such file or folder\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(env, empty, "--out", tmp_path / "out2") == 1
    assert capsys.readouterr().err.strip() == f"error: no image files in {empty}"
    assert (tmp_path / "out2" / RUN_LOG).is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.png").write_text("not an image\n")
    assert cli(env, bad, "--out", tmp_path / "out3") == 1  # every input failed
    assert capsys.readouterr().out.startswith("0 done, 0 already done, 2 skipped, 0 failed, 0 missing")
    good = photos(tmp_path / "good", 1)
    assert cli(env, good, missing, "--out", tmp_path / "out4") == 1  # one missing is enough
    assert capsys.readouterr().out.startswith("1 done, 0 already done, 0 skipped, 0 failed, 1 missing")
    assert cli(env, good, "--out", tmp_path / "out4") == 0
    assert capsys.readouterr().out.startswith("0 done, 1 already done, 0 skipped, 0 failed, 0 missing")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("test: {batch_size: -5}\n")
    assert main(["run", str(good), "--out", str(tmp_path / "out5"), "--model", str(env["model"]),
                 "--config", str(cfg)]) == 2
    assert one_line(capsys.readouterr().err) == f"error: {cfg}: test.batch_size = -5 must be >= 1"


# ------------------------------------------------------------------ 7. one line, not a traceback
def test_7_bad_out_and_corrupt_weights_are_one_line(env, tmp_path, capsys):
    folder = photos(tmp_path / "in", 1)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert cli(env, folder, "--out", a_file) == 2
    assert one_line(capsys.readouterr().err) == f"error: {a_file}: --out is an existing file, not a folder"
    assert cli(env, folder, "--out", a_file / "sub") == 2
    assert one_line(capsys.readouterr().err) == (f"error: {a_file / 'sub'}: --out cannot be created: {a_file} is "
                                                 "a file, not a folder")
    model = shutil.copytree(env["model"], tmp_path / "m", ignore=shutil.ignore_patterns("proposals"))
    npz = model / WEIGHTS_FP16
    npz.write_bytes(npz.read_bytes()[:5000])                     # truncated: the SHA-1 check names it
    assert main(["run", str(folder), "--out", str(tmp_path / "o1"), "--model", str(model)]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"error: {npz}: SHA-1 ")
    meta = json.loads((model / "model.json").read_text())
    del meta["weights_sha1"]
    (model / "model.json").write_text(json.dumps(meta))         # no SHA-1 to check: the archive itself fails
    assert main(["run", str(folder), "--out", str(tmp_path / "o2"), "--model", str(model)]) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {npz}: not a valid fp16 weight archive (BadZipFile: "
                                                 "File is not a zip file)")


def test_7_read_only_out_is_refused_before_detection(env, tmp_path):
    """A read-only --out is refused before the model loads (here a model that does not exist, so a
    late check would report the model instead). As root, permission bits bind only without the
    DAC-override capabilities: the child drops them (setpriv)."""
    folder = photos(tmp_path / "in", 1)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: a read-only folder cannot be made")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    code = ("import sys; from pipeline.cli import main; "
            f"sys.exit(main(['run', {str(folder)!r}, '--out', {str(ro)!r}, '--model', {str(tmp_path / 'no_model')!r}]))")
    done = subprocess.run([*prefix, sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == f"error: {ro}: --out is not writable (Permission denied)"
    assert list(ro.iterdir()) == []


# ------------------------------------------------------------------ 8. values are validated
def test_8_irp_and_config_values_are_validated(env, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(env, PHOTOS[0], "--out", tmp_path / "o", "--irp", "-1")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith("error: argument --irp: must be >= 0, got -1")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match=r"irp_iterations must be a whole number >= 0, got -1"):
        HyperFace(env["model"], config=env["config"], irp_iterations=-1)
    cfg = tmp_path / "c.yaml"
    for text, message in [
        ("test: {batch_size: 0}", "test.batch_size = 0 must be >= 1"),
        ("test: {detection_threshold: 1.5}", "test.detection_threshold = 1.5 must lie in [0, 1]"),
        ("iou: {detection_positive: -0.1}", "iou.detection_positive = -0.1 must lie in [0, 1]"),
        ("input: {size: -227}", "input.size = -227 must be >= 1"),
        ("selective_search: {min_box_side: -20}", "selective_search.min_box_side = -20 must be >= 0"),
        ("selective_search: {mode: slow}", "selective_search.mode = 'slow' must be one of ('fast', 'quality')"),
        ("test: {lnms_iou: .nan}", "test.lnms_iou = nan must be a finite number"),
    ]:
        cfg.write_text(text + "\n")
        with pytest.raises(ValueError) as err:
            load_config(cfg)
        assert str(err.value) == f"{cfg}: {message}"
    cfg.write_text("sampling: {flip: 'no'}\n")
    with pytest.raises(ValueError, match=r"sampling\.flip: expected bool, got 'no'"):
        load_config(cfg)
    cfg.write_text("test: {batch_size: 2.5}\n")
    with pytest.raises(ValueError, match=r"test\.batch_size: expected int, got 2\.5"):
        load_config(cfg)


# ------------------------------------------------------------------ 9. a decompression bomb's reason
def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_9_decompression_bomb_is_named(tmp_path):
    bomb = _write(tmp_path / "bomb.png", png_header_only(50000, 50000))
    with pytest.raises(BadImageError) as err:
        read_image(bomb, 4096)
    assert str(err.value) == (f"{bomb}: image too large to decode (50000x50000 = 2,500,000,000 pixels, over "
                              "OpenCV's limit of 1,073,741,824; a decompression bomb?)")


# ------------------------------------------------------------------ 11. the API: one BadImageError
def test_11_api_rejects_non_images_with_bad_image_error(env):
    hf = HyperFace(env["model"], config=env["config"])
    cases = {None: "no image (got None; cv2.imread returns None for a file it cannot read)",
             "empty": "unsupported image shape (0,) (want HxW, HxWx1, HxWx3 or HxWx4)",
             "0x0x3": "empty image (shape (0, 0, 3))",
             "bool": "unsupported pixel type bool (want uint8, uint16 or float)"}
    arrays = {None: None, "empty": np.array([]), "0x0x3": np.zeros((0, 0, 3), np.uint8),
              "bool": np.zeros((30, 30, 3), bool)}
    for key, problem in cases.items():
        with pytest.raises(BadImageError) as err:
            hf.detect(arrays[key])
        assert err.value.problem == problem and str(err.value) == f"<array>: {problem}"
    assert hf.detect(np.zeros((1, 1, 3), np.uint8)) == []  # too small for any proposal: no face, no error


# ------------------------------------------------------------------ 13. permissions, temp files, broken links
def test_13_umask_stale_temp_files_and_broken_links(env, tmp_path):
    folder = photos(tmp_path / "in", 1)
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".1004109301.json.k3j2h1.tmp"
    stale.write_bytes(b"")
    old = os.umask(0o027)
    try:
        counts = run([folder], env["model"], out, config=env["config"], progress=False)
    finally:
        os.umask(old)
    assert (counts["done"], counts["skipped"]) == (1, 1)
    assert not stale.exists() and not list(out.glob(".*.tmp"))
    for name in ("1004109301.json", "1004109301.png", RUN_LOG, RUN_STATE):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name
    assert (f"SKIPPED {folder / 'gone.jpg'}: broken symbolic link (target {tmp_path / 'deleted.jpg'} not found)"
            in (out / RUN_LOG).read_text().splitlines())


# ------------------------------------------------------------------ fuzz: decoder and API
def _small_photo(ext: str) -> bytes:
    photo = cv2.imread(str(PHOTOS[1]))
    if photo is None:  # no shared data: the module is skipped (pytestmark), the seeds stay empty
        return b""
    image = cv2.resize(photo, (48, 64), interpolation=cv2.INTER_AREA)
    return cv2.imencode(ext, image)[1].tobytes()


SEEDS = {".jpg": _small_photo(".jpg"), ".png": _small_photo(".png")}


@st.composite
def mutated(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "append", "zero"]))
        if op == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
        elif op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=64))
        elif op == "zero" and data:
            i, n = draw(st.integers(0, len(data) - 1)), draw(st.integers(1, 256))
            data[i:i + n] = bytes(len(data[i:i + n]))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_detector(env):
    return HyperFace(env["model"], config=env["config"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_fuzz_mutated_photo_bytes_end_in_faces_or_bad_image_error(fuzz_detector, data):
    try:
        image, notes = decode_image(data, "fuzz")
        faces = fuzz_detector.detect(to_bgr8(image, "fuzz", notes))
    except BadImageError as err:
        assert str(err).startswith("fuzz: ") and "\n" not in str(err)
        return
    assert isinstance(faces, list)


ARRAYS = hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=ARRAYS)
def test_fuzz_random_arrays_end_in_faces_or_bad_image_error(fuzz_detector, array):
    try:
        faces = fuzz_detector.detect(array)
    except BadImageError as err:
        assert str(err).startswith("<array>: ")
        return
    assert isinstance(faces, list)


# ------------------------------------------------------------------ kill -9 at fixed points
CRASH_POINTS = ["before_results", "mid_png:1", "after_png:2", "mid_json:2", "between_images:1"]


def test_kill_9_at_fixed_points_resumes_to_the_same_json(env, tmp_path):
    """Default settings (selective search fast, IRP, L-NMS): the killed run is resumed in this process,
    which has run other detections before, and must still give the reference's bytes."""
    folder = photos(tmp_path / "in", 3)
    (folder / "empty.jpg").write_bytes(b"")
    args = [str(folder), "--model", str(env["model"]), "--config", str(env["config"])]
    base_env = {**os.environ, "PYTHONPATH": str(REPO)}
    reference = tmp_path / "reference"
    assert main(["run", *args, "--out", str(reference)]) == 0
    expected = {p.name: p.read_bytes() for p in sorted(reference.glob("*.json"))}
    assert len(expected) == 3
    for point in CRASH_POINTS:
        out = tmp_path / point.replace(":", "_")
        killed = subprocess.run([sys.executable, "-m", "pipeline", "run", *args, "--out", str(out)], cwd=REPO,
                                env={**base_env, "HYPERFACE_CRASH_AT": point}, capture_output=True, timeout=300)
        assert killed.returncode == -9, (point, killed.stderr[-2000:])
        written = sorted(p.name for p in out.glob("*.json"))
        assert len(written) == {"before_results": 0, "mid_png:1": 0, "after_png:2": 1, "mid_json:2": 1,
                                "between_images:1": 1}[point], (point, written)
        if point.startswith("mid_"):
            assert list(out.glob(".*.tmp")), point  # the half-written temp file a kill leaves
        assert main(["run", *args, "--out", str(out)]) == 0
        assert {p.name: p.read_bytes() for p in sorted(out.glob("*.json"))} == expected, point
        assert not list(out.glob(".*.tmp")), point
