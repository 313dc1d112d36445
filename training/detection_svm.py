"""The paper's face/non-face classifier on `fc_detection` (Section 5.1): a linear SVM, trained as R-CNN
trains its SVMs, on the proposals the pipeline meets.

    python -m training svm --model DIR --work DIR [--export DIR] [--photos-per-set N]
                           [--negatives-per-photo N] [--heldout-photos N] [--data-root DIR] [--config YAML]

1. Features. Selective search (the pipeline's own, core/proposals.py; or, with --proposals ssd / fast+ssd,
   the pipeline's Fast-HyperFace proposals from <model>/proposals) runs over the training photos
   whose faces are all annotated (WIDER train-fit and face_free, as hard-negative mining) and over the
   held-out WIDER photos (train-heldout). A proposal is a face when its IoU with a counted face is
   above iou.detection_positive, background when its IoU with every face (ignored tiny faces
   included) is below iou.detection_negative; the rest is dropped. Training photos add their face
   boxes as positives (as R-CNN does). Background is a seeded sample of `negatives_per_photo`
   proposals per photo. Each photo's fc_detection features (after its ReLU), labels and softmax face
   probability go to <work>/features/<set>/<key>.npz; finished photos are skipped on a resume.
2. Fit. scikit-learn's LinearSVC on the training features (one scalar feature scale, C from a small
   grid chosen by average precision on a salted-hash calibration share of the training photos; the
   rest fits), then Platt's sigmoid on the calibration share's SVM scores.
3. Compare. Region-level average precision of the softmax probability and of the SVM on the
   held-out photos' proposals (the same regions for both).
4. Fold. The SVM and its sigmoid become the deploy net's `detection_score` layer
   (logit_face - logit_background = a * (w . x + b) + c, so `detection_prob`'s face column is the
   calibrated SVM probability): the shipped net stays the paper's, every backend runs it unchanged.
   The model directory written by `--export` records the fit and the comparison in model.json
   (`detection_scorer`); its threshold must be chosen again (`python -m benchmarks threshold`).
"""
from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.metrics.classification import average_precision
from core.config import HyperFaceConfig
from core.errors import HyperFaceError
from core.geometry import box_iou
from core.model_store import load_model, with_layers_replaced
from core.net_io import DETECTION_PROB
from core.records import ImageRecord
from data_prep.readers import read_dataset
from data_prep.readers.common import load_image

log = logging.getLogger(__name__)
FEATURE_BLOB = "fc_detection"       # input of the detection_score layer (after relu_detection, in place)
SCORE_LAYER = "detection_score"
CALIBRATION_SALT = "svm-calibration"


@dataclass(frozen=True)
class SvmSpec:
    """One SVM run; the numbers come from TrainingConfig.svm_* (spec_from_config), flags override."""
    model: Path                          # model directory whose fc_detection features are used
    work: Path                           # features and the fit summary (resumable)
    data_root: Path
    export: Path | None                  # model directory with the folded SVM (None: fit and compare only)
    photos_per_set: int | None           # seeded sample of WIDER train-fit and of face_free (None: all)
    heldout_photos: int                  # WIDER train-heldout photos scored for the comparison
    negatives_per_photo: int
    calibration_share: float             # of the training photos (salted hash): C and the sigmoid
    c_grid: tuple
    positive_weight: float
    seed: int
    proposals: str = "fast"              # "fast", "ssd" or "fast+ssd": the pipeline's proposals of that name


SVM_PROPOSALS = ("fast", "ssd", "fast+ssd")


def spec_from_config(cfg: HyperFaceConfig, model: Path, work: Path, data_root: Path, export: Path | None = None,
                     **overrides) -> SvmSpec:
    """SvmSpec with TrainingConfig's svm_* values, except the `overrides` that are not None."""
    tc = cfg.training
    values = dict(photos_per_set=tc.svm_photos_per_set or None, heldout_photos=tc.svm_heldout_photos,
                  negatives_per_photo=tc.svm_negatives_per_photo, calibration_share=tc.svm_calibration_share,
                  c_grid=tuple(tc.svm_c_grid), positive_weight=tc.svm_positive_weight, seed=tc.seed,
                  proposals=tc.svm_proposals)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SvmSpec(Path(model), Path(work), Path(data_root), export, **values)


