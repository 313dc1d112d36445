"""Dask's overhead on one machine (issue 15 target: a LocalCluster of 2 workers within 1.15x the wall
time of the local run of the same folder on the same cores). Prints numbers; not a test.

    python benchmarks/dask_overhead.py [--photos 100] [--source DIR] [--side 500] [--config my.yaml]
                                       [--workers 2] [--repeats 1] [--work runs/bench/dask_overhead]

Takes the first --photos real photos (sorted, recursively) of --source (default: the WIDER FACE
train images in ../shared/data), writes copies downscaled to at most --side px (0: as they are),
then times, as the user would run them (wall clock of the whole command: start-up, model loading,
cluster start-up included):
  local:  python -m pipeline run PHOTOS --model M --out A            (one process; onnxruntime on all cores)
  dask:   python -m pipeline run PHOTOS --model M --out B --scheduler local --workers 2
                                                                      (2 worker processes, 1 thread each,
                                                                       each task's onnxruntime on 1 core)
alternating local/dask --repeats times into fresh folders, and checks that the JSON files agree byte
for byte. The ratio dask / local of the wall times is the number the target is about; the CPU
seconds of each command with all its processes (workers, nannies and scheduler included) are
printed too, since on a machine shared with other work the wall time follows that work's load.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
from core.config import DATA_ROOT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = DATA_ROOT / "wider_train" / "WIDER_train" / "images"


def prepare_photos(source: Path, n: int, side: int, dest: Path) -> list[Path]:
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if len(files) < n:
        raise SystemExit(f"{source}: only {len(files)} photos, --photos {n} asked")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        target = dest / f"{i:04d}_{f.stem}.jpg"
        if not target.is_file():
            im = cv2.imread(str(f))
            if side and max(im.shape[:2]) > side:
                s = side / max(im.shape[:2])
                im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(target), im, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(target)
    return out


def timed_run(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the command and every process under it: workers, nannies, scheduler)."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}:" + os.environ.get("PYTHONPATH", ""))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    secs = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline run failed:\n{proc.stderr[-2000:]}")
    print("   ", proc.stdout.strip().splitlines()[-1])
    return secs, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--side", type=int, default=500, help="downscale copies to this longer side (0: keep)")
    ap.add_argument("--model", default=str(REPO / "models" / "hyperface"))
    ap.add_argument("--config", default=None, help="YAML overriding config/hyperface.yaml (both runs)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "dask_overhead")
    args = ap.parse_args(argv)
    photos_dir = args.work / "photos"
    photos = prepare_photos(args.source, args.photos, args.side, photos_dir)
    common = [str(photos_dir), "--model", args.model] + (["--config", args.config] if args.config else [])
    print(f"{len(photos)} photos from {args.source} (longer side <= {args.side or 'original'} px), "
          f"{os.cpu_count()} cores, config {args.config or 'default'}")
    times: dict[str, list[float]] = {"local": [], "dask": []}
    cpu: dict[str, list[float]] = {"local": [], "dask": []}
    for r in range(args.repeats):
        for kind in ("local", "dask"):
            out = args.work / f"{kind}{r}"
            shutil.rmtree(out, ignore_errors=True)
            extra = ["--scheduler", "local", "--workers", str(args.workers)] if kind == "dask" else []
            print(f"run {r + 1}/{args.repeats} {kind}:")
            wall, cpu_s = timed_run(common + ["--out", str(out)] + extra)
            times[kind].append(wall)
            cpu[kind].append(cpu_s)
            print(f"    {wall:.1f} s wall, {cpu_s:.1f} s CPU, load average {os.getloadavg()[0]:.1f}")
        a, b = args.work / f"local{r}", args.work / f"dask{r}"
        names = sorted(p.name for p in a.glob("*.json") if p.name != "index.jsonl")
        same = sum((a / n).read_bytes() == (b / n).read_bytes() for n in names if (b / n).is_file())
        print(f"    JSON identical: {same} of {len(names)}")
    local, dask = min(times["local"]), min(times["dask"])
    print(f"local run     {local:8.1f} s  ({local / len(photos):.2f} s/photo)")
    print(f"LocalCluster  {dask:8.1f} s  ({args.workers} workers)")
    print(f"ratio dask/local = {dask / local:.3f}  (target <= 1.15)")
    print(f"CPU seconds: local {min(cpu['local']):.1f}, dask {min(cpu['dask']):.1f}, "
          f"ratio {min(cpu['dask']) / min(cpu['local']):.3f} (the overhead itself, less sensitive to other load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
