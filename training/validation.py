"""Held-out validation while HyperFace trains: a fixed set of region crops scored every N iterations.

The set is drawn once (seeded) from data no training batch sees:
  detection  WIDER train-heldout photos (faces >= BenchmarkConfig.face_eval_min_gt_side), the HELEN
             testset and afw_sample: one jittered positive per face (IoU > 0.5), one near miss and
             one random background region per photo (IoU < 0.35 with every face), and up to 8
             selective-search proposals per photo that overlap no face (task "ss": the false
             positives the pipeline would meet; ss_fpr_at_* is the share scored as a face)
  landmarks  aflw_crops test split (the chip box as region): NME / box size, visibility, yaw
  gender     UTKFace test split
The detection figure is region-level average precision (faces vs background), which tracks the
classifier cheaply; the full-pipeline face-eval AP is measured at the end of a piece
(`python -m benchmarks heldout-detection`).
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.metrics.classification import average_precision, balanced_accuracy
from benchmarks.metrics.landmarks import angle_error_deg, nme
from core.config import HyperFaceConfig
from core.geometry import box_iou, crop_and_warp
from core.net_io import DETECTION_PROB, GENDER_PROB, LANDMARKS, POSE, VISIBILITY
from data_prep.readers import read_dataset
from data_prep.readers.common import load_image
from data_prep.readers.wider import is_ignore
from data_prep.regions import selective_search
from training.sampler import draw_around, random_region

log = logging.getLogger(__name__)

FIELDS = ["iteration", "region_ap", "fpr_at_0.5", "tpr_at_0.5", "ss_fpr_at_0.5", "ss_fpr_at_0.9", "nme_box", "visibility_acc", "yaw_mae_deg",
          "gender_balanced_acc"]


@dataclass
class ValidationSet:
    crops: np.ndarray          # (N, S, S, 3) uint8
    is_face: np.ndarray        # (N,) 1 face, 0 background, -1 not a detection sample
    task: np.ndarray           # (N,) "det", "lmk", "gender"
    landmarks: np.ndarray      # (N, 21, 2) in region-normalised units (eq. 2), NaN unknown
    visible: np.ndarray        # (N, 21) 1/0, NaN unknown
    yaw_deg: np.ndarray        # (N,)
    male: np.ndarray           # (N,) 1/0, -1 unknown


def _face_records(data_root: Path, cfg: HyperFaceConfig, afw_dir: Path | None):
    tc = cfg.training
    out = list(read_dataset("wider", data_root / "wider_train", split="train-heldout", config=cfg))[:tc.val_wider_photos]
    out += read_dataset("300w", data_root / "helen", split="test")[:tc.val_helen_photos]
    if afw_dir is not None and Path(afw_dir).is_dir():
        from benchmarks.datasets.afw import load_afw
        out += load_afw(afw_dir)
    return out


def build_validation_set(data_root: Path, cfg: HyperFaceConfig, afw_dir: Path | None = None,
                         ss_negatives: int = 8, seed: int = 1) -> ValidationSet:
    rng = np.random.default_rng(seed)
    n_landmarks, n_gender = cfg.training.val_landmark_crops, cfg.training.val_gender_crops
    size, mean = cfg.input.size, cfg.input.mean_bgr
    min_side = cfg.benchmark.face_eval_min_gt_side
    crops, is_face, task, lmk, vis, yaw, male = [], [], [], [], [], [], []

    def add(crop, face_flag, kind, points=None, visible=None, yaw_deg=np.nan, gender=-1):
        crops.append(crop)
        is_face.append(face_flag)
        task.append(kind)
        lmk.append(np.full((21, 2), np.nan) if points is None else points)
        vis.append(np.full(21, np.nan) if visible is None else visible)
        yaw.append(yaw_deg)
        male.append(gender)

    for record in _face_records(Path(data_root), cfg, afw_dir):
        image = load_image(record.path)
        boxes = np.array([f.box for f in record.faces]).reshape(-1, 4)
        real = [f for f in record.faces if not is_ignore(f)
                and min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_side]
        for face in real:
            got = draw_around(face.box, rng, cfg.iou.detection_positive, 1.0, 0.08, 0.08)
            region = got[0] if got else face.box
            add(crop_and_warp(image, region, size, mean), 1, "det")
        if real:
            face = real[rng.integers(len(real))]
            got = draw_around(face.box, rng, cfg.training.near_miss_min_iou, cfg.iou.detection_negative, 0.5, 0.5,
                              others=boxes, max_other=cfg.iou.detection_negative)
            if got:
                add(crop_and_warp(image, got[0], size, mean), 0, "det")
        region = random_region(image.shape[1], image.shape[0], rng, 24, boxes, cfg.iou.detection_negative)
        if region is not None:
            add(crop_and_warp(image, region, size, mean), 0, "det")
        # selective-search proposals that overlap no face: the background the pipeline really scores
        proposals = selective_search(image, cfg.selective_search)
        proposals = proposals[np.minimum(proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]) >= 24]
        if len(proposals) and len(boxes):
            proposals = proposals[box_iou(proposals, boxes).max(axis=1) < cfg.iou.detection_negative]
        for k in rng.choice(len(proposals), size=min(ss_negatives, len(proposals)), replace=False) if len(proposals) else []:
            add(crop_and_warp(image, proposals[k], size, mean), 0, "ss")

    for record in read_dataset("aflw_crops", Path(data_root) / "aflw_crops", split="test", config=cfg)[:n_landmarks]:
        face = record.faces[0]
        image = load_image(record.path)
        w, h = face.box[2] - face.box[0], face.box[3] - face.box[1]
        centre = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
        add(crop_and_warp(image, face.box, size, mean), -1, "lmk", (face.landmarks - centre) / np.array([w, h]),
            face.visibility.astype(np.float64), float(face.pose_deg[2]))
    for record in read_dataset("utkface", Path(data_root) / "utkface", split="test", config=cfg)[:n_gender]:
        face = record.faces[0]
        add(crop_and_warp(load_image(record.path), face.box, size, mean), -1, "gender",
            gender=1 if face.gender == "m" else 0)
    log.info("validation set: %d detection regions (%d faces), %d SS background, %d landmark crops, %d gender crops",
             task.count("det"), int(np.sum(np.array(is_face) == 1)), task.count("ss"), task.count("lmk"),
             task.count("gender"))
    return ValidationSet(np.stack(crops), np.array(is_face), np.array(task), np.array(lmk), np.array(vis),
                         np.array(yaw, dtype=np.float64), np.array(male))


def forward_all(net, crops: np.ndarray, mean_bgr, batch: int = 32) -> dict[str, np.ndarray]:
    """Deploy-net outputs for every crop (N, S, S, 3 uint8)."""
    outs: dict[str, list] = {}
    names = [n for n in (DETECTION_PROB, LANDMARKS, VISIBILITY, POSE, GENDER_PROB) if n in net.blobs]
    for start in range(0, len(crops), batch):
        chunk = crops[start:start + batch].astype(np.float32) - np.asarray(mean_bgr, dtype=np.float32)
        net.blobs["data"].reshape(len(chunk), *net.blobs["data"].data.shape[1:])
        net.blobs["data"].data[...] = chunk.transpose(0, 3, 1, 2)
        net.forward()
        for name in names:
            outs.setdefault(name, []).append(net.blobs[name].data.copy().reshape(len(chunk), -1))
    return {k: np.concatenate(v) for k, v in outs.items()}


def score(outs: dict[str, np.ndarray], vs: ValidationSet, cfg: HyperFaceConfig) -> dict[str, float]:
    det = (vs.task == "det") | (vs.task == "ss")
    prob = outs[DETECTION_PROB][:, 1]
    faces = vs.is_face[det] == 1
    ss = vs.task == "ss"
    result = {"region_ap": average_precision(prob[det], faces),
              "fpr_at_0.5": float(np.mean(prob[det][~faces] >= 0.5)) if (~faces).any() else float("nan"),
              "tpr_at_0.5": float(np.mean(prob[det][faces] >= 0.5)) if faces.any() else float("nan"),
              "ss_fpr_at_0.5": float(np.mean(prob[ss] >= 0.5)) if ss.any() else float("nan"),
              "ss_fpr_at_0.9": float(np.mean(prob[ss] >= 0.9)) if ss.any() else float("nan")}
    lm = vs.task == "lmk"
    if lm.any():
        pred = outs[LANDMARKS][lm].reshape(-1, 21, 2)
        gt = vs.landmarks[lm]
        # the region is the face box, so eq. 2 units are box sides: NME / sqrt(w*h) of a square box = the mean error
        result["nme_box"] = float(np.nanmean(nme(pred, gt, np.ones(len(gt)))))
        known = ~np.isnan(vs.visible[lm])
        hit = (outs[VISIBILITY][lm] >= cfg.test.visibility_threshold) == (vs.visible[lm] > 0.5)
        result["visibility_acc"] = float(hit[known].mean())
        result["yaw_mae_deg"] = float(np.nanmean(angle_error_deg(np.degrees(outs[POSE][lm, 2]), vs.yaw_deg[lm])))
    gd = vs.task == "gender"
    if gd.any():
        result["gender_balanced_acc"] = balanced_accuracy(outs[GENDER_PROB][gd, 1] >= 0.5, vs.male[gd] == 1)
    return result


class Validator:
    """Called by training.stage.run_stage every `validate_every` iterations: scores the validation set
    with a deploy net sharing the train net's weights and appends a row to validation.csv."""

    def __init__(self, deploy_prototxt: Path, vs: ValidationSet, cfg: HyperFaceConfig, csv_path: Path):
        import caffe
        self.net = caffe.Net(str(deploy_prototxt), caffe.TEST)
        self.vs, self.cfg, self.csv_path = vs, cfg, Path(csv_path)
        self.history: list[dict] = read_history(self.csv_path)

    def __call__(self, train_net, iteration: int) -> dict:
        self.net.share_with(train_net)
        row = {"iteration": int(iteration), **score(forward_all(self.net, self.vs.crops, self.cfg.input.mean_bgr),
                                                    self.vs, self.cfg)}
        self.history = [h for h in self.history if int(h["iteration"]) < iteration] + [row]
        write_history(self.csv_path, self.history)
        log.info("validation @%d: %s", iteration, ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "iteration"))
        return row


def read_history(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "iteration" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(path: Path, rows: list[dict]) -> None:
    tmp = Path(path).with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore", restval="nan")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
