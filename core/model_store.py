"""Model directories, the shipped form of a trained net, and caffemodel I/O (training exports and
reads weights with these, the pipeline loads them; pipeline.model_store re-exports them).

    <model_dir>/deploy.prototxt
    <model_dir>/weights.caffemodel        or  <model_dir>/weights_fp16.npz
    <model_dir>/model.json

`weights_fp16.npz` maps "<layer>#<k>" to the k-th parameter blob of <layer> in float16; load_model
expands it once into a float32 caffemodel under the cache dir (keyed by the npz's SHA-1), so the
shipped model stays small in git. model.json records the net name, label layout version, the input
size and mean from core.config, and the caller's meta (what it was trained on, iterations ...).
Caffemodels are read and written with caffe_pb2.NetParameter (protobuf): no pycaffe needed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import zipfile
import zlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import HyperFaceConfig, load_config
from core.labels import LABEL_LAYOUT_VERSION
from core.net_io import INPUT_BLOB
from core.caffe_proto import cache_dir, caffe_pb2
from core.errors import ModelError
from core.net_shapes import infer_shapes, read_prototxt

log = logging.getLogger(__name__)
MODEL_FORMAT_VERSION = 1
DEPLOY = "deploy.prototxt"
WEIGHTS = "weights.caffemodel"
WEIGHTS_FP16 = "weights_fp16.npz"
META = "model.json"
PROPOSALS = "proposals"   # the Fast-HyperFace proposal net's own model directory inside a model directory


def copy_proposal_net(model_dir: str | Path, out_dir: str | Path) -> bool:
    """Give out_dir the proposal net of model_dir (its `proposals/` folder), replacing any there, so a
    model derived from another (a new piece, a folded SVM) keeps `--proposals ssd` working. False when
    model_dir has none."""
    src, dst = Path(model_dir) / PROPOSALS, Path(out_dir) / PROPOSALS
    if not src.is_dir() or src.resolve() == dst.resolve():
        return False
    tmp = Path(out_dir) / f".{PROPOSALS}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return True


@dataclass
class Model:
    """A loaded model directory: paths a backend opens, plus its metadata."""
    model_dir: Path
    prototxt: Path
    caffemodel: Path
    meta: dict = field(default_factory=dict)
    weights_sha1: str = ""             # SHA-1 of the weight file in model_dir (checked against model.json)

    @property
    def name(self) -> str:
        return self.meta.get("name", self.model_dir.name)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes, mid_write=None) -> None:
    """Write via a temp file `.<name>.<random suffix>.tmp` in the same folder and os.replace (never a
    half-written file). The file gets the permissions of a plain open() (0666 less the umask), not
    mkstemp's 0600. mid_write: called after half of the bytes are written (crash tests)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data[:len(data) // 2])
            if mid_write is not None:
                f.flush()
                mid_write()
            f.write(data[len(data) // 2:])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Parameter blobs of a binary caffemodel, layer name -> list of float32 arrays."""
    path = Path(path)
    net = caffe_pb2().NetParameter()
    try:
        net.ParseFromString(path.read_bytes())
    except FileNotFoundError:
        raise ModelError(path, "caffemodel not found") from None
    except Exception as err:  # protobuf DecodeError
        raise ModelError(path, f"not a valid caffemodel ({err.__class__.__name__})") from None
    out = {}
    for layer in list(net.layer) or list(net.layers):
        blobs = []
        for b in layer.blobs:
            shape = tuple(b.shape.dim) if b.HasField("shape") else tuple(d for d in (b.num, b.channels, b.height, b.width))
            data = np.asarray(b.data if len(b.data) else b.double_data, dtype=np.float32)
            blobs.append(data.reshape(shape))
        if blobs:
            out[layer.name] = blobs
    return out


def caffemodel_bytes(prototxt: str | Path, weights: dict[str, list[np.ndarray]]) -> bytes:
    """A binary caffemodel holding `weights` for the layers of `prototxt` (shapes checked)."""
    pb = caffe_pb2()
    deploy = read_prototxt(prototxt)
    shapes = infer_shapes(prototxt)
    net = pb.NetParameter(name=deploy.name)
    missing = set(shapes.params) - set(weights)
    if missing:
        raise ModelError(prototxt, f"no weights for layer(s) {sorted(missing)}")
    for layer in deploy.layer:
        if layer.name not in weights:
            continue
        expected = shapes.params.get(layer.name)
        got = [tuple(np.shape(b)) for b in weights[layer.name]]
        if expected is not None and [int(np.prod(s)) for s in expected] != [int(np.prod(s)) for s in got]:
            raise ModelError(prototxt, f"layer {layer.name!r}: weights {got} do not fit the net's {expected}")
        lp = net.layer.add(name=layer.name, type=layer.type)
        for k, blob in enumerate(weights[layer.name]):
            shape = expected[k] if expected is not None else np.shape(blob)
            bp = lp.blobs.add()
            bp.shape.dim.extend(int(d) for d in shape)
            bp.data.extend(np.asarray(blob, dtype=np.float32).ravel().tolist())
    return net.SerializeToString()


def write_caffemodel(prototxt: str | Path, weights: dict[str, list[np.ndarray]], out_path: str | Path) -> Path:
    """Write `weights` as a caffemodel for `prototxt` (atomically)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, caffemodel_bytes(prototxt, weights))
    return out_path


def export_model(deploy_prototxt: str | Path, caffemodel: str | Path, out_dir: str | Path, fp16: bool = True,
                 meta: dict | None = None, config: HyperFaceConfig | None = None) -> Path:
    """Make a model directory from a deploy prototxt and trained caffemodel (see module docstring).

    meta: free-form facts to keep in model.json (e.g. {"trained_on": "aflw_crops", "iterations": 5000}).
    Returns out_dir.
    """
    cfg = config or load_config()
    deploy_prototxt, caffemodel, out_dir = Path(deploy_prototxt), Path(caffemodel), Path(out_dir)
    net = read_prototxt(deploy_prototxt)
    weights = read_caffemodel(caffemodel)
    caffemodel_bytes(deploy_prototxt, weights)  # shape check before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(deploy_prototxt, out_dir / DEPLOY)
    for stale in (WEIGHTS, WEIGHTS_FP16):
        (out_dir / stale).unlink(missing_ok=True)
    if fp16:
        arrays = {f"{layer}#{k}": b.astype(np.float16) for layer, blobs in weights.items() for k, b in enumerate(blobs)}
        tmp = out_dir / f".{WEIGHTS_FP16}.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, out_dir / WEIGHTS_FP16)
        weights_file = WEIGHTS_FP16
    else:
        shutil.copyfile(caffemodel, out_dir / WEIGHTS)
        weights_file = WEIGHTS
    doc = {
        "format_version": MODEL_FORMAT_VERSION,
        "name": net.name,
        "label_layout_version": LABEL_LAYOUT_VERSION,
        "input": {"size": int(infer_shapes(deploy_prototxt).blobs[INPUT_BLOB][-1]), "mean_bgr": list(cfg.input.mean_bgr)},
        "weights": weights_file,
        "weights_sha1": hashlib.sha1((out_dir / weights_file).read_bytes()).hexdigest(),
        "source_caffemodel": str(caffemodel),
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "meta": dict(meta or {}),
    }
    atomic_write_bytes(out_dir / META, (json.dumps(doc, indent=2) + "\n").encode())
    log.info("exported %s (%s) to %s", net.name, weights_file, out_dir)
    return out_dir


def with_layers_replaced(model_dir: str | Path, out_dir: str | Path, layers: dict[str, list[np.ndarray]],
                         drop_fields: tuple[str, ...] = (), **fields) -> Path:
    """A copy of an fp16 model directory whose `layers` get new parameter blobs (same shapes); every
    other layer's fp16 blob is copied as stored. model.json keeps its fields except the weights' SHA-1
    and export time, minus `drop_fields`, plus `fields`. Returns out_dir."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    src = model_dir / WEIGHTS_FP16
    if not src.is_file():
        raise ModelError(model_dir, f"no {WEIGHTS_FP16} (with_layers_replaced copies fp16 model directories)")
    doc = json.loads((model_dir / META).read_text())
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for layer, blobs in layers.items():
        for k, blob in enumerate(blobs):
            key = f"{layer}#{k}"
            if key not in arrays or arrays[key].shape != np.shape(blob):
                raise ModelError(src, f"{key}: {arrays[key].shape if key in arrays else 'missing'}, "
                                      f"replacement {np.shape(blob)}")
            arrays[key] = np.asarray(blob).astype(np.float16)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / DEPLOY, out_dir / DEPLOY)
    (out_dir / WEIGHTS).unlink(missing_ok=True)
    tmp = out_dir / f".{WEIGHTS_FP16}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out_dir / WEIGHTS_FP16)
    doc = {k: v for k, v in doc.items() if k not in drop_fields}
    doc.update(weights=WEIGHTS_FP16, weights_sha1=hashlib.sha1((out_dir / WEIGHTS_FP16).read_bytes()).hexdigest(),
               exported=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **fields)
    atomic_write_bytes(out_dir / META, (json.dumps(doc, indent=2) + "\n").encode())
    copy_proposal_net(model_dir, out_dir)
    return out_dir


def load_model(model_dir: str | Path) -> Model:
    """Open a model directory; fp16 weights are expanded into a cached float32 caffemodel."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(model_dir, "model directory not found")
    prototxt = model_dir / DEPLOY
    if not prototxt.is_file():
        raise ModelError(prototxt, "missing (a model directory needs deploy.prototxt)")
    meta_path = model_dir / META
    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ModelError(meta_path, f"not valid JSON ({err.msg}, line {err.lineno})") from None
        if meta.get("label_layout_version", LABEL_LAYOUT_VERSION) != LABEL_LAYOUT_VERSION:
            raise ModelError(meta_path, f"label layout version {meta['label_layout_version']} "
                                        f"!= {LABEL_LAYOUT_VERSION} of core/labels.py")
    if (model_dir / WEIGHTS).is_file():
        return Model(model_dir, prototxt, model_dir / WEIGHTS, meta, verified_sha1(model_dir / WEIGHTS, meta, meta_path))
    npz_path = model_dir / WEIGHTS_FP16
    if not npz_path.is_file():
        raise ModelError(model_dir, f"no weights: expected {WEIGHTS} or {WEIGHTS_FP16}")
    weights_sha1 = verified_sha1(npz_path, meta, meta_path)
    digest = hashlib.sha1(npz_path.read_bytes() + prototxt.read_bytes()).hexdigest()[:16]
    expanded = cache_dir() / "models" / digest / WEIGHTS
    if not expanded.is_file():
        try:
            with np.load(npz_path) as npz:
                weights: dict[str, list] = {}
                for key in sorted(npz.files, key=lambda k: (k.rsplit("#", 1)[0], int(k.rsplit("#", 1)[1]))):
                    layer, _ = key.rsplit("#", 1)
                    weights.setdefault(layer, []).append(npz[key].astype(np.float32))
        except (OSError, ValueError, IndexError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise ModelError(npz_path, f"not a valid fp16 weight archive ({err.__class__.__name__}: "
                                       f"{str(err).splitlines()[0] if str(err) else 'unreadable'})") from None
        write_caffemodel(prototxt, weights, expanded)
        log.info("expanded %s into %s", npz_path, expanded)
    return Model(model_dir, prototxt, expanded, meta, weights_sha1)


def verified_sha1(weights: Path, meta: dict, meta_path: Path) -> str:
    """SHA-1 of a model's weight file; ModelError when model.json records another one (a corrupt,
    truncated or replaced file), so a result is never attributed to weights it did not come from."""
    try:
        got = hashlib.sha1(weights.read_bytes()).hexdigest()
    except OSError as err:
        raise ModelError(weights, f"unreadable ({err.strerror or err.__class__.__name__})") from None
    want = meta.get("weights_sha1")
    if want and meta.get("weights", weights.name) == weights.name and got != want:
        raise ModelError(weights, f"SHA-1 {got} does not match {meta_path.name}'s weights_sha1 {want} "
                                  "(corrupt, truncated or replaced weight file)")
    return got


def record_in_model(model_dir: str | Path, **fields) -> dict:
    """Add (or replace) top-level `fields` of a model directory's model.json, atomically; the
    weights and their SHA-1 are untouched. Returns the new document."""
    meta_path = Path(model_dir) / META
    if not meta_path.is_file():
        raise ModelError(meta_path, "missing (record_in_model needs an exported model directory)")
    doc = json.loads(meta_path.read_text())
    doc.update(fields)
    atomic_write_bytes(meta_path, (json.dumps(doc, indent=2) + "\n").encode())
    return doc
