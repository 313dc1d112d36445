"""The HTML gallery of a 1,000-photo run (issue 15 targets: opens in under 2 s in headless Chromium,
weighs less than the overlays it shows). Prints numbers; not a test.

    python benchmarks/gallery_speed.py [--source-run DIR] [--photos 1000] [--work runs/bench/gallery_speed]

The 1,000-photo run is made of real results: the JSON + overlay PNG pairs of --source-run (default:
a run of the shipped model over the first 20 WIDER FACE train photos, made here with up to 100
proposals a photo, which is enough for a gallery) copied under 1,000 names. Then it times
`python -m pipeline gallery` (first build, and the rebuild that finds every thumbnail fresh), weighs
index.html + gallery/ against the overlays, and opens index.html in headless Chromium five times:
the wall time of the whole browser (start-up included) and, from the page itself, the time from
navigation start to the load event (data.js parsed, first page rendered, its thumbnails loaded).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.browser import chromium_path, dump_dom, page_url  # noqa: E402
from pipeline.gallery import gallery_weight  # noqa: E402
from core.config import DATA_ROOT  # noqa: E402

WIDER = DATA_ROOT / "wider_train" / "WIDER_train" / "images"


def _env():
    return dict(os.environ, PYTHONPATH=f"{REPO}:" + os.environ.get("PYTHONPATH", ""))


def make_source_run(work: Path, n: int) -> Path:
    photos = work / "source_photos"
    photos.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in WIDER.rglob("*.jpg"))[:n]:
        shutil.copy(f, photos / f.name)
    cfg = work / "source.yaml"
    cfg.write_text("selective_search: {max_proposals: 100}\n")
    out = work / "source_run"
    subprocess.run([sys.executable, "-m", "pipeline", "run", str(photos), "--model", str(REPO / "models" / "hyperface"),
                    "--out", str(out), "--config", str(cfg)], cwd=REPO, env=_env(), check=True)
    return out


def replicate(source: Path, n: int, dest: Path) -> None:
    pairs = sorted((p, p.with_suffix(".png")) for p in source.glob("*.json")
                   if p.name != "index.jsonl" and p.with_suffix(".png").is_file())
    if not pairs:
        raise SystemExit(f"{source}: no JSON + PNG results")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for i in range(n):
        js, png = pairs[i % len(pairs)]
        stem = f"{i:05d}_{js.stem}"
        shutil.copy(js, dest / f"{stem}.json")
        shutil.copy(png, dest / f"{stem}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-run", type=Path, default=None)
    ap.add_argument("--source-photos", type=int, default=20)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--opens", type=int, default=5)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "gallery_speed")
    args = ap.parse_args(argv)
    if chromium_path() is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    source = args.source_run or make_source_run(args.work, args.source_photos)
    run = args.work / f"run{args.photos}"
    replicate(source, args.photos, run)
    faces = sum(len(json.loads(p.read_text())["faces"]) for p in run.glob("*.json"))
    print(f"{args.photos} results ({faces} faces) from the {len(list(source.glob('*.png')))} real results in {source}")
    for label in ("build", "rebuild"):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline", "gallery", str(run)], cwd=REPO, env=_env(), check=True,
                       capture_output=True)
        print(f"gallery {label:8s} {time.perf_counter() - t0:6.1f} s")
    w = gallery_weight(run)
    data_js = (run / "gallery" / "data.js").stat().st_size
    print(f"weight: gallery {w['gallery_bytes'] / 1e6:.1f} MB (data.js {data_js / 1e6:.2f} MB), "
          f"overlays {w['overlay_bytes'] / 1e6:.1f} MB, ratio {w['gallery_bytes'] / w['overlay_bytes']:.3f}")
    walls, loads = [], []
    for _ in range(args.opens):
        dom, wall = dump_dom(page_url(run / "index.html"))
        body = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body[^>]*>", dom).group(0)))
        walls.append(wall)
        loads.append(float(body.get("load-ms", "nan")) / 1000)
        assert body.get("rendered") == "1" and int(body["photos-shown"]) > 0
    print(f"open in headless Chromium ({args.opens}x, page 1 of {body['pages']}, {body['photos-shown']} photos, "
          f"{body['faces-shown']} faces): load event at {statistics.median(loads):.2f} s (median; max "
          f"{max(loads):.2f}), whole browser incl. start-up {statistics.median(walls):.2f} s (median; max {max(walls):.2f})")
    print(f"render of one page by the script: {body['render-ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