@dataclass
class SvmFit:
    weights: np.ndarray                  # (D,) on unscaled features
    bias: float
    platt_a: float
    platt_b: float
    c: float
    feature_scale: float
    calibration_ap: dict = field(default_factory=dict)   # C -> AP on the calibration share


def _key(record: ImageRecord) -> str:
    return f"{zlib.crc32(str(record.path).encode()):08x}_{Path(record.path).stem}"


def label_proposals(boxes: np.ndarray, record: ImageRecord, cfg: HyperFaceConfig) -> np.ndarray:
    """(N,) int8 per proposal: 1 face (IoU > detection_positive with a counted face), 0 background
    (IoU < detection_negative with every face, ignored ones included), -1 neither."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    counted = np.array([f.box for f in record.faces if not f.ignore]).reshape(-1, 4)
    every = np.array([f.box for f in record.faces]).reshape(-1, 4)
    best_counted = box_iou(boxes, counted).max(axis=1) if len(counted) and len(boxes) else np.zeros(len(boxes))
    best_every = box_iou(boxes, every).max(axis=1) if len(every) and len(boxes) else np.zeros(len(boxes))
    labels = np.full(len(boxes), -1, dtype=np.int8)
    labels[best_every < cfg.iou.detection_negative] = 0
    labels[best_counted > cfg.iou.detection_positive] = 1
    return labels


def photo_regions(record: ImageRecord, image: np.ndarray, cfg: HyperFaceConfig, negatives_per_photo: int,
                  add_faces: bool, seed: int, propose=None) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, 4), labels (N,)) of one photo: its face proposals (and face boxes when add_faces), then
    a sample of its background proposals that depends on (seed, photo path) only. propose(image) gives
    the proposals (None: selective search as configured)."""
    if propose is None:
        from core.proposals import selective_search
        boxes = selective_search(image, cfg.selective_search)
    else:
        boxes = propose(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = label_proposals(boxes, record, cfg)
    faces = np.flatnonzero(labels == 1)
    background = np.flatnonzero(labels == 0)
    if len(background) > negatives_per_photo:
        rng = np.random.default_rng([seed, zlib.crc32(str(record.path).encode())])
        background = np.sort(rng.choice(background, size=negatives_per_photo, replace=False))
    parts, part_labels = [boxes[faces], boxes[background]], [np.ones(len(faces)), np.zeros(len(background))]
    if add_faces:
        counted = np.array([f.box for f in record.faces if not f.ignore]).reshape(-1, 4)
        parts.insert(0, counted)
        part_labels.insert(0, np.ones(len(counted)))
    return np.concatenate(parts).reshape(-1, 4), np.concatenate(part_labels).astype(np.int8)


class FeatureNet:
    """fc_detection features and the softmax face probability of boxes, through the pipeline's crop."""

    def __init__(self, model_dir: Path, cfg: HyperFaceConfig):
        from pipeline.backends import make_backend
        self.cfg = cfg
        model = load_model(model_dir)
        self.weights_sha1 = model.weights_sha1
        self.backend = make_backend("onnxruntime", model.prototxt, model.caffemodel, outputs=[DETECTION_PROB, FEATURE_BLOB])

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from pipeline.geometry import make_batch
        feats, probs = [], []
        bs = self.cfg.test.batch_size
        for start in range(0, len(boxes), bs):
            out = self.backend.forward(make_batch(image, boxes[start:start + bs], self.cfg.input.size, self.cfg.input.mean_bgr))
            feats.append(out[FEATURE_BLOB].reshape(len(out[FEATURE_BLOB]), -1))
            probs.append(out[DETECTION_PROB][:, 1])
        if not feats:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
        return np.concatenate(feats), np.concatenate(probs)


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def extract(records: list[ImageRecord], net: FeatureNet, out_dir: Path, cfg: HyperFaceConfig,
            negatives_per_photo: int, add_faces: bool, seed: int, desc: str, progress: bool = True,
            propose=None) -> int:
    """Features of every record not already in out_dir; returns the number of photos written now."""
    from tqdm import tqdm
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in records if not (out_dir / f"{_key(r)}.npz").is_file()]
    for record in tqdm(todo, desc=desc, unit="photo", disable=not progress):
        image = load_image(record.path)
        boxes, labels = photo_regions(record, image, cfg, negatives_per_photo, add_faces, seed, propose)
        feats, probs = net(image, boxes) if len(boxes) else (np.zeros((0, 0)), np.zeros(0))
        _atomic_savez(out_dir / f"{_key(record)}.npz", features=np.asarray(feats, np.float16), labels=labels,
                      softmax=np.asarray(probs, np.float32), boxes=boxes.astype(np.float32),
                      photo=np.array(str(record.path)))
    return len(todo)


