"""Helpers for the prototxt/ tests (no tests here): a tiny real LMDB pair from AFLW crops, random
weights for deploy nets, and building train_val nets on that LMDB."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import cv2
import lmdb
import numpy as np

from core.config import DATA_ROOT, load_config
from core.labels import LABEL_LENGTH, OFFSETS, empty_label
from prototxt import PROTOTXT_DIR
from prototxt.netspec_utils import solver_for, with_data_sources

os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402

caffe.set_mode_cpu()
AFLW = DATA_ROOT / "aflw_crops"
CFG = load_config()


def aflw_samples(count: int):
    """`count` (image 227x227 BGR uint8, label vector) pairs: the first AFLW crops as faces (real
    21 landmarks + visibility + yaw) and every fourth sample a non-face (a corner patch, label 0)."""
    size = CFG.input.size
    samples = []
    with open(AFLW / "annotations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows[:count]):
        image = cv2.imread(str(AFLW / row["image"]))
        if image is None:
            raise FileNotFoundError(f"{AFLW / row['image']}: cannot read image")
        h, w = image.shape[:2]
        label = empty_label()
        if i % 4 == 3:
            patch = image[: h // 3, : w // 3]
            samples.append((cv2.resize(patch, (size, size)), _with(label, detection=0.0)))
            continue
        pts = np.array([[float(row[f"x{k}"]), float(row[f"y{k}"])] for k in range(1, 22)])
        visible = (pts[:, 0] >= 0).astype(np.float32)
        norm = np.where(visible[:, None] > 0, (pts - [w / 2, h / 2]) / [w, h], 0.0).astype(np.float32)
        mask = np.repeat(visible, 2)
        label[OFFSETS["detection"]] = 1
        label[OFFSETS["landmarks"]] = norm.reshape(-1) * mask
        label[OFFSETS["landmarks_mask"]] = mask
        label[OFFSETS["visibility"]] = visible
        label[OFFSETS["visibility_mask"]] = 1
        label[OFFSETS["pose"]] = [0.0, 0.0, math.radians(float(row["yaw_deg"]))]
        label[OFFSETS["pose_mask"]] = [0, 0, 1]
        label[OFFSETS["gender"]] = i % 2
        label[OFFSETS["bbox_targets"]] = [0.01 * i, -0.01 * i, 0.02, -0.02]
        label[OFFSETS["bbox_mask"]] = 1
        samples.append((cv2.resize(image, (size, size)), label))
    return samples


def _with(label, detection):
    label = label.copy()
    label[OFFSETS["detection"]] = detection
    return label


def write_lmdbs(folder: Path, samples) -> tuple[Path, Path]:
    """Write images / labels LMDBs in the layout data_prep writes (uint8 CHW Datum; float Datum (414,1,1))."""
    from caffe.proto import caffe_pb2
    images, labels = folder / "images", folder / "labels"
    with lmdb.open(str(images), map_size=1 << 30) as img_env, lmdb.open(str(labels), map_size=1 << 28) as lab_env:
        with img_env.begin(write=True) as img_txn, lab_env.begin(write=True) as lab_txn:
            for i, (image, label) in enumerate(samples):
                key = f"{i:08d}".encode()
                datum = caffe_pb2.Datum(channels=3, height=image.shape[0], width=image.shape[1],
                                        data=image.transpose(2, 0, 1).tobytes())
                img_txn.put(key, datum.SerializeToString())
                assert label.shape == (LABEL_LENGTH,)
                ldatum = caffe_pb2.Datum(channels=LABEL_LENGTH, height=1, width=1)
                ldatum.float_data.extend(label.tolist())
                lab_txn.put(key, ldatum.SerializeToString())
    return images, labels


def train_val_net(model: str, images: Path, labels: Path, tmp: Path, batch: int):
    """pycaffe TRAIN net of prototxt/<model>/train_val.prototxt reading the given LMDBs."""
    text = with_data_sources(PROTOTXT_DIR / model / "train_val.prototxt", train_images=images,
                             train_labels=labels, batch_size=batch)
    path = tmp / f"{model}_train_val.prototxt"
    path.write_text(text)
    return path


def make_solver(model: str, net_path: Path, tmp: Path, base_lr: float):
    text = solver_for(PROTOTXT_DIR / model / "solver.prototxt", net_path, tmp / "snap", max_iter=1000,
                      base_lr=base_lr, test_iter=0, display=0, random_seed=0)
    path = tmp / f"{model}_solver.prototxt"
    path.write_text(text)
    return caffe.SGDSolver(str(path))


def randomize(net, seed: int = 0, gain: float = 1.0):
    """He-scaled random weights times `gain` (biases small, Normalize scales 20), so outputs are O(1)."""
    rng = np.random.default_rng(seed)
    for name, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            shape = blob.data.shape
            if name.endswith("_norm"):
                blob.data[...] = 20.0
            elif i == 0 and len(shape) > 1:
                fan_in = int(np.prod(shape[1:]))
                blob.data[...] = rng.normal(0, gain * math.sqrt(2.0 / fan_in), shape)
            else:
                blob.data[...] = rng.normal(0, 0.1, shape)
