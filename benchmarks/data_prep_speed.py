"""Speed of data_prep on the HELEN trainset: samples/s and size of the resulting LMDBs.

    python benchmarks/data_prep_speed.py --limit 20 [--workers 2] [--out DIR]
Proposals are computed fresh (a new output folder each run unless --out is given).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import load_config  # noqa: E402
from data_prep.build import build_lmdb  # noqa: E402
from core.config import DATA_ROOT  # noqa: E402
from data_prep.readers import read_300w  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DATA_ROOT / "helen")
    parser.add_argument("--limit", type=int, default=20, help="HELEN trainset images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config()
    records = read_300w(args.root, split="train", limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        manifest = build_lmdb([("helen", r, False) for r in records], out, cfg, workers=args.workers, overwrite=True)
        seconds = time.perf_counter() - start
    n = manifest["num_samples"]
    print(f"data_prep HELEN: {len(records)} images, {n} samples in {seconds:.1f} s = {n / seconds:.1f} samples/s "
          f"({len(records) / seconds:.2f} images/s, {args.workers} workers)")
    print(f"LMDB size: {manifest['lmdb_bytes'] / 2**20:.1f} MiB ({manifest['lmdb_bytes'] / max(n, 1) / 1024:.1f} KiB/sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
