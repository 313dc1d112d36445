"""One piece of a long HyperFace schedule: sampler-fed training from a model folder or snapshot.

A schedule of many hours runs as pieces of at most ~2 h (`make train-hyperface INIT_MODEL=...`):
each piece starts from the weights of a model directory (or resumes its own newest snapshot),
draws every batch with training.sampler, scores the held-out validation set every
TrainingConfig.val_every iterations, and at the end exports a model directory whose model.json
carries the training record of every earlier piece plus this one (written here, never by hand).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

from core.config import REPO_ROOT, HyperFaceConfig
from training.sampler import build_pools, sampling_record, sampler_sets, write_spec
from training.stage import StageSpec, TrainingError, run_stage

log = logging.getLogger(__name__)

DEPLOY = REPO_ROOT / "prototxt" / "hyperface" / "deploy.prototxt"


@dataclass(frozen=True)
class PieceSpec:
    run_dir: Path
    init: Path                     # model directory or caffemodel to start from
    data_root: Path
    iterations: int
    base_lr: float
    config_path: Path | None = None
    mined: Path | None = None      # hard-negative pool (training/mining.py)
    afw_dir: Path | None = None    # afw_sample, added to the validation set
    export_dir: Path | None = None


def _validation_set(spec: PieceSpec, cfg: HyperFaceConfig):
    from training.validation import build_validation_set
    cache = spec.run_dir / "validation_set.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    vs = build_validation_set(spec.data_root, cfg, afw_dir=spec.afw_dir)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(vs, protocol=4))
    tmp.replace(cache)
    return vs


def previous_pieces(init: Path) -> list[dict]:
    """The training record of the model directory a piece starts from ([] for a caffemodel)."""
    meta_path = Path(init) / "model.json"
    if not meta_path.is_file():
        return []
    meta = json.loads(meta_path.read_text()).get("meta", {})
    if "pieces" in meta:
        return list(meta["pieces"])
    # a model trained before pieces existed: keep its record as piece 0
    return [{"piece": 0, "what": "earlier training (see record)", "record": meta}]


def run_piece(spec: PieceSpec, cfg: HyperFaceConfig, progress: bool = True) -> Path:
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    sets = sampler_sets(spec.data_root, cfg)
    sampler_path = write_spec(spec.run_dir / "sampler.json", sets, spec.config_path, spec.mined,
                              cfg.training.batch_size, cfg.training.seed)
    from training.validation import Validator
    validator = Validator(DEPLOY, _validation_set(spec, cfg), cfg, spec.run_dir / "validation.csv")
    stage = StageSpec("hyperface", spec.run_dir, spec.run_dir / "hyperface", spec.iterations,
                      cfg.training.batch_size, spec.base_lr, cfg.training.snapshot_every, spec.init, None,
                      seed=cfg.training.seed, sampler_spec=sampler_path, lr_policy="poly",
                      lr_power=cfg.training.lr_power, validate_every=cfg.training.val_every,
                      frozen_layers=tuple(cfg.training.frozen_layers), clip_gradients=cfg.training.clip_gradients)
    final = run_stage(stage, progress=progress, validator=validator)
    if spec.export_dir is not None:
        export_piece(spec, cfg, final, validator.history, build_pools(sets, cfg, spec.mined).counts())
    return final


def export_piece(spec: PieceSpec, cfg: HyperFaceConfig, caffemodel: Path, history: list[dict], pools: dict) -> Path:
    from core.model_store import copy_proposal_net, export_model
    pieces = previous_pieces(spec.init)
    pieces.append({
        "piece": len(pieces),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "init": str(spec.init),
        "iterations": spec.iterations,
        "batch_size": cfg.training.batch_size,
        "base_lr": spec.base_lr,
        "lr_policy": f"poly power {cfg.training.lr_power} over the piece, momentum/decay from prototxt/hyperface/solver.prototxt",
        "frozen_layers": list(cfg.training.frozen_layers),
        "clip_gradients": cfg.training.clip_gradients,
        "sampling": sampling_record(cfg),
        "pools": pools,
        "mined_pool": str(spec.mined) if spec.mined else None,
        "validation": history,
    })
    meta = {"trained_here": "on the shared sets with training/piece.py (sampler-fed pieces), not the paper's AFLW split",
            "pieces": pieces}
    out = export_model(DEPLOY, caffemodel, spec.export_dir, fp16=True, meta=meta, config=cfg)
    copy_proposal_net(spec.init, out)   # a piece does not train the proposal net: keep the one it started with
    plot_validation(pieces, Path(out) / "validation.png")
    return out


def check_spec(spec: PieceSpec) -> None:
    if not Path(spec.init).exists():
        raise TrainingError(f"{spec.init}: initial model not found")
    if not Path(spec.data_root).is_dir():
        raise TrainingError(f"{spec.data_root}: data folder not found")


def plot_validation(pieces: list[dict], png: Path) -> Path:
    """Held-out validation of every piece of a training record against cumulative iterations:
    region AP, share of selective-search background scored >= 0.5, NME/box, balanced gender accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series: dict[str, list[tuple[int, float]]] = {}
    offset = 0
    for piece in pieces:
        rows = piece.get("validation") or []
        for row in rows:
            for key in ("region_ap", "ss_fpr_at_0.5", "nme_box", "gender_balanced_acc"):
                if key in row:
                    series.setdefault(key, []).append((offset + int(row["iteration"]), float(row[key])))
        offset += int(piece.get("iterations", 0)) if rows else 0
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=key)
    ax.set_xlabel("iteration (pieces with validation, cumulative)")
    ax.set_title("held-out validation per piece (training/validation.py)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
