"""`python -m training chain|stage|piece|mine|svm ...` (Section 4; `--help` of each)."""
from __future__ import annotations

import argparse
import dataclasses
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
    stage.add_argument("--batchnorm", action="store_true",
                       help="BatchNorm + Scale after every base convolution (folded at export)")
    stage.add_argument("--lr-policy", default=None, help="override the solver's lr_policy (e.g. poly)")
    stage.add_argument("--power", type=float, default=None, help="power of the poly lr_policy")
    stage.add_argument("--seed", type=int, default=0,
                       help="Caffe's random seed (augmentation draws); give a fine-tuning piece its own, "
                            "or it replays the random crops of the piece it starts from")

    export_ssd = sub.add_parser("export-ssd", help="SSD stage folder -> Fast-HyperFace proposal model folder")
    export_ssd.add_argument("--stage", type=Path, required=True, help="run folder of `stage fast_hyperface_ssd`")
    export_ssd.add_argument("--lmdb", type=Path, required=True, help="its LMDB folder (for the sources)")
    export_ssd.add_argument("--out", type=Path, required=True, help="model folder to write")
    export_ssd.add_argument("--previous", type=Path, default=None,
                            help="the proposal model folder the stage started from (--init): its record is kept "
                                 "in the new one's as earlier_pieces")
    export_ssd.add_argument("--bn-batches", type=int, default=50,
                            help="training batches over which BatchNorm statistics are recomputed before folding")

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

    svm = sub.add_parser("svm", help="linear SVM on fc_detection (Section 5.1), folded into detection_score")
    svm.add_argument("--model", type=Path, required=True, help="model directory whose features are used")
    svm.add_argument("--work", type=Path, required=True, help="features + fit summary (resumable)")
    svm.add_argument("--export", type=Path, default=None, help="model directory with the SVM folded in")
    svm.add_argument("--photos-per-set", type=int, default=None,
                     help="seeded sample of WIDER train-fit and face_free (0: all; default: training.svm_photos_per_set)")
    svm.add_argument("--heldout-photos", type=int, default=None, help="default: training.svm_heldout_photos")
    svm.add_argument("--negatives-per-photo", type=int, default=None, help="default: training.svm_negatives_per_photo")
    svm.add_argument("--proposals", choices=("fast", "ssd", "fast+ssd"), default=None,
                     help="regions the SVM learns from and is compared on (default: training.svm_proposals)")
    svm.add_argument("--data-root", type=Path, default=SHARED_DATA)
    svm.add_argument("--config", type=Path, default=None)

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
        elif args.command == "export-ssd":
            from training.ssd_export import export_ssd
            print(f"Fast-HyperFace proposal model: {export_ssd(args.stage, args.lmdb, args.out, args.bn_batches, args.previous)}")
        elif args.command == "svm":
            from core.config import load_config
            from training.detection_svm import run as run_svm, spec_from_config
            cfg = load_config(args.config)
            spec = spec_from_config(cfg, args.model, args.work, args.data_root, args.export,
                                    heldout_photos=args.heldout_photos, negatives_per_photo=args.negatives_per_photo,
                                    proposals=args.proposals)
            if args.photos_per_set is not None:
                spec = dataclasses.replace(spec, photos_per_set=args.photos_per_set or None)
            record = run_svm(spec, cfg)
            h = record["heldout_regions"]
            print(f"held-out proposals of {h['photos']} photos ({h['faces']} faces, {h['background']} background): "
                  f"region AP softmax {h['ap_softmax']:.4f}, linear SVM {h['ap_svm']:.4f} (C={record['C']})"
                  + (f" -> {args.export}" if args.export else ""))
        else:
            run_stage(StageSpec(args.model, args.lmdb, args.out, args.iters, args.batch, args.lr,
                                args.snapshot_every, args.init,
                                tuple(args.init_layers) if args.init_layers else None,
                                lr_policy=args.lr_policy, lr_power=args.power, batchnorm=args.batchnorm,
                                seed=args.seed))
    except HyperFaceError as err:  # TrainingError, SurgeryError, data_prep and model errors: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
