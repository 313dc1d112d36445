"""One training stage: a net of prototxt/ trained by pycaffe's SGD solver from a pair of LMDBs.

The run folder holds everything the stage needs to resume after a kill: the concrete train_val and
solver (sources rewritten), snapshots (`snapshots/<model>_iter_N.{caffemodel,solverstate}`), the
loss CSV and its PNG. Rerunning the same command restores the newest solverstate and goes on.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.config import REPO_ROOT
from core.errors import HyperFaceError
from prototxt.netspec_utils import read_net, solver_for, with_data_sources, with_python_data
from training.loss_log import LossLog, plot_log, truncate_log

log = logging.getLogger(__name__)

_SNAPSHOT_RE = re.compile(r"_iter_(\d+)\.solverstate$")


class TrainingError(HyperFaceError, RuntimeError):
    """A stage that cannot start or go on; the message names the file at fault."""


@dataclass(frozen=True)
class StageSpec:
    model: str                 # folder under prototxt/, e.g. "rcnn_face" or "hyperface"
    lmdb_dir: Path             # holds images_lmdb/ and labels_lmdb/ (data_prep output)
    run_dir: Path              # where this stage writes
    max_iter: int
    batch_size: int = 32
    base_lr: float | None = None
    snapshot_every: int = 200
    init_weights: Path | None = None   # caffemodel to start from (net surgery output)
    init_layers: tuple[str, ...] | None = None  # layers taken from init_weights (None: all in the file)
    seed: int = 0
    sampler_spec: Path | None = None   # feed the train net from training.sampler instead of the LMDBs
    lr_policy: str | None = None       # solver lr_policy override (e.g. "poly" for a fine-tuning piece)
    lr_power: float | None = None
    validate_every: int = 0            # call the stage's validator every this many iterations (0: never)
    batchnorm: bool = False            # BatchNorm + Scale after every base convolution (training/batchnorm.py)
    frozen_layers: tuple[str, ...] = ()  # layers whose params get lr_mult 0 (decay too)
    clip_gradients: float | None = None  # solver clip_gradients: cap on the L2 norm of all gradients


def latest_solverstate(snapshot_dir: Path) -> tuple[int, Path] | None:
    """(iteration, path) of the newest solverstate in `snapshot_dir`, or None."""
    found = []
    for path in snapshot_dir.glob("*.solverstate"):
        m = _SNAPSHOT_RE.search(path.name)
        if m and path.with_suffix(".caffemodel").exists():
            found.append((int(m.group(1)), path))
    return max(found) if found else None


def prune_snapshots(snapshot_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` snapshot pairs (each HyperFace pair is ~300 MB)."""
    found = sorted((int(m.group(1)), p) for p in snapshot_dir.glob("*.solverstate")
                   if (m := _SNAPSHOT_RE.search(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)
        path.with_suffix(".caffemodel").unlink(missing_ok=True)


def prepare_run(spec: StageSpec) -> Path:
    """Write the concrete train_val + solver into the run folder; return the solver path."""
    net_dir = REPO_ROOT / "prototxt" / spec.model
    if not (net_dir / "train_val.prototxt").exists():
        raise TrainingError(f"{net_dir}: no train_val.prototxt (unknown model {spec.model!r})")
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    (spec.run_dir / "snapshots").mkdir(exist_ok=True)
    net_path = spec.run_dir / "train_val.prototxt"
    if spec.sampler_spec is not None:
        if not Path(spec.sampler_spec).is_file():
            raise TrainingError(f"{spec.sampler_spec}: sampler spec not found")
        text = with_python_data(net_dir / "train_val.prototxt", "training.sampler_layer",
                                "RegionSamplerLayer", str(Path(spec.sampler_spec).resolve()))
        net_path.write_text(with_frozen_layers(text, spec.frozen_layers))
        return _write_solver(spec, net_dir, net_path)
    images, labels = spec.lmdb_dir / "images_lmdb", spec.lmdb_dir / "labels_lmdb"
    if any(layer.type == "AnnotatedData" for layer in read_net(net_dir / "train_val.prototxt").layer):
        # SSD (fast_hyperface_ssd): image and boxes in one AnnotatedDatum LMDB (`python -m data_prep ssd`)
        images, labels = spec.lmdb_dir / "ssd_lmdb", None
    for path in (p for p in (images, labels) if p is not None):
        if not (path / "data.mdb").exists():
            raise TrainingError(f"{path}: LMDB not found (build it with `python -m data_prep`)")
    text = with_data_sources(net_dir / "train_val.prototxt", train_images=images,
                             train_labels=labels, batch_size=spec.batch_size)
    if spec.batchnorm:
        text = _with_batchnorm_text(text)
    net_path.write_text(with_frozen_layers(text, spec.frozen_layers))
    return _write_solver(spec, net_dir, net_path)


def with_frozen_layers(text: str, layers: tuple[str, ...]) -> str:
    """Net text with lr_mult and decay_mult 0 on every param of the named layers (one unknown name is an
    error, so a typo never trains a layer meant to stay fixed)."""
    if not layers:
        return text
    from google.protobuf import text_format

    from core.caffe_proto import caffe_pb2
    net = text_format.Parse(text, caffe_pb2().NetParameter())
    found = set()
    for layer in net.layer:
        if layer.name in layers:
            found.add(layer.name)
            if not layer.param:   # one spec per blob: weights, and the bias unless bias_term is off
                conv = layer.type == "Convolution"
                has_bias = (layer.convolution_param if conv else layer.inner_product_param).bias_term
                for _ in range(1 + int(has_bias)):
                    layer.param.add()
            for param in layer.param:
                param.lr_mult, param.decay_mult = 0.0, 0.0
    missing = sorted(set(layers) - found)
    if missing:
        raise TrainingError(f"frozen layers not in the net: {', '.join(missing)}")
    return text_format.MessageToString(net)


def _with_batchnorm_text(text: str) -> str:
    from google.protobuf import text_format

    from core.caffe_proto import caffe_pb2
    from training.batchnorm import with_batchnorm
    net = text_format.Parse(text, caffe_pb2().NetParameter())
    return text_format.MessageToString(with_batchnorm(net))


def _write_solver(spec: StageSpec, net_dir: Path, net_path: Path) -> Path:
    solver_path = spec.run_dir / "solver.prototxt"
    solver_path.write_text(solver_for(
        net_dir / "solver.prototxt", net_path, spec.run_dir / "snapshots" / spec.model,
        max_iter=spec.max_iter, base_lr=spec.base_lr, test_iter=0, display=0, snapshot=0,
        random_seed=spec.seed, lr_policy=spec.lr_policy, power=spec.lr_power,
        clip_gradients=spec.clip_gradients))
    return solver_path


def resolve_init_weights(path: Path) -> Path:
    """A caffemodel path, or a model directory (models/hyperface: its fp16 weights expanded)."""
    path = Path(path)
    if path.is_dir():
        from core.model_store import load_model
        return load_model(path).caffemodel
    if not path.exists():
        raise TrainingError(f"{path}: initial weights not found")
    return path


def sampler_layer(net):
    """The RegionSamplerLayer object of a sampler-fed train net, or None."""
    for name, layer in zip(net._layer_names, net.layers):
        if name == "region_sampler":
            return layer
    return None


def copy_initial_weights(net, caffemodel: Path, layers: tuple[str, ...] | None) -> list[str]:
    """Copy `layers` (all layers of the file when None) from `caffemodel` into `net`.

    Only the named layers are taken: a surgery output built from a deploy net holds zeros for the
    layers it did not copy (deploy prototxts carry no fillers), and those must keep the train net's
    fillers instead.
    """
    from core.model_store import read_caffemodel

    weights = read_caffemodel(caffemodel)
    names = list(weights) if layers is None else list(layers)
    for name in names:
        if name not in weights or name not in net.params:
            raise TrainingError(f"{caffemodel}: layer {name!r} missing in the weights or in the train net")
        blobs = weights[name]
        if [b.shape for b in blobs] != [tuple(p.data.shape) for p in net.params[name]]:
            raise TrainingError(f"{caffemodel}: layer {name!r} shapes {[b.shape for b in blobs]} do not fit the "
                                f"train net {[p.data.shape for p in net.params[name]]}")
        for param, blob in zip(net.params[name], blobs):
            param.data[...] = blob
    log.info("initialised %s from %s", ", ".join(names), caffemodel)
    return names


def check_finite_losses(values: dict[str, float], iteration: int, run_dir: Path) -> None:
    """Raise TrainingError when a loss is NaN/inf, before a snapshot can overwrite the last good
    ones with diverged weights (the caller snapshots only after this check)."""
    bad = sorted(name for name, value in values.items() if not math.isfinite(value))
    if bad:
        raise TrainingError(f"{run_dir}: loss diverged at iteration {iteration} ({', '.join(bad)} not finite); "
                            f"lower the learning rate and rerun to resume from the last snapshot")


def _loss_blobs(net) -> list[str]:
    """Loss outputs of the train net: `loss*` (HyperFace nets) and `*_loss` (SSD's `mbox_loss`)."""
    return [name for name in net.outputs if name.startswith("loss") or name.endswith("_loss")]


STAGE_RECORD = "stage.json"


def record_stage_run(spec: StageSpec, start: int, resumed_from: Path | None) -> None:
    """Append this run's settings to <run_dir>/stage.json (read by export-ssd into model.json): what a
    piece started from (a snapshot, initial weights and which layers of them, or random weights)."""
    path = spec.run_dir / STAGE_RECORD
    record = json.loads(path.read_text()) if path.is_file() else {"model": spec.model, "runs": []}
    record["runs"].append({
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "from_iteration": int(start),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "init_weights": None if resumed_from or spec.init_weights is None else str(spec.init_weights),
        "init_layers": None if resumed_from or spec.init_layers is None else list(spec.init_layers),
        "max_iter": spec.max_iter, "batch_size": spec.batch_size, "base_lr": spec.base_lr,
        "lr_policy": spec.lr_policy, "lr_power": spec.lr_power, "batchnorm": spec.batchnorm, "seed": spec.seed,
        "frozen_layers": list(spec.frozen_layers), "clip_gradients": spec.clip_gradients,
        "lmdb_dir": str(spec.lmdb_dir)})
    path.write_text(json.dumps(record, indent=1) + "\n")


def run_stage(spec: StageSpec, progress: bool = True, validator=None) -> Path:
    """Train (or resume) the stage up to spec.max_iter; return the final caffemodel path."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    from tqdm import tqdm

    final = spec.run_dir / f"{spec.model}_final.caffemodel"
    solver_path = prepare_run(spec)
    caffe.set_mode_cpu()
    caffe.set_random_seed(spec.seed)
    solver = caffe.get_solver(str(solver_path))

    resumed = latest_solverstate(spec.run_dir / "snapshots")
    if resumed is not None:
        log.info("%s: resuming from %s", spec.model, resumed[1])
        solver.restore(str(resumed[1]))
    elif spec.init_weights is not None:
        copy_initial_weights(solver.net, resolve_init_weights(spec.init_weights), spec.init_layers)
    start = solver.iter
    record_stage_run(spec, start, resumed[1] if resumed is not None else None)
    feeder = sampler_layer(solver.net)
    if feeder is not None:
        feeder.iteration = start  # batch k is a function of (seed, k): a resume draws what a full run would

    csv_path = spec.run_dir / "losses.csv"
    truncate_log(csv_path, start)
    names = _loss_blobs(solver.net)
    loss_log = LossLog(csv_path, names)

    stop = {"now": False}

    def _request_stop(signum, _frame):
        log.warning("signal %d: snapshotting at the next iteration, then stopping", signum)
        stop["now"] = True

    old = signal.signal(signal.SIGTERM, _request_stop)
    bar = tqdm(total=spec.max_iter, initial=start, desc=spec.model, disable=not progress, unit="it")
    try:
        while solver.iter < spec.max_iter and not stop["now"]:
            solver.step(1)
            values = {n: float(solver.net.blobs[n].data) for n in names}
            check_finite_losses(values, solver.iter, spec.run_dir)
            loss_log.append(solver.iter, values)
            bar.update(1)
            bar.set_postfix({n.replace("loss_", ""): f"{v:.3g}" for n, v in values.items()}, refresh=False)
            if validator is not None and spec.validate_every and (
                    solver.iter % spec.validate_every == 0 or solver.iter == spec.max_iter):
                validator(solver.net, solver.iter)
            if solver.iter % spec.snapshot_every == 0 or solver.iter == spec.max_iter or stop["now"]:
                loss_log.flush()
                solver.snapshot()
                prune_snapshots(spec.run_dir / "snapshots", keep=2)
                plot_log(csv_path, spec.run_dir / "losses.png", title=spec.model)
    finally:
        bar.close()
        loss_log.close()
        signal.signal(signal.SIGTERM, old)
    if stop["now"]:
        raise TrainingError(f"{spec.run_dir}: stopped by signal at iteration {solver.iter}; rerun to resume")
    solver.net.save(str(final))
    plot_log(csv_path, spec.run_dir / "losses.png", title=spec.model)
    log.info("%s: %d iterations done (%d this run); weights %s", spec.model, solver.iter,
             solver.iter - start, final)
    return final