def feature_files(folder: Path, records: list[ImageRecord]) -> list[Path]:
    """The feature files of `records` in folder (a folder may also hold photos of an earlier, larger sample)."""
    files = [Path(folder) / f"{_key(r)}.npz" for r in records]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise HyperFaceError(f"{missing[0]}: feature file missing ({len(missing)} of {len(files)}; run the extraction first)")
    return sorted(files)


def load_features(files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features float32 (N, D), labels (N,), softmax (N,), photo index (N,)) of the files, in the given order."""
    feats, labels, soft, photo = [], [], [], []
    if not files:
        raise HyperFaceError("no feature files to load")
    for i, f in enumerate(files):
        with np.load(f) as z:
            if len(z["labels"]) == 0:
                continue
            feats.append(z["features"].astype(np.float32))
            labels.append(z["labels"].astype(np.int64))
            soft.append(z["softmax"])
            photo.append(np.full(len(z["labels"]), i))
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(soft), np.concatenate(photo)


def calibration_mask(photo_index: np.ndarray, share: float) -> np.ndarray:
    """Rows whose photo falls in the calibration share (salted crc32 of the photo index, seedless and stable)."""
    ids = np.unique(photo_index)
    calib = {int(i) for i in ids if zlib.crc32(f"{CALIBRATION_SALT}:{int(i)}".encode()) % 1000 < share * 1000}
    return np.isin(photo_index, list(calib))


def platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of P(face) = sigmoid(a * score + b), fitted by logistic regression (Platt scaling)."""
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(np.asarray(scores, np.float64).reshape(-1, 1), labels)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def fit_svm(feats: np.ndarray, labels: np.ndarray, photo_index: np.ndarray, spec: SvmSpec) -> SvmFit:
    """LinearSVC with C chosen on the calibration share, then Platt's sigmoid on that share."""
    from sklearn.svm import LinearSVC
    keep = labels >= 0
    feats, labels, photo_index = feats[keep], labels[keep], photo_index[keep]
    calib = calibration_mask(photo_index, spec.calibration_share)
    if not (labels[~calib].any() and labels[calib].any() and (labels[~calib] == 0).any()):
        raise HyperFaceError("SVM fit: the fit and calibration shares each need faces and background")
    # one scalar scale (mean feature norm 20, as R-CNN) keeps C's grid meaningful and the fold linear
    scale = 20.0 / max(float(np.linalg.norm(feats, axis=1).mean()), 1e-12)
    x = feats * scale
    best, aps = None, {}
    for c in spec.c_grid:
        svm = LinearSVC(C=c, class_weight={1: spec.positive_weight, 0: 1.0}, dual=False, max_iter=5000)
        svm.fit(x[~calib], labels[~calib])
        aps[str(c)] = average_precision(svm.decision_function(x[calib]), labels[calib] == 1)
        if best is None or aps[str(c)] > aps[str(best[0])]:
            best = (c, svm)
    c, svm = best
    a, b = platt(svm.decision_function(x[calib]), labels[calib])
    return SvmFit(weights=svm.coef_[0] * scale, bias=float(svm.intercept_[0]), platt_a=a, platt_b=b, c=c,
                  feature_scale=scale, calibration_ap=aps)


def svm_probability(fit: SvmFit, feats: np.ndarray) -> np.ndarray:
    z = fit.platt_a * (feats @ fit.weights + fit.bias) + fit.platt_b
    return 1.0 / (1.0 + np.exp(-z))


def fold_into_model(model_dir: Path, fit: SvmFit, out_dir: Path, record: dict) -> Path:
    """A copy of model_dir whose detection_score layer computes the SVM's calibrated probability
    through the net's softmax: logits (0, a * (w . x + b) + c); every other layer is copied as stored.
    The threshold chosen for the softmax scores is dropped (choose it again); the box style is kept."""
    with np.load(Path(model_dir) / "weights_fp16.npz") as npz:
        shape = npz[f"{SCORE_LAYER}#0"].shape if f"{SCORE_LAYER}#0" in npz.files else None
    if shape != (2, len(fit.weights)):
        raise HyperFaceError(f"{model_dir}: {SCORE_LAYER} weights are {shape}, the SVM has {len(fit.weights)} features")
    w = np.zeros(shape, dtype=np.float64)
    w[1] = fit.platt_a * fit.weights
    b = np.array([0.0, fit.platt_a * fit.bias + fit.platt_b])
    return with_layers_replaced(model_dir, out_dir, {SCORE_LAYER: [w, b]},
                                drop_fields=("detection_threshold", "detection_threshold_chosen"),
                                detection_scorer=record)


