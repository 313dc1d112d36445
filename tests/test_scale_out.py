"""Issue 15: folder runs on a real Dask LocalCluster (byte-identical to a local run, a worker killed
mid-chunk), the JSON Lines index across kill + resume, the HTML gallery rendered in headless
Chromium, report.html, and video input. Real photos of ../shared/data/afw_sample (downscaled to 320
px, few proposals, so it stays fast) and the shipped model models/hyperface; structural and
identity checks only (the model is being retrained)."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.index import INDEX_NAME, ResultIndex, index_record
from core.config import DATA_ROOT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AFW = DATA_ROOT / "afw_sample"
MODEL = REPO / "models" / "hyperface"
N_PHOTOS = 6
N_FRAMES = 4  # the video test's clip: frames made from the first 4 photos
SMALL_CONFIG = "selective_search: {max_side: 320, max_proposals: 40}\ntest: {proposals: fast}\n"

pytestmark = pytest.mark.skipif(not AFW.is_dir() or not (MODEL / "model.json").is_file(),
                                reason="needs ../shared/data/afw_sample and models/hyperface")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO}:" + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def cli(*args, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale_out")
    photos = root / "photos"
    photos.mkdir()
    for src in sorted(AFW.glob("*.jpg"))[:N_PHOTOS]:
        im = cv2.imread(str(src))
        s = 320 / max(im.shape[:2])
        im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
        assert cv2.imwrite(str(photos / src.name), im, [cv2.IMWRITE_JPEG_QUALITY, 90])
    cfg = root / "small.yaml"
    cfg.write_text(SMALL_CONFIG)
    return {"root": root, "photos": photos, "config": cfg, "stems": sorted(p.stem for p in photos.glob("*.jpg"))}


@pytest.fixture(scope="module")
def local_run(work):
    """The reference: a plain local run (a subprocess, which must not import Dask)."""
    out = work["root"] / "local"
    code = ("import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
            "print('DASK_MODULES', sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "run", str(work["photos"]), "--model", str(MODEL),
                           "--out", str(out), "--config", str(work["config"])],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DASK_MODULES []" in proc.stdout
    assert f"{N_PHOTOS} done, 0 already done, 0 skipped" in proc.stdout
    return out


def result_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.json")) if p.name != INDEX_NAME}


def index_lines(out: Path) -> list[dict]:
    text = (out / INDEX_NAME).read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def check_index(out: Path, stems: list[str]) -> None:
    """One complete line per photo, none twice, each equal to the record of its JSON."""
    lines = index_lines(out)
    names = [r["result"] for r in lines]
    assert sorted(names) == [f"{s}.json" for s in stems]
    for rec in lines:
        doc = json.loads((out / rec["result"]).read_text())
        assert rec == index_record(rec["result"], doc)
        assert rec["num_faces"] == len(doc["faces"])


# ---------------------------------------------------------------- Dask
def test_local_cluster_matches_local_run_byte_for_byte(work, local_run):
    from pipeline.dask_runner import run_dask
    out = work["root"] / "dask"
    counts = run_dask([work["photos"]], MODEL, out, "local", workers=2, config=work["config"], progress=False)
    assert counts == {"done": N_PHOTOS, "already_done": 0, "skipped": 0, "failed": 0, "missing": 0}
    ref = result_bytes(local_run)
    assert len(ref) == N_PHOTOS and result_bytes(out) == ref
    for stem in work["stems"]:
        assert (out / f"{stem}.png").read_bytes() == (local_run / f"{stem}.png").read_bytes()
    check_index(out, work["stems"])
    # resume: nothing pending, no cluster needed, nothing appended
    before = (out / INDEX_NAME).read_bytes()
    counts = run_dask([work["photos"]], MODEL, out, "local", workers=2, config=work["config"], progress=False)
    assert counts == {"done": 0, "already_done": N_PHOTOS, "skipped": 0, "failed": 0, "missing": 0}
    assert (out / INDEX_NAME).read_bytes() == before
    log = (out / "run_log.txt").read_text().splitlines()
    assert len(log) == N_PHOTOS and all("already done" in line for line in log)
    # the same folder resumes locally too: same names (.run_state) and settings
    from pipeline.cli import run
    counts = run([work["photos"]], MODEL, out, config=work["config"], progress=False)
    assert counts == {"done": 0, "already_done": N_PHOTOS, "skipped": 0, "failed": 0, "missing": 0}


def test_worker_killed_mid_chunk_is_redone(work, local_run):
    from distributed import Client, LocalCluster

    from pipeline.dask_runner import run_dask
    out = work["root"] / "dask_kill"
    stems = work["stems"]
    result, errors = {}, []

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        def target():
            try:
                result["counts"] = run_dask([work["photos"]], MODEL, out, cluster.scheduler_address,
                                            config=work["config"], chunk_size=2, progress=False)
            except Exception as err:  # reported by the assertion below
                errors.append(err)

        th = threading.Thread(target=target)
        th.start()
        killed = None
        deadline = time.time() + 300
        while th.is_alive() and killed is None and time.time() < deadline:
            written = {p.stem for p in out.glob("*.json")}
            for addr, keys in client.processing().items():
                for key in keys:
                    m = re.match(r"hyperface-chunk-(\d+)-", str(key))
                    chunk = stems[2 * int(m.group(1)):2 * int(m.group(1)) + 2] if m else []
                    if killed is None and len(chunk) == 2 and chunk[0] in written and chunk[1] not in written:
                        pid = client.run(os.getpid, workers=[addr])[addr]
                        os.kill(pid, signal.SIGKILL)
                        killed = chunk
            time.sleep(0.02)
        th.join(600)
    assert not errors, errors
    assert killed is not None, "no chunk was caught between its first and second photo"
    assert result["counts"] == {"done": N_PHOTOS, "already_done": 0, "skipped": 0, "failed": 0, "missing": 0}
    assert result_bytes(out) == result_bytes(local_run)
    check_index(out, stems)
    assert (out / "run_log.txt").read_text() == ""  # nothing skipped, failed or reported "already done"


def test_dask_run_errors_are_one_line(work, tmp_path, capsys):
    import dask

    from pipeline.cli import main
    base = ["run", str(work["photos"]), "--model", str(MODEL), "--out", str(tmp_path / "out")]
    assert main(base + ["--scheduler", "local", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers must be >= 1, got 0"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert main(base + ["--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tcp://127.0.0.1:1: cannot reach the Dask scheduler") and "\n" not in err


# ---------------------------------------------------------------- index
def test_index_one_line_per_photo_after_kill_and_resume(work, local_run):
    out = work["root"] / "killed"
    cmd = [sys.executable, "-m", "pipeline", "run", str(work["photos"]), "--model", str(MODEL), "--out", str(out),
           "--config", str(work["config"])]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list(out.glob("*.json"))) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(result_bytes(out))
    assert 2 <= done_before < N_PHOTOS
    with (out / INDEX_NAME).open("ab") as f:  # as if the kill had cut an append short
        f.write(b'{"result":"1004109301.json","image":"cut sh')
    proc = cli("run", work["photos"], "--model", MODEL, "--out", out, "--config", work["config"])
    assert f"{N_PHOTOS - done_before} done, {done_before} already done, 0 skipped" in proc.stdout
    check_index(out, work["stems"])
    assert result_bytes(out) == result_bytes(local_run)
    # rebuilt on demand from the JSONs: the same records, sorted by name
    before = {r["result"]: r for r in index_lines(out)}
    proc = cli("index", out, "--rebuild")
    assert f"{N_PHOTOS} photos, {sum(r['num_faces'] for r in before.values())} faces" in proc.stdout
    rebuilt = index_lines(out)
    assert [r["result"] for r in rebuilt] == sorted(before) and all(r == before[r["result"]] for r in rebuilt)
    assert len(ResultIndex(out).records()) == N_PHOTOS


# ---------------------------------------------------------------- gallery
class DomPhotos(HTMLParser):
    """figure.photo elements of the gallery: their data-* attributes, face divs and thumbnail src."""

    def __init__(self):
        super().__init__()
        self.photos, self.body = [], {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        elif tag == "figure" and "photo" in cls:
            self.photos.append({"name": a["data-name"], "faces": int(a["data-faces"]),
                                "shown": int(a["data-faces-shown"]), "face_divs": [], "thumb": None})
        elif tag == "div" and "face" in cls and self.photos:
            self.photos[-1]["face_divs"].append(a)
        elif tag == "img" and "thumb" in cls and self.photos:
            self.photos[-1]["thumb"] = a.get("src")


def render(page: Path, fragment: str = "") -> DomPhotos:
    from pipeline.browser import dump_dom, page_url
    dom, _ = dump_dom(page_url(page, fragment))
    parsed = DomPhotos()
    parsed.feed(dom)
    assert parsed.body.get("data-rendered") == "1", "the page script did not finish"
    return parsed


def test_gallery_in_headless_chromium(work, local_run, tmp_path):
    from pipeline.browser import chromium_path, page_url, screenshot
    from pipeline.gallery import gallery_weight
    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; `make setup` installs it)")
    proc = cli("gallery", local_run)
    page = local_run / "index.html"
    assert page.is_file() and f"{N_PHOTOS} photos" in proc.stdout
    docs = {p.stem: json.loads(p.read_text()) for p in local_run.glob("*.json") if p.name != INDEX_NAME}
    faces = [(stem, f) for stem, d in docs.items() for f in d["faces"]]
    assert faces, "the shipped model found no face at all in the 6 photos"

    dom = render(page)
    assert sorted(p["name"] for p in dom.photos) == work["stems"]
    for p in dom.photos:
        assert p["faces"] == p["shown"] == len(p["face_divs"]) == len(docs[p["name"]]["faces"])
        assert p["thumb"] == f"gallery/thumbs/{p['name']}.jpg" and (local_run / p["thumb"]).is_file()
        assert [float(d["data-score"]) for d in p["face_divs"]] == \
            [round(f["score"], 3) for f in docs[p["name"]]["faces"]]
    assert dom.body["data-photos-shown"] == str(N_PHOTOS) and dom.body["data-faces-shown"] == str(len(faces))

    # filters and paging, from the URL hash; expected counts from the JSON (3 / 1 decimals as on the page)
    dom = render(page, "minscore=0.7&gender=f")
    want = sum(round(f["score"], 3) >= 0.7 and f["gender"]["label"] == "f" for _, f in faces)
    assert dom.body["data-faces-shown"] == str(want) and len(dom.photos) == N_PHOTOS
    assert all(float(d["data-score"]) >= 0.7 and d["data-gender"] == "f" for p in dom.photos for d in p["face_divs"])
    dom = render(page, "yawmin=-20&yawmax=20")
    want = sum(-20 <= round(f["pose_deg"]["yaw"], 1) <= 20 for _, f in faces)
    assert sum(len(p["face_divs"]) for p in dom.photos) == want
    dom = render(page, "only=1&minscore=0.9")
    assert sorted(p["name"] for p in dom.photos) == sorted({s for s, f in faces if round(f["score"], 3) >= 0.9})
    dom = render(page, "per=4&page=2")
    assert [p["name"] for p in dom.photos] == work["stems"][4:]
    assert (dom.body["data-page"], dom.body["data-pages"]) == ("2", "2")

    shot = screenshot(page_url(page), tmp_path / "gallery.png")
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1280)
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    assert counts.max() < 0.8 * img.shape[0] * img.shape[1] and len(colours) > 1000, "screenshot looks blank"
    w = gallery_weight(local_run)
    assert 0 < w["gallery_bytes"] < w["overlay_bytes"]


def test_report_html_shows_the_figures(tmp_path):
    from benchmarks.report import write_report
    png = tmp_path / "pr.png"
    cv2.imwrite(str(png), np.zeros((10, 10, 3), np.uint8))
    md = write_report(tmp_path / "report.md", "HyperFace benchmark: AFW", {"model": "models/hyperface"},
                      {"iou": 0.5}, {"Face detection": {"hyperface": {"AP": 0.25, "recall": float("nan")}}},
                      figures=[png], notes=["**bold** and `code`"])
    page = md.with_suffix(".html").read_text()
    assert "<h1>HyperFace benchmark: AFW</h1>" in page and '<img src="pr.png" alt="pr">' in page
    assert "<td>hyperface</td><td>0.2500</td><td>n/a</td>" in page
    assert "<strong>bold</strong> and <code>code</code>" in page and "<code>models/hyperface</code>" in page


# ---------------------------------------------------------------- video
def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_one_record_per_frame_and_resume(work, tmp_path, capsys):
    from pipeline.cli import main
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (320, 240))
    for p in sorted(work["photos"].glob("*.jpg"))[:N_FRAMES]:
        writer.write(cv2.resize(cv2.imread(str(p)), (320, 240), interpolation=cv2.INTER_AREA))
    writer.release()
    assert frame_count(clip) == N_FRAMES

    out = tmp_path / "out"
    args = ["run", str(clip), "--model", str(MODEL), "--out", str(out), "--config", str(work["config"])]
    assert main(args) == 0
    records = out / "clip.frames.jsonl"
    lines = records.read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(N_FRAMES))
    assert all(json.loads(line)["width"] == 320 and json.loads(line)["time_s"] == i / 5 for i, line in enumerate(lines))
    assert frame_count(out / "clip.annotated.mp4") == N_FRAMES
    assert json.loads((out / "clip.video.json").read_text())["frames"] == N_FRAMES

    # killed after 2 records, in the middle of the third: the rerun detects the other 4, same bytes
    full = records.read_bytes()
    records.write_bytes(b"".join(line + b"\n" for line in full.splitlines()[:2]) + full.splitlines()[2][:50])
    (out / "clip.annotated.mp4").unlink()
    from pipeline.video import run_video
    from pipeline.detector import HyperFace
    detector = HyperFace(MODEL, config=str(work["config"]))
    counts = run_video(clip, out, detector, progress=False)
    assert counts == {"frames": N_FRAMES, "detected": N_FRAMES - 2, "resumed": 2}
    assert records.read_bytes() == full
    assert frame_count(out / "clip.annotated.mp4") == N_FRAMES

    # --every 2: records of frames 0, 2, 4; every frame in the video; other settings refuse to resume
    assert main(args[:5] + [str(tmp_path / "every2")] + args[6:] + ["--every", "2"]) == 0
    lines = (tmp_path / "every2" / "clip.frames.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 2]
    assert [json.loads(line) for line in lines] == [json.loads(line) for line in full.decode().splitlines()[::2]]
    assert frame_count(tmp_path / "every2" / "clip.annotated.mp4") == N_FRAMES
    capsys.readouterr()
    assert main(args[:5] + [str(tmp_path / "every2")] + args[6:] + ["--every", "3"]) == 2
    assert "other settings (every: 2 -> 3)" in capsys.readouterr().err
