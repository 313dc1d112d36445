"""The Fast-HyperFace proposal net's stage folder -> a model folder (`<model>/proposals/`).

BatchNorm pairs of the training net (if the stage ran with --batchnorm) are folded into the
convolutions, so the exported deploy net is prototxt/fast_hyperface_ssd/deploy.prototxt as written.
The record (`model.json`'s meta) is written here from the stage's own files: the solver, the loss
CSV and the LMDB manifest.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from core.caffe_proto import caffe_pb2
from core.config import REPO_ROOT
from core.model_store import export_model, read_caffemodel, write_caffemodel
from prototxt.netspec_utils import read_net, read_solver
from training.batchnorm import BN_SUFFIX, fold_batchnorm, recompute_statistics
from training.loss_log import read_log
from training.stage import STAGE_RECORD, TrainingError, latest_solverstate

MODEL = "fast_hyperface_ssd"
DEPLOY = REPO_ROOT / "prototxt" / MODEL / "deploy.prototxt"


def final_weights(stage_dir: Path) -> tuple[Path, int]:
    """The stage's final caffemodel, or its newest snapshot (an unfinished piece), with its iteration."""
    stage_dir = Path(stage_dir)
    snap = latest_solverstate(stage_dir / "snapshots")
    final = stage_dir / f"{MODEL}_final.caffemodel"
    if final.exists() and (snap is None or final.stat().st_mtime >= snap[1].stat().st_mtime):
        iters, _ = read_log(stage_dir / "losses.csv")
        return final, int(iters[-1]) if len(iters) else 0
    if snap is None:
        raise TrainingError(f"{stage_dir}: no final caffemodel and no snapshot to export")
    return snap[1].with_suffix(".caffemodel"), snap[0]


def _train_batch_size(train_val: Path) -> int | None:
    """The batch the stage wrote into its train net (the TRAIN-phase data layer)."""
    train = caffe_pb2().TRAIN
    for layer in read_net(train_val).layer:
        if layer.type == "AnnotatedData" and any(inc.phase == train for inc in layer.include):
            return int(layer.data_param.batch_size)
    return None


def earlier_pieces(previous: str | Path) -> list[dict]:
    """The record of a proposal model folder as a list of pieces, oldest first: its own earlier pieces,
    then itself (its meta without them)."""
    path = Path(previous) / "model.json"
    if not path.is_file():
        raise TrainingError(f"{path}: not found (--previous takes the proposal model folder the stage started from)")
    meta = dict(json.loads(path.read_text()).get("meta") or {})
    return [*meta.pop("earlier_pieces", []), meta]


def _inherited_batchnorm(history: list[dict] | None) -> str:
    """A piece without BatchNorm layers that starts from a folded net fine-tunes that net: say so,
    with the earlier piece's own statement, so the record does not read as a net trained without it."""
    folded = [m["batchnorm"] for m in (history or []) if str(m.get("batchnorm", "")).startswith("BatchNorm")]
    if not folded:
        return "none"
    return f"none in this piece: it fine-tunes the folded net of an earlier piece ({folded[-1]})"


def export_ssd(stage_dir: str | Path, lmdb_dir: str | Path, out_dir: str | Path, bn_batches: int = 50,
               previous: str | Path | None = None) -> Path:
    """bn_batches: training batches over which the BatchNorm statistics are recomputed at the final
    weights before folding (training/batchnorm.recompute_statistics; Caffe's moving average lags).
    previous: the proposal model folder whose net the stage started from (--init); its record goes
    into this one's as `earlier_pieces`, so the shipped record holds the whole schedule."""
    stage_dir, out_dir = Path(stage_dir), Path(out_dir)
    history = earlier_pieces(previous) if previous is not None else None
    weights_path, iteration = final_weights(stage_dir)
    solver = read_solver(stage_dir / "solver.prototxt")
    iters, losses = read_log(stage_dir / "losses.csv")
    loss = losses["mbox_loss"][iters <= iteration]
    batchnorm = any(name.endswith(BN_SUFFIX) for name in read_caffemodel(weights_path))
    manifest = json.loads((Path(lmdb_dir) / "manifest.json").read_text())
    meta = {
        "role": "Fast-HyperFace proposal net (Section 5.6)",
        "trained_on": manifest.get("sources"),
        "images": manifest.get("num_images"),
        "faces": manifest.get("num_faces"),
        "iterations": iteration,
        "batch_size": _train_batch_size(stage_dir / "train_val.prototxt"),
        "base_lr": solver.base_lr,
        "lr_policy": solver.lr_policy,
        "batchnorm": (f"BatchNorm + Scale after every base convolution, statistics recomputed over {bn_batches} "
                      "training batches at the final weights, folded at export") if batchnorm
                     else _inherited_batchnorm(history),
        "mbox_loss_first_100": round(float(np.mean(loss[:100])), 4) if len(loss) else None,
        "mbox_loss_last_100": round(float(np.mean(loss[-100:])), 4) if len(loss) else None,
    }
    record = stage_dir / STAGE_RECORD
    if record.is_file():  # the stage's runs: random or initial weights (which layers), resumes
        meta["stage_runs"] = json.loads(record.read_text())["runs"]
    if history is not None:
        meta["earlier_pieces"] = history
    with tempfile.TemporaryDirectory() as tmp:
        deploy_weights = Path(tmp) / "deploy.caffemodel"
        if batchnorm:
            precise = recompute_statistics(stage_dir / "train_val.prototxt", weights_path, bn_batches)
            write_caffemodel(DEPLOY, fold_batchnorm(precise), deploy_weights)
        else:
            shutil.copyfile(weights_path, deploy_weights)
        export_model(DEPLOY, deploy_weights, out_dir, fp16=True, meta=meta)
    if (stage_dir / "losses.png").exists():
        shutil.copyfile(stage_dir / "losses.png", out_dir / "training_losses.png")
    return out_dir
