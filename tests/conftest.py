"""Shared pytest fixtures for HyperFace.

Fixtures:
  repo_root   -- Path of the repository root
  shared_data -- Path repo_root/../shared/data (read in place; may not exist on every machine)
  caffe       -- the pycaffe module (CPU mode) built by `make setup`
  caffe_bin   -- Path of the `caffe` command-line tool
  caffe_env   -- os.environ copy with PYTHONPATH/LD_LIBRARY_PATH/PATH for subprocesses
  tmp_lmdb    -- factory: tmp_lmdb(images[N,C,H,W] uint8, labels[N]) -> Path of a Datum LMDB

Works under `make test`, after `source scripts/env.sh`, and with plain `.venv/bin/pytest`:
the Caffe prefix is taken from $CAFFE_PREFIX or scripts/caffe_prefix.sh.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _caffe_prefix() -> Path:
    env = os.environ.get("CAFFE_PREFIX")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "caffe_prefix.sh")],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


CAFFE_PREFIX = _caffe_prefix()
# Quiet glog INFO lines from pycaffe unless the caller asked otherwise.
os.environ.setdefault("GLOG_minloglevel", "2")
for p in (str(REPO_ROOT), str(CAFFE_PREFIX / "python")):
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from core.config import DATA_ROOT
    return DATA_ROOT


@pytest.fixture(scope="session")
def caffe():
    import caffe as _caffe
    _caffe.set_mode_cpu()
    return _caffe


@pytest.fixture(scope="session")
def caffe_bin() -> Path:
    return CAFFE_PREFIX / "bin" / "caffe"


@pytest.fixture(scope="session")
def caffe_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{CAFFE_PREFIX / 'python'}:{REPO_ROOT}"
    env["LD_LIBRARY_PATH"] = f"{CAFFE_PREFIX / 'lib'}:" + env.get("LD_LIBRARY_PATH", "")
    env["PATH"] = f"{CAFFE_PREFIX / 'bin'}:{REPO_ROOT / '.venv' / 'bin'}:" + env.get("PATH", "")
    return env


def write_datum_lmdb(path, images, labels, map_size=1 << 30):
    """Write uint8 images [N,C,H,W] and int labels [N] as caffe Datum records."""
    import lmdb
    from caffe.proto import caffe_pb2

    images = np.asarray(images)
    assert images.dtype == np.uint8 and images.ndim == 4, images.shape
    env = lmdb.open(str(path), map_size=map_size)
    with env.begin(write=True) as txn:
        for i, (img, lab) in enumerate(zip(images, labels)):
            d = caffe_pb2.Datum()
            d.channels, d.height, d.width = img.shape
            d.data = img.tobytes()
            d.label = int(lab)
            txn.put(f"{i:08d}".encode(), d.SerializeToString())
    env.close()
    return Path(path)


@pytest.fixture
def tmp_lmdb(tmp_path, caffe):
    counter = iter(range(1 << 30))

    def make(images, labels, name=None):
        return write_datum_lmdb(tmp_path / (name or f"db{next(counter)}.lmdb"), images, labels)

    return make
