"""The training chain of Section 4, as `make train-hyperface` runs it:

  1. data_prep: the training mix -> one LMDB pair (resumable; skipped when complete)
  2. R-CNN Face: from a user's AlexNet caffemodel by net surgery when given, else from scratch
  3. HyperFace: conv1..conv5 copied from R-CNN Face by net surgery
  4. export: the HyperFace deploy net + weights as a model directory (fp16) for the pipeline

Every step is resumable: rerunning the same command continues where a kill left it.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.config import REPO_ROOT
from prototxt.net_surgery import transfer
from training.stage import StageSpec, TrainingError, run_stage

log = logging.getLogger(__name__)

ALEXNET_CONV_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
ALEXNET_LAYERS = ALEXNET_CONV_LAYERS + ["fc6", "fc7"]


@dataclass(frozen=True)
class ChainSpec:
    out_dir: Path                     # run folder: lmdb/, rcnn_face/, hyperface/
    mix: str                          # data_prep --mix value, e.g. "aflw_crops=4000,wider=600"
    data_root: Path                   # folder holding the datasets named in `mix`
    rcnn_iters: int
    hyperface_iters: int
    batch_size: int = 32
    rcnn_lr: float | None = None
    hyperface_lr: float | None = None
    snapshot_every: int = 200
    alexnet_weights: Path | None = None   # ImageNet AlexNet caffemodel, when the user has one
    export_dir: Path | None = None        # model directory to write at the end
    lmdb_dir: Path | None = None          # use existing LMDBs instead of building the mix
    workers: int = 2
    config: Path | None = None            # config YAML for data_prep (None: config/hyperface.yaml)


def build_lmdb(spec: ChainSpec) -> Path:
    """Run data_prep's mix into out_dir/lmdb unless spec.lmdb_dir is given; return the LMDB folder."""
    if spec.lmdb_dir is not None:
        return spec.lmdb_dir
    lmdb_dir = spec.out_dir / "lmdb"
    cmd = [sys.executable, "-m", "data_prep", "mix", "--out", str(lmdb_dir), "--data-root", str(spec.data_root),
           "--mix", spec.mix, "--workers", str(spec.workers)] + (["--config", str(spec.config)] if spec.config else [])
    log.info("data_prep: %s", " ".join(cmd))
    if subprocess.call(cmd) != 0:
        raise TrainingError(f"{lmdb_dir}: data_prep mix failed (see its message above)")
    return lmdb_dir


def _net(model: str, kind: str) -> Path:
    return REPO_ROOT / "prototxt" / model / f"{kind}.prototxt"


def run_chain(spec: ChainSpec) -> Path:
    """Run (or resume) the whole chain; return the HyperFace caffemodel."""
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    lmdb_dir = build_lmdb(spec)

    rcnn_init = None
    if spec.alexnet_weights is not None:
        rcnn_init = spec.out_dir / "rcnn_face_init.caffemodel"
        if not rcnn_init.exists():
            # The user's AlexNet deploy must name its layers conv1..fc7 as BVLC's does.
            transfer(_net("rcnn_face", "deploy"), spec.alexnet_weights, _net("rcnn_face", "deploy"), rcnn_init,
                     layers=ALEXNET_LAYERS)
    rcnn = run_stage(StageSpec("rcnn_face", lmdb_dir, spec.out_dir / "rcnn_face", spec.rcnn_iters,
                               spec.batch_size, spec.rcnn_lr, spec.snapshot_every, rcnn_init,
                               init_layers=tuple(ALEXNET_LAYERS)))

    hyperface_init = spec.out_dir / "hyperface_init.caffemodel"
    if not hyperface_init.exists():
        # Section 4: HyperFace starts from R-CNN Face's convolutions; fusion and task layers from fillers.
        copied = transfer(_net("rcnn_face", "deploy"), rcnn, _net("hyperface", "deploy"), hyperface_init,
                          layers=ALEXNET_CONV_LAYERS)
        (spec.out_dir / "hyperface_init.json").write_text(json.dumps({"copied_layers": copied}, indent=2))
    hyperface = run_stage(StageSpec("hyperface", lmdb_dir, spec.out_dir / "hyperface", spec.hyperface_iters,
                                    spec.batch_size, spec.hyperface_lr, spec.snapshot_every, hyperface_init,
                                    init_layers=tuple(ALEXNET_CONV_LAYERS)))

    if spec.export_dir is not None:
        from core.model_store import export_model
        manifest = lmdb_dir / "manifest.json"
        meta = {
            "trained_here": "on the sets below with this project's chain, not the paper's AFLW split and schedule",
            "mix": spec.mix,
            "rcnn_face_iterations": spec.rcnn_iters,
            "hyperface_iterations": spec.hyperface_iters,
            "batch_size": spec.batch_size,
            "init": "AlexNet " + str(spec.alexnet_weights) if spec.alexnet_weights else "from scratch (no ImageNet weights)",
            "lmdb_manifest": json.loads(manifest.read_text()) if manifest.exists() else None,
        }
        export_model(_net("hyperface", "deploy"), hyperface, spec.export_dir, fp16=True, meta=meta)
    return hyperface