def training_records(data_root: Path, cfg: HyperFaceConfig, photos_per_set: int | None) -> list[ImageRecord]:
    from training.mining import mining_records
    return mining_records(data_root, cfg, photos_per_set)


def heldout_records(data_root: Path, cfg: HyperFaceConfig, n: int) -> list[ImageRecord]:
    return list(read_dataset("wider", Path(data_root) / "wider_train", split="train-heldout", config=cfg))[:n]


def proposer(spec: SvmSpec, cfg: HyperFaceConfig):
    """propose(image) for spec.proposals: None for selective search (photo_regions' own), else the
    pipeline's proposals of that name (the SSD net of <model>/proposals)."""
    if spec.proposals not in SVM_PROPOSALS:
        raise HyperFaceError(f"SVM proposals {spec.proposals!r}: choose one of {SVM_PROPOSALS}")
    if spec.proposals == "fast":
        return None
    from pipeline.detector import HyperFace
    return HyperFace(spec.model, proposals=spec.proposals, config=cfg).propose


def run(spec: SvmSpec, cfg: HyperFaceConfig, progress: bool = True) -> dict:
    """Extract (resumable), fit, compare on held-out proposals, and fold into spec.export when given."""
    work = Path(spec.work)
    propose = proposer(spec, cfg)
    net = FeatureNet(spec.model, cfg)
    # one feature folder per kind of proposals, so a work folder never mixes two
    features = work / ("features" if spec.proposals == "fast" else f"features_{spec.proposals}")
    train_dir, heldout_dir = features / "train", features / "heldout"
    train_records = training_records(spec.data_root, cfg, spec.photos_per_set)
    held_records = heldout_records(spec.data_root, cfg, spec.heldout_photos)
    extract(train_records, net, train_dir, cfg, spec.negatives_per_photo, True, spec.seed,
            "SVM features (training photos)", progress, propose)
    extract(held_records, net, heldout_dir, cfg, spec.negatives_per_photo, False, spec.seed,
            "SVM features (held-out photos)", progress, propose)
    feats, labels, _, photo = load_features(feature_files(train_dir, train_records))
    fit = fit_svm(feats, labels, photo, spec)
    h_feats, h_labels, h_soft, _ = load_features(feature_files(heldout_dir, held_records))
    keep = h_labels >= 0
    heldout = {"photos": len(held_records), "faces": int((h_labels[keep] == 1).sum()),
               "background": int((h_labels[keep] == 0).sum()),
               "ap_softmax": round(average_precision(h_soft[keep], h_labels[keep] == 1), 4),
               "ap_svm": round(average_precision(svm_probability(fit, h_feats[keep]), h_labels[keep] == 1), 4)}
    record = {"kind": "linear_svm", "features": FEATURE_BLOB, "source_model": str(Path(spec.model).resolve()),
              "source_weights_sha1": net.weights_sha1,
              "C": fit.c, "feature_scale": round(fit.feature_scale, 6), "positive_weight": spec.positive_weight,
              "platt": [round(fit.platt_a, 6), round(fit.platt_b, 6)],
              "calibration_ap": {k: round(v, 4) for k, v in fit.calibration_ap.items()},
              "proposals": spec.proposals,
              "training": {"photos": len(train_records), "faces": int((labels == 1).sum()),
                           "background": int((labels == 0).sum()), "negatives_per_photo": spec.negatives_per_photo},
              "heldout_regions": heldout,
              "spec": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()}}
    (work / "svm.json").write_text(json.dumps(record, indent=2) + "\n")
    np.savez(work / "svm_weights.npz", weights=fit.weights, bias=fit.bias, platt=[fit.platt_a, fit.platt_b])
    if spec.export is not None:
        fold_into_model(spec.model, fit, spec.export, record)
    log.info("SVM on %s: held-out region AP softmax %.4f, SVM %.4f", FEATURE_BLOB, heldout["ap_softmax"], heldout["ap_svm"])
    return record
