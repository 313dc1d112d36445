"""`python -m training chain ...` (the whole Section 4 chain) or `python -m training stage ...`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.config import DATA_ROOT as SHARED_DATA
from core.errors import HyperFaceError
from training.chain import ChainSpec, run_chain
from training.stage import StageSpec, run_stage


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    chain = sub.add_parser("chain", help="data_prep mix -> R-CNN Face -> surgery -> HyperFace -> export")
    chain.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    chain.add_argument("--mix", default=None, help="default: training.scratch_mix of the config")
    chain.add_argument("--data-root", type=Path, default=SHARED_DATA)
    chain.add_argument("--config", type=Path, default=None, help="config YAML passed to data_prep (labels, sampling)")
    chain.add_argument("--lmdb", type=Path, default=None, help="existing LMDB folder (skips data_prep)")
    chain.add_argument("--rcnn-iters", type=int, default=None, help="default: training.scratch_rcnn_iterations")
    chain.add_argument("--hyperface-iters", type=int, default=None, help="default: training.scratch_hyperface_iterations")
    chain.add_argument("--rcnn-lr", type=float, default=None, help="default: training.scratch_rcnn_lr")
    chain.add_argument("--hyperface-lr", type=float, default=None, help="default: training.scratch_hyperface_lr")
    chain.add_argument("--batch", type=int, default=None, help="default: training.batch_size")
    chain.add_argument("--snapshot-every", type=int, default=None, help="default: training.snapshot_every")
    chain.add_argument("--alexnet", type=Path, default=None, help="ImageNet AlexNet caffemodel (optional)")
    chain.add_argument("--export", type=Path, default=None, help="model directory to write at the end")
    chain.add_argument("--workers", type=int, default=2)

    stage = sub.add_parser("stage", help="train one net of prototxt/ from an LMDB pair")
    stage.add_argument("model", help="folder under prototxt/, e.g. rcnn_face")
    stage.add_argument("--lmdb", type=Path, required=True)
    stage.add_argument("--out", type=Path, required=True)
    stage.add_argument("--iters", type=int, required=True)
    stage.add_argument("--lr", type=float, default=None)
    stage.add_argument("--batch", type=int, default=32)
    stage.add_argument("--snapshot-every", type=int, default=200)
    stage.add_argument("--init", type=Path, default=None, help="caffemodel to start from")
    stage.add_argument("--init-layers", nargs="+", default=None,
                       help="layers taken from --init (default: every layer in the file)")

    piece = sub.add_parser("piece", help="one sampler-fed HyperFace piece from a model folder (resumable)")
    piece.add_argument("--out", type=Path, required=True, help="run folder (resumes its newest snapshot)")
    piece.add_argument("--init", type=Path, required=True, help="model directory or caffemodel to start from")
    piece.add_argument("--data-root", type=Path, default=SHARED_DATA)
    piece.add_argument("--iters", type=int, default=None, help="default: training.iterations of the config")
    piece.add_argument("--lr", type=float, default=None, help="default: training.base_lr of the config")
    piece.add_argument("--mined", type=Path, default=None, help="hard-negative pool (python -m training mine)")
    piece.add_argument("--afw", type=Path, default=None, help="afw_sample folder, added to validation")
    piece.add_argument("--config", type=Path, default=None)
    piece.add_argument("--export", type=Path, default=None, help="model directory to write at the end")

    mine = sub.add_parser("mine", help="one round of hard-negative mining with a model folder (resumable)")
    mine.add_argument("--model", type=Path, required=True, help="model directory that scores the proposals")
    mine.add_argument("--pool", type=Path, required=True, help="JSON Lines pool to append to")
    mine.add_argument("--round", type=int, required=True)
    mine.add_argument("--threshold", type=float, default=0.5)
    mine.add_argument("--photos-per-set", type=int, default=None, help="seeded sample of each set's photos")
    mine.add_argument("--proposals-per-photo", type=int, default=200)
    mine.add_argument("--data-root", type=Path, default=SHARED_DATA)
    mine.add_argument("--config", type=Path, default=None)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "chain":
            from core.config import load_config
            tc = load_config(args.config).training
            pick = lambda value, default: default if value is None else value  # noqa: E731
            run_chain(ChainSpec(out_dir=args.out, mix=pick(args.mix, tc.scratch_mix), data_root=args.data_root,
                                rcnn_iters=pick(args.rcnn_iters, tc.scratch_rcnn_iterations),
                                hyperface_iters=pick(args.hyperface_iters, tc.scratch_hyperface_iterations),
                                batch_size=pick(args.batch, tc.batch_size),
                                rcnn_lr=pick(args.rcnn_lr, tc.scratch_rcnn_lr),
                                hyperface_lr=pick(args.hyperface_lr, tc.scratch_hyperface_lr),
                                snapshot_every=pick(args.snapshot_every, tc.snapshot_every), alexnet_weights=args.alexnet,
                                export_dir=args.export, lmdb_dir=args.lmdb, workers=args.workers,
                                config=args.config))
        elif args.command == "piece":
            from core.config import load_config
            from training.piece import PieceSpec, check_spec, run_piece
            cfg = load_config(args.config)
            spec = PieceSpec(run_dir=args.out, init=args.init, data_root=args.data_root,
                             iterations=args.iters or cfg.training.iterations, base_lr=args.lr or cfg.training.base_lr,
                             config_path=args.config, mined=args.mined, afw_dir=args.afw, export_dir=args.export)
            check_spec(spec)
            run_piece(spec, cfg)
        elif args.command == "mine":
            from core.config import load_config
            from training.mining import MiningSpec, mine_round, mining_records, model_scorer
            cfg = load_config(args.config)
            counts = mine_round(mining_records(args.data_root, cfg, args.photos_per_set), model_scorer(args.model, cfg),
                                cfg, MiningSpec(args.pool, args.round, args.threshold, args.proposals_per_photo))
            print(f"mining round {args.round}: {counts['photos']} photos, {counts['regions_scored']} regions scored, "
                  f"{counts['kept']} hard negatives kept -> {args.pool}")
        else:
            run_stage(StageSpec(args.model, args.lmdb, args.out, args.iters, args.batch, args.lr,
                                args.snapshot_every, args.init,
                                tuple(args.init_layers) if args.init_layers else None))
    except HyperFaceError as err:  # TrainingError, SurgeryError, data_prep and model errors: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
