"""Rewrite the data sources of a train_val prototxt and the fields of a solver for a training run.

The committed prototxts point at `lmdb/{train,val}_{images,labels}` (relative); training scripts
and tests call these functions to point them at real LMDBs and write the result to their run
folder. Both parse with caffe_pb2 + text_format, so an unknown field fails as a clear error.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from core.caffe_proto import caffe_pb2 as _caffe_pb2
from core.errors import HyperFaceError


class PrototxtError(HyperFaceError, ValueError):
    """A prototxt that cannot be read or does not have the expected layers; the message names the file."""


def read_proto(path: str | Path, message):
    """Parse the text-format protobuf at `path` into `message` (returned), naming the file on error."""
    path = Path(path)
    try:
        text_format.Parse(path.read_text(), message)
    except FileNotFoundError:
        raise PrototxtError(f"{path}: file not found") from None
    except text_format.ParseError as err:
        raise PrototxtError(f"{path}: not a valid {message.DESCRIPTOR.name} ({err})") from None
    return message


def read_net(path: str | Path):
    return read_proto(path, _caffe_pb2().NetParameter())


def read_solver(path: str | Path):
    return read_proto(path, _caffe_pb2().SolverParameter())


def _phase_of(layer, caffe_pb2) -> int | None:
    phases = [rule.phase for rule in layer.include if rule.HasField("phase")]
    return phases[0] if phases else None


def with_data_sources(prototxt_path, *, train_images, train_labels, val_images=None, val_labels=None,
                      batch_size=None) -> str:
    """Text of the train_val net at `prototxt_path` with its data sources replaced.

    `Data` layers with top `data` / `label` get the images / labels LMDB of their phase (TRAIN:
    train_*, TEST: val_*; a None val_* reuses the train source so a net builds from one LMDB pair).
    `AnnotatedData` layers (SSD) take the images source; their labels live in the same LMDB, so
    train_labels / val_labels must be None there. `batch_size` (if given) replaces every data
    layer's batch size. Raises PrototxtError when the net has no data layer for a given source.
    """
    caffe_pb2 = _caffe_pb2()
    net = read_net(prototxt_path)
    sources = {
        caffe_pb2.TRAIN: {"data": train_images, "label": train_labels},
        caffe_pb2.TEST: {"data": val_images if val_images is not None else train_images,
                         "label": val_labels if val_labels is not None else train_labels},
    }
    replaced = set()
    for layer in net.layer:
        if layer.type not in ("Data", "AnnotatedData"):
            continue
        phase = _phase_of(layer, caffe_pb2)
        phases = [phase] if phase is not None else [caffe_pb2.TRAIN, caffe_pb2.TEST]
        key = "data" if layer.type == "AnnotatedData" else layer.top[0]
        if key not in ("data", "label"):
            raise PrototxtError(f"{prototxt_path}: data layer {layer.name!r} has top {key!r}, expected 'data' or 'label'")
        source = sources[phases[0]][key]
        if source is None:
            raise PrototxtError(f"{prototxt_path}: layer {layer.name!r} needs a {key} source, none given")
        layer.data_param.source = str(source)
        if batch_size is not None:
            layer.data_param.batch_size = int(batch_size)
        replaced.add(key)
    if "data" not in replaced:
        raise PrototxtError(f"{prototxt_path}: no Data/AnnotatedData layer with top 'data'")
    if "label" not in replaced and (train_labels is not None or val_labels is not None):
        raise PrototxtError(f"{prototxt_path}: labels given but the net has no label Data layer")
    return text_format.MessageToString(net)


def with_python_data(prototxt_path, module: str, layer: str, param_str: str) -> str:
    """Text of the train_val net at `prototxt_path` whose TRAIN-phase `data` + `label` Data layers
    are replaced by one Python layer (`module`.`layer`, tops data and label, `param_str`); the
    TEST-phase Data layers are dropped (a sampler-fed run validates outside Caffe)."""
    caffe_pb2 = _caffe_pb2()
    net = read_net(prototxt_path)
    kept, inserted = [], False
    for item in net.layer:
        if item.type == "Data" and list(item.top) in (["data"], ["label"]):
            if _phase_of(item, caffe_pb2) == caffe_pb2.TEST:
                continue
            if not inserted:
                python = caffe_pb2.LayerParameter(name="region_sampler", type="Python", top=["data", "label"])
                python.include.add().phase = caffe_pb2.TRAIN
                python.python_param.module = module
                python.python_param.layer = layer
                python.python_param.param_str = param_str
                kept.append(python)
                inserted = True
            continue
        kept.append(item)
    if not inserted:
        raise PrototxtError(f"{prototxt_path}: no TRAIN Data layers with tops 'data' and 'label' to replace")
    del net.layer[:]
    net.layer.extend(kept)
    return text_format.MessageToString(net)


def solver_for(solver_path, net_path, snapshot_prefix, max_iter=None, *, base_lr=None, test_iter=None,
               test_interval=None, display=None, snapshot=None, random_seed=None, lr_policy=None,
               power=None, clip_gradients=None) -> str:
    """Text of the solver at `solver_path` with `net`, `snapshot_prefix` and the given fields replaced.

    `test_iter=0` drops testing (no test net is built), as needed for a run without a val LMDB.
    """
    solver = read_solver(solver_path)
    solver.net = str(net_path)
    solver.snapshot_prefix = str(snapshot_prefix)
    for name, value in (("max_iter", max_iter), ("base_lr", base_lr), ("test_interval", test_interval),
                        ("display", display), ("snapshot", snapshot), ("random_seed", random_seed),
                        ("lr_policy", lr_policy), ("power", power), ("clip_gradients", clip_gradients)):
        if value is not None:
            setattr(solver, name, value)
    if test_iter is not None:
        del solver.test_iter[:]
        if test_iter > 0:
            solver.test_iter.append(int(test_iter))
        else:
            solver.ClearField("test_interval")
            solver.test_initialization = False
    return text_format.MessageToString(solver)
