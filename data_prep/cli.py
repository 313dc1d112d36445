"""`python -m data_prep build ...` and `python -m data_prep mix ...` (see --help)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.config import DATA_ROOT, load_config
from core.errors import HyperFaceError
from data_prep.build import TASKS, build_lmdb
from data_prep.errors import DataPrepError
from data_prep.mix import build_mix, parse_mix, parse_set
from data_prep.readers import CROP_DATASETS, read_dataset

DATASETS = ("aflw", "300w", "aflw2000", "aflw_crops", "wider", "utkface")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, type=Path, help="output folder (LMDB pair, manifest.json, cache)")
    common.add_argument("--config", type=Path, default=None, help="HyperFace YAML (default config/hyperface.yaml)")
    common.add_argument("--workers", type=int, default=2, help="processes for proposals and crops")
    common.add_argument("--overwrite", action="store_true", help="discard a previous build in --out")
    common.add_argument("-v", "--verbose", action="store_true")
    build = sub.add_parser("build", parents=[common], help="one dataset -> LMDB pair")
    build.add_argument("--dataset", required=True, choices=DATASETS)
    build.add_argument("--root", required=True, type=Path, help="dataset folder (aflw: aflw.sqlite or its folder)")
    build.add_argument("--split", default="train", help="train or test (where the dataset has splits)")
    build.add_argument("--limit", type=int, default=None, help="first N images only")
    mix = sub.add_parser("mix", parents=[common], help="several datasets -> one training LMDB pair")
    mix.add_argument("--set", dest="sets", action="append", default=[], metavar="DATASET=ROOT[:LIMIT[:SPLIT]]",
                     help="a set (repeatable), e.g. aflw_crops=../shared/data/aflw_crops:4000")
    mix.add_argument("--mix", default="", metavar="NAME=LIMIT,...",
                     help="sets with default roots under --data-root, e.g. aflw_crops=4000,wider=600,helen=870")
    mix.add_argument("--data-root", type=Path, default=DATA_ROOT, help="root of the default set folders")
    ssd = sub.add_parser("ssd", parents=[common], help="whole images + face boxes -> SSD AnnotatedDatum LMDB")
    ssd.add_argument("--set", dest="sets", action="append", default=[], metavar="DATASET=ROOT[:LIMIT[:SPLIT]]",
                     help="a set (repeatable), e.g. wider=../shared/data/wider_train:600")
    ssd.add_argument("--mix", default="", metavar="NAME=LIMIT,...", help="sets with default roots, e.g. wider=1239,helen=870")
    ssd.add_argument("--data-root", type=Path, default=DATA_ROOT, help="root of the default set folders")
    return parser


def check_out_dir(out: Path) -> None:
    """DataPrepError when --out is a file or lies under one (before anything is read or built)."""
    if out.exists() and not out.is_dir():
        raise DataPrepError(out, "--out is an existing file, not a folder")
    for parent in out.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise DataPrepError(out, f"--out cannot be created: {parent} is a file, not a folder")


def _report(manifest: dict) -> None:
    print(f"samples {manifest['num_samples']} from {manifest['num_images']} images, "
          f"LMDBs {manifest['lmdb_bytes'] / 2**20:.1f} MiB, negatives/positive "
          f"{manifest['negatives_per_positive']:.2f}")
    for name, counts in manifest["counts_per_set"].items():
        print(f"  {name}: " + ", ".join(f"{t}={counts[t]}" for t in TASKS))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        check_out_dir(args.out)
        cfg = load_config(args.config)
        if args.command == "build":
            records = read_dataset(args.dataset, args.root, split=args.split, limit=args.limit, config=cfg)
            if not records:
                raise DataPrepError(args.root, f"split {args.split!r} of {args.dataset} has no images"
                                               f"{f' (--limit {args.limit})' if args.limit is not None else ''}: "
                                               "nothing to build")
            entries = [(args.dataset, r, args.dataset in CROP_DATASETS) for r in records]
            sources = {args.dataset: {"dataset": args.dataset, "root": str(args.root), "split": args.split,
                                      "limit": args.limit, "images": len(records)}}
            manifest = build_lmdb(entries, args.out, cfg, sources=sources, workers=args.workers,
                                  overwrite=args.overwrite)
        elif args.command == "ssd":
            from data_prep.ssd_lmdb import build_ssd_mix
            sets = [parse_set(s) for s in args.sets] + parse_mix(args.mix, args.data_root)
            if not sets:
                raise ValueError("ssd: give at least one --set or --mix")
            manifest = build_ssd_mix(sets, args.out, cfg, overwrite=args.overwrite)
            print(f"images {manifest['num_images']}, faces {manifest['num_faces']} "
                  f"({manifest['num_difficult']} difficult), LMDB {manifest['lmdb_bytes'] / 2**20:.1f} MiB")
            return 0
        else:
            sets = [parse_set(s) for s in args.sets] + parse_mix(args.mix, args.data_root)
            if not sets:
                raise ValueError("mix: give at least one --set or --mix")
            manifest = build_mix(sets, args.out, cfg, workers=args.workers, overwrite=args.overwrite)
    except (HyperFaceError, FileNotFoundError, ValueError) as err:  # DataPrepError, ModelError (no caffe_pb2)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a disk that fills up or a folder that cannot be written
        print(f"error: {err.filename or args.out}: {err.strerror or err.__class__.__name__}", file=sys.stderr)
        return 2
    _report(manifest)
    return 0
