"""`python -m training chain ...` (the whole Section 4 chain) or `python -m training stage ...`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.chain import ChainSpec, run_chain
from training.stage import StageSpec, TrainingError, run_stage
from prototxt.net_surgery import SurgeryError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    chain = sub.add_parser("chain", help="data_prep mix -> R-CNN Face -> surgery -> HyperFace -> export")
    chain.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    chain.add_argument("--mix", default="aflw_crops=4000,wider=600,helen=870,utkface=1500")
    chain.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    chain.add_argument("--lmdb", type=Path, default=None, help="existing LMDB folder (skips data_prep)")
    chain.add_argument("--rcnn-iters", type=int, default=2000)
    chain.add_argument("--hyperface-iters", type=int, default=4000)
    chain.add_argument("--rcnn-lr", type=float, default=None)
    chain.add_argument("--hyperface-lr", type=float, default=None)
    chain.add_argument("--batch", type=int, default=32)
    chain.add_argument("--snapshot-every", type=int, default=200)
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

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "chain":
            run_chain(ChainSpec(out_dir=args.out, mix=args.mix, data_root=args.data_root,
                                rcnn_iters=args.rcnn_iters, hyperface_iters=args.hyperface_iters,
                                batch_size=args.batch, rcnn_lr=args.rcnn_lr, hyperface_lr=args.hyperface_lr,
                                snapshot_every=args.snapshot_every, alexnet_weights=args.alexnet,
                                export_dir=args.export, lmdb_dir=args.lmdb, workers=args.workers))
        else:
            run_stage(StageSpec(args.model, args.lmdb, args.out, args.iters, args.batch, args.lr,
                                args.snapshot_every, args.init,
                                tuple(args.init_layers) if args.init_layers else None))
    except (TrainingError, SurgeryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
