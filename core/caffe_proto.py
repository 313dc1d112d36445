"""The one loader of Caffe's protobuf messages (caffe_pb2), without needing pycaffe's compiled _caffe.so.

Used by the model I/O (core/model_store.py, core/net_shapes.py), data_prep's LMDB Datums and the
prototxt tools; inference with the OpenCV or ONNX Runtime backend only needs caffe_pb2 (NetParameter).
Resolution order:
  1. `caffe.proto.caffe_pb2` when pycaffe imports (scripts/env.sh shell);
  2. a `caffe/proto/caffe_pb2.py` file under the project's Caffe build ($CAFFE_PREFIX or
     scripts/caffe_prefix.sh)/python, $CAFFE_ROOT/python, $CAFFE_ROOT/build/include or any sys.path
     entry, loaded by file path (no `import caffe`, so no _caffe.so);
  3. generated with `protoc` from $CAFFE_ROOT/src/caffe/proto/caffe.proto into
     ~/.cache/hyperface/caffe_pb2/ (or $HYPERFACE_MODEL_CACHE).
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import ModelError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where expanded weights and generated protobuf code go ($HYPERFACE_MODEL_CACHE)."""
    return Path(os.environ.get("HYPERFACE_MODEL_CACHE", Path.home() / ".cache" / "hyperface"))


def _caffe_prefix() -> Path | None:
    """$CAFFE_PREFIX, else what scripts/caffe_prefix.sh prints (the project's cached Caffe build)."""
    if os.environ.get("CAFFE_PREFIX"):
        return Path(os.environ["CAFFE_PREFIX"])
    script = Path(__file__).resolve().parents[1] / "scripts" / "caffe_prefix.sh"
    if script.is_file() and shutil.which("bash"):
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    return None


def _caffe_roots() -> list[Path]:
    roots = []
    for var in ("CAFFE_ROOT",):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]))
    prefix = _caffe_prefix()
    if prefix is not None:
        roots.append(prefix)
    repo = Path(__file__).resolve().parents[1]
    roots += [repo / "third_party" / "caffe", repo / "caffe", repo / "build" / "caffe"]
    return [r for r in roots if r.is_dir()]


def _load_file(path: Path):
    spec = importlib.util.spec_from_file_location("hyperface_caffe_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def caffe_pb2():
    """The caffe_pb2 module (see the module docstring for where it comes from)."""
    try:
        from caffe.proto import caffe_pb2 as pb2  # noqa: PLC0415
        return pb2
    except Exception:  # pycaffe missing or its _caffe.so not built: fall through
        pass
    candidates = []
    for root in _caffe_roots():
        candidates += [root / "python" / "caffe" / "proto" / "caffe_pb2.py",
                       root / "build" / "include" / "caffe" / "proto" / "caffe_pb2.py"]
    candidates += [Path(p) / "caffe" / "proto" / "caffe_pb2.py" for p in sys.path if p]
    generated = cache_dir() / "caffe_pb2" / "caffe_pb2.py"
    candidates.append(generated)
    for path in candidates:
        if path.is_file():
            try:
                return _load_file(path)
            except Exception as err:  # stale file from another protobuf version
                log.debug("cannot load %s: %s", path, err)
    protos = [r / "src" / "caffe" / "proto" / "caffe.proto" for r in _caffe_roots()]
    protos = [p for p in protos if p.is_file()]
    protoc = shutil.which("protoc")
    if protos and protoc:
        generated.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([protoc, f"--proto_path={protos[0].parent}", f"--python_out={generated.parent}",
                        str(protos[0])], check=True, capture_output=True)
        log.info("generated %s from %s", generated, protos[0])
        return _load_file(generated)
    raise ModelError(None, "caffe_pb2 not found: source scripts/env.sh, or set CAFFE_ROOT to a Caffe "
                           "source tree (needs protoc to generate it)")
