"""The Caffe LMDB pair: image LMDB (uint8 Datum, BGR, 3 x size x size) and label LMDB (float Datum,
channels = LABEL_LENGTH, height = width = 1), with identical keys in identical order.

Keys are `<8 hex digits of a seeded hash>_<image index>_<sample index>`: deterministic (a resumed
run rewrites the same keys, never duplicates) and, because LMDB iterates in key order, a seeded
shuffle of the samples for Caffe's Data layer (which reads sequentially).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import lmdb
import numpy as np

from core.caffe_proto import caffe_pb2
from core.labels import LABEL_LENGTH
from data_prep.errors import DataPrepError

IMAGE_DB = "images_lmdb"
LABEL_DB = "labels_lmdb"
MAP_SIZE = 1 << 38  # 256 GiB of address space; the files grow only as needed


def sample_key(seed: int, image_index: int, sample_index: int) -> bytes:
    """Deterministic, shuffled-order key of one sample."""
    digest = hashlib.sha1(f"{seed}:{image_index}:{sample_index}".encode()).hexdigest()[:8]
    return f"{digest}_{image_index:07d}_{sample_index:03d}".encode()


def image_datum(crop: np.ndarray) -> bytes:
    """Serialized uint8 Datum (C, H, W) of a BGR (H, W, 3) crop."""
    pb2 = caffe_pb2()
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    datum = pb2.Datum(channels=crop.shape[2], height=crop.shape[0], width=crop.shape[1],
                      data=crop.transpose(2, 0, 1).tobytes(), label=0)
    return datum.SerializeToString()


def label_datum(label: np.ndarray) -> bytes:
    """Serialized float Datum (LABEL_LENGTH, 1, 1) of a label vector."""
    pb2 = caffe_pb2()
    label = np.asarray(label, dtype=np.float32).reshape(-1)
    if label.size != LABEL_LENGTH:
        raise ValueError(f"label vector has {label.size} values, expected {LABEL_LENGTH}")
    datum = pb2.Datum(channels=LABEL_LENGTH, height=1, width=1)
    datum.float_data.extend(label.tolist())
    return datum.SerializeToString()


def decode_image(value: bytes) -> np.ndarray:
    """(H, W, 3) uint8 BGR crop of a serialized image Datum."""
    datum = caffe_pb2().Datum()
    datum.ParseFromString(value)
    return np.frombuffer(datum.data, dtype=np.uint8).reshape(datum.channels, datum.height, datum.width).transpose(1, 2, 0)


def decode_label(value: bytes) -> np.ndarray:
    """(LABEL_LENGTH,) float32 label vector of a serialized float Datum."""
    datum = caffe_pb2().Datum()
    datum.ParseFromString(value)
    return np.asarray(datum.float_data, dtype=np.float32)


class LmdbPair:
    """The image + label LMDBs of one output folder, written one image's samples per transaction."""

    def __init__(self, out_dir: str | Path, readonly: bool = False):
        self.out_dir = Path(out_dir)
        kwargs = dict(readonly=True, lock=False) if readonly else dict(map_size=MAP_SIZE)
        paths = (self.out_dir / IMAGE_DB, self.out_dir / LABEL_DB)
        if readonly:
            for path in paths:
                if not (path / "data.mdb").is_file():
                    raise DataPrepError(path, "LMDB not found")
        self.images = lmdb.open(str(paths[0]), **kwargs)
        self.labels = lmdb.open(str(paths[1]), **kwargs)

    def put_many(self, items: list[tuple[bytes, bytes, bytes]]) -> None:
        """Write [(key, image value, label value)]: both transactions commit or the resume redoes them."""
        with self.images.begin(write=True) as ti:
            for key, image_value, _ in items:
                ti.put(key, image_value)
        with self.labels.begin(write=True) as tl:
            for key, _, label_value in items:
                tl.put(key, label_value)

    def delete_image_index_from(self, first_image: int) -> int:
        """Remove samples of images >= first_image (left by an interrupted run); returns how many."""
        removed = 0
        for env in (self.images, self.labels):
            with env.begin(write=True) as txn:
                stale = [k for k, _ in txn.cursor() if int(k.split(b"_")[1]) >= first_image]
                for key in stale:
                    txn.delete(key)
                removed = max(removed, len(stale))
        return removed

    def keys(self) -> tuple[list[bytes], list[bytes]]:
        """(image keys, label keys) in LMDB order."""
        with self.images.begin() as ti, self.labels.begin() as tl:
            return [k for k, _ in ti.cursor()], [k for k, _ in tl.cursor()]

    def __len__(self) -> int:
        return self.images.stat()["entries"]

    def items(self):
        """Yield (key, crop, label) in LMDB order."""
        with self.images.begin() as ti, self.labels.begin() as tl:
            for (key, image_value), (label_key, label_value) in zip(ti.cursor(), tl.cursor()):
                if key != label_key:
                    raise DataPrepError(self.out_dir, f"image and label LMDB keys differ: {key!r} vs {label_key!r}")
                yield key, decode_image(image_value), decode_label(label_value)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for d in (IMAGE_DB, LABEL_DB) for p in (self.out_dir / d).glob("*.mdb"))

    def close(self) -> None:
        self.images.close()
        self.labels.close()
