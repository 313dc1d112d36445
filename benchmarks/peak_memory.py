"""Peak memory of a folder run on a huge photo (issue 12 target: <= 2 GB for 20000 x 20000).

    python benchmarks/peak_memory.py [--side 20000] [--format jpg|png] [--model models/hyperface]

Makes a side x side photo (an afw_sample photo resized up) in a temporary folder, in a child
process of its own, then runs `python -m pipeline run FOLDER --model MODEL --out OUT` as another
child and prints that child's peak resident memory (os.wait4's ru_maxrss) and wall time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "afw_sample" / "1051618982.jpg"

MAKE = """
import sys, cv2, numpy as np
side, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
img = cv2.imread(src)
big = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
assert cv2.imwrite(dst, big)
"""


def peak_of(cmd: list[str], env: dict) -> tuple[int, float, float]:
    """(exit status, peak RSS in MB, wall seconds) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=20000)
    ap.add_argument("--format", default="jpg", choices=("jpg", "png"))
    ap.add_argument("--model", default=str(REPO / "models" / "hyperface"))
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        photo = photos / f"huge.{args.format}"
        rc, mb, secs = peak_of([sys.executable, "-c", MAKE, str(args.side), str(PHOTO), str(photo)], env)
        if rc:
            print(f"could not make the {args.side} x {args.side} photo (exit {rc})")
            return 1
        print(f"made {photo.name}: {args.side} x {args.side}, {photo.stat().st_size / 1e6:.1f} MB on disk "
              f"({secs:.1f} s, {mb:.0f} MB peak to make it)")
        rc, mb, secs = peak_of([sys.executable, "-m", "pipeline", "run", str(photos), "--model", args.model,
                                "--out", str(Path(tmp) / "out")], env)
        log = Path(tmp) / "out" / "run_log.txt"
        if log.is_file():
            print("run_log.txt: " + " | ".join(log.read_text().strip().splitlines()[-3:]))
        print(f"folder run on a {args.side} x {args.side} {args.format}: exit {rc}, peak memory {mb:.0f} MB "
              f"({mb / 1024:.2f} GB; target <= 2 GB), {secs:.1f} s")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
