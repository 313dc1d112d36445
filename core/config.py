"""The one configuration of HyperFace, read by data_prep, the nets' generator scripts, pipeline and
benchmarks. Defaults follow the paper; `config/hyperface.yaml` (or a user's YAML with the same keys)
overrides them. The objects are frozen: a stage that needs other values loads another file instead
of mutating a global.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "config" / "hyperface.yaml"
# The folder holding the datasets (layout: ../shared/data/README.md): every default data path of
# data_prep, training, pipeline, benchmarks and tests is below it. Make passes the same folder as DATA.
# HYPERFACE_DATA points a checkout elsewhere at the folder; a local clone of a checkout that sits
# beside shared/ (`git clone /work/main /tmp/x`, as CI does) finds it beside its origin.
def _data_root() -> Path:
    if os.environ.get("HYPERFACE_DATA"):
        return Path(os.environ["HYPERFACE_DATA"]).expanduser()
    beside = REPO_ROOT.parent / "shared" / "data"
    if beside.is_dir():
        return beside
    import subprocess
    try:
        origin = subprocess.run(["git", "-C", str(REPO_ROOT), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    from_origin = Path(origin).parent / "shared" / "data" if origin and Path(origin).is_dir() else None
    return from_origin if from_origin is not None and from_origin.is_dir() else beside


DATA_ROOT = _data_root()


@dataclass(frozen=True)
class IoUThresholds:
    detection_positive: float = 0.5   # IoU > this: face (Section 3.2)
    detection_negative: float = 0.35  # IoU < this: non-face; in between the region is dropped
    landmarks_min: float = 0.35       # landmarks + visibility labelled above this IoU
    pose_gender_min: float = 0.5      # pose + gender labelled above this IoU


@dataclass(frozen=True)
class LossWeights:
    """lambda_t of equation 6, as the committed train_val prototxts state them in their loss_weight
    fields (what Caffe trains with). These values document them; tests/test_nets.py checks that they
    agree with config/hyperface.yaml, so editing one without the other fails that test."""
    detection: float = 1.0
    landmarks: float = 5.0
    visibility: float = 0.5
    pose: float = 5.0
    gender: float = 2.0
    bbox: float = 1.0         # R-CNN Face box regression (Section 4; not part of eq. 6)
    landmarks68: float = 5.0  # iBUG-68 head of Section 5.2, weighted like the 21 landmarks


@dataclass(frozen=True)
class InputConfig:
    size: int = 227                                  # AlexNet input side (Section 3.1)
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)  # ImageNet BGR means, as Caffe's AlexNet


@dataclass(frozen=True)
class SamplingConfig:
    """How data_prep turns proposals into region samples (Section 3.2)."""
    negatives_per_positive: float = 3.0  # the paper leaves the ratio open; 1:3 as in R-CNN minibatches
    max_positives_per_face: int = 8      # jittered + proposal positives kept per face
    max_negatives_per_image: int = 24
    jitter_per_face: int = 6             # jittered copies of each ground-truth box
    jitter_scale: float = 0.15           # std of the jitter, relative to box size
    flip: bool = True                    # horizontal flip augmentation
    seed: int = 0
    min_face_side: int = 20              # faces smaller than this (px) are "ignore" regions, never positives
    aflw_test_images: int = 1000         # AFLW images held out for testing (Section 5)
    aflw_crops_test_images: int = 1000   # aflw_crops held out (core/splits.py); benchmarks score these
    utkface_test_images: int = 500       # UTKFace chips held out for the gender benchmark
    wider_train_test_images: int = 150   # WIDER training photos held out (split train-heldout): validation + detection benchmark


@dataclass(frozen=True)
class SelectiveSearchConfig:
    mode: str = "fast"           # "fast" (~2000 boxes) or "quality" (~10000), OpenCV ximgproc
    max_side: int = 500          # images are resized so the longer side is at most this before SS
    # "fast" mode's graph segmentations: k = fast_base_k, fast_base_k + fast_inc_k (OpenCV's defaults
    # 150, 150). 75, 75 makes smaller segments: held-out recall at IoU 0.5 (faces >= 30 px) 87.1 -> 96.5 %
    # on the 40 photos it was chosen on, 80.4 -> 91.6 % on the other 120, ~1.5x the boxes (README)
    fast_base_k: int = 75
    fast_inc_k: int = 75
    min_box_side: int = 20       # proposals smaller than this (pixels, original image) are dropped
    # Regions that cannot overlap a face by IoU > match_iou are dropped (core/proposals.can_hold_face;
    # match_iou 0 turns this off): faces of width and height >= min_face_side (face-eval's smallest
    # counted face) and width/height in [face_aspect_min, face_aspect_max]. The ratio bounds are the
    # 0.1 / 99.9 percentiles, rounded outward, of the training boxes: WIDER train faces >= 20 px
    # without the 150 held-out photos (2965 faces: 0.333 / 1.791, min 0.29, max 2.55) and the HELEN
    # trainset 68-point boxes (870: all in 0.745-1.403); regions may be 2.25x beyond them at IoU 0.5.
    match_iou: float = 0.5
    min_face_side: float = 30.0
    face_aspect_min: float = 0.33
    face_aspect_max: float = 1.8
    merge_iou: float = 0.95      # near-duplicates: a box absorbs later ones with IoU >= this (1.0: none merged);
                                 # 0.9 cost 2 points of recall at IoU 0.7 (python -m benchmarks proposals), 0.95 0.4
    max_proposals: int = 4000    # a bound, not a selection: the canonical order puts boxes with few neighbours
                                 # last, so a cap of 2000 dropped isolated (often small-face) boxes: held-out
                                 # recall 91.6 -> 95.3 % on the check photos with the finer k (README)
    max_proposals_quality: int = 10000  # cap in "quality" mode (Section 3.3: ~10000 boxes)


@dataclass(frozen=True)
class TestConfig:
    """The test procedure of Section 3.3."""
    detection_threshold: float = 0.5   # face probability to keep a region
    visibility_threshold: float = 0.5  # a landmark with lower predicted visibility is invisible
    irp_iterations: int = 1            # T of Algorithm 1
    box_style: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # tx, ty, sx, sy applied to every output
                                       # box (face-eval's box-style calibration); a model's model.json value wins
    pose_aware_face_box: bool = True   # FaceRectCalculator fits the mean shape of the predicted yaw (as the paper's
                                       # fits a 3-D face with the pose); False: one frontal shape, which puts a
                                       # profile's box off the face (aflw_crops test, true points, |yaw| 60-90:
                                       # IoU 0.57 vs 0.87; README)
    irp_suppress_first: bool = True    # IRP only from the regions a first NMS (lnms_iou, on their landmark boxes)
                                       # keeps: one seed per face instead of every region above threshold
    lnms_iou: float = 0.5              # NMS overlap in Landmark-based NMS (Algorithm 2)
    lnms_top_k: int = 5                # k of Algorithm 2
    lnms_suppress_output: bool = True  # after L-NMS, drop a face whose output box overlaps a better face's by
                                       # IoU > lnms_iou: the box style and the SSD box fusion move boxes, so
                                       # two clusters can end up on one face (README); False: Algorithm 2 as is
    flip_rescore: bool = True          # each face's score becomes the mean of its region's score (the best of its
                                       # L-NMS cluster) and that region's score in the left-right mirrored photo
                                       # (test-time flip: one more forward per face); a face then under
                                       # detection_threshold is dropped. Held-out WIDER photos 31-150, AP at
                                       # floor 0.05: 89.6 -> 89.9 %; False: the paper's score (README)
    nms_iou: float = 0.3               # plain NMS of the R-CNN Face baseline
    batch_size: int = 32
    proposals: str = "ssd"             # default proposals of the CLI, API, demo and benchmarks: "fast"/"quality"
                                       # selective search, "ssd" (Fast-HyperFace) or "fast+ssd"; an ssd default
                                       # falls back to "fast" (one log line) for a model folder without proposals/.
                                       # ssd: held-out AP within 1 point of fast selective search, 5x faster (README)
    ssd_threshold: float = 0.01        # Fast-HyperFace: SSD proposal score kept
    ssd_max_proposals: int = 150       # Fast-HyperFace: at most this many SSD proposals per image
    ssd_pre_nms_top_k: int = 400       # Fast-HyperFace: the best this many SSD boxes of each scale go into its NMS
    ssd_nms_iou: float = 0.85          # Fast-HyperFace: NMS of the SSD boxes (1.0: none; with ssd_merge "score"
                                       # over all scales at once); overrides the deploy net's DetectionOutput, as
                                       # do the three settings above. 150 boxes after NMS 0.85 recall as many
                                       # held-out faces as 200 without (89.0 vs 89.6 %) at 3/4 of the forward time
    ssd_scales: tuple[int, ...] = (512, 1024, 2048)  # Fast-HyperFace: canvas sides the photo is fitted into
                                       # (aspect kept), the net run at each, ssd_max_proposals shared; (): the net's
                                       # own 512 warp. First net, 160 held-out photos, recall at 200 boxes: () 43.8 %,
                                       # (1024,) 63.2 %, (1536,) 70.2 %, (2048,) 71.6 %, (1024, 2048) 80.9 % (quota);
                                       # the 512 canvas finds faces larger than the largest prior at 1024
    ssd_flip_proposals: bool = True    # Fast-HyperFace: also run the SSD on the mirrored photo and take both
                                       # ranked lists in turn (near-duplicates at IoU > ssd_flip_merge_iou
                                       # dropped, ssd_max_proposals in all; README)
    ssd_flip_merge_iou: float = 0.7    # 0.7: recall 96.5 % with 138 boxes per held-out photo; 0.5: 92.9 %
    ssd_merge: str = "score"           # Fast-HyperFace: "score": the best ssd_max_proposals boxes of all scales by
                                       # score; "quota": ssd_max_proposals / len(ssd_scales) from each (README)
    ssd_box_weight: float = 0.5        # Fast-HyperFace, L-NMS: a face's box is this much the median of its
                                       # cluster's SSD proposal boxes (the SSD regresses WIDER-style face boxes)
                                       # and the rest its landmark-fitted box, before box_style; 0: the paper's
                                       # landmark box alone. Held-out WIDER photos 31-150: 23 of 26 false
                                       # positives were landmark boxes off a face by IoU 0.1-0.5 (README)
    max_image_side: int = 4096         # larger images are downscaled for detection, results mapped back


@dataclass(frozen=True)
class BenchmarkConfig:
    """Evaluation protocols of Section 5 (benchmarks/)."""
    eval_iou: float = 0.5                  # IoU > this: a detection matches a face (face-eval, FDDB discrete, landmark/pose matching)
    face_eval_min_gt_side: float = 30.0    # face-eval: faces with width or height under this are "ignore"; detections under sqrt(0.5*s*s) dropped
    face_eval_calibration_iters: int = 1   # face-eval box-style calibration rounds (reported separately)
    fddb_fp_at: int = 1000                 # FDDB: report TPR at this many false positives
    yaw_group_edges: tuple[float, float, float, float] = (0.0, 30.0, 60.0, 90.0)  # AFLW |yaw| groups (degrees)
    aflw_subset_size: int = 450            # AFLW balanced subset, one third per yaw group
    seed: int = 0                          # sampling of the AFLW subset
    ced_max_landmarks: float = 0.15        # x range of landmark CED plots (normalised error)
    ced_max_pose_deg: float = 30.0         # x range of pose CED plots (degrees)


@dataclass(frozen=True)
class TrainingConfig:
    """How HyperFace training draws its batches (training/sampler.py) and schedules a piece (Section 4).
    Make variables and `python -m training` flags override these; nothing else holds a default."""
    batch_size: int = 32
    fg_fraction: float = 0.25          # faces per batch (IoU > 0.5), as R-CNN / py-faster-rcnn minibatches
    partial_fraction: float = 0.125    # 0.35 < IoU <= 0.5 regions: landmarks + visibility only, detection ignored
    near_miss_fraction: float = 0.35   # of the background: IoU in [near_miss_min_iou, 0.35) with one face
    near_miss_min_iou: float = 0.1
    mined_fraction: float = 0.3        # of the background: mined hard negatives (training/mining.py), when any
    face_free_fraction: float = 0.5    # of the random background: face-free photos (the rest: WIDER photos)
    min_face_side: int = 20            # photo faces smaller than this never become positives
    min_region_side: int = 20          # random background regions at least this side (px)
    positive_jitter: float = 0.12      # std of the centre shift and log-scale jitter of positive boxes
    colour_jitter: float = 0.2         # contrast x (1 +- this), brightness +- this * 64
    flip: bool = True                  # mirror half of the samples (labels flipped with data_prep.regions)
    # Resolution jitter (all kinds alike): most misses of the held-out WIDER photos were 30-60 px faces
    # scored below the threshold, while most training faces (aflw_crops, HELEN) are 100+ px. This share
    # of the crops is shrunk to a side log-uniform in low_res_sides and warped back up to 227.
    low_res_fraction: float = 0.3
    low_res_sides: tuple[int, int] = (24, 64)
    source_weights: dict = field(default_factory=lambda: {  # share of the faces drawn from each set
        "aflw_crops": 0.4, "wider": 0.25, "helen": 0.2, "utkface": 0.15})
    base_lr: float = 0.001             # fine-tuning rate of a piece (0.01 diverged from scratch, model.json)
    lr_power: float = 1.0              # "poly" decay to 0 over the piece
    # A piece that fine-tunes a net trained with BatchNorm (folded at export) sees conv1 weights ~1e-4 in
    # size (raw pixels in, normalised out): one SGD step at 1e-3 on them sent every loss from 0.03 to ~1
    # and the piece diverged by iteration 6. conv1 stays fixed, as py-faster-rcnn keeps its first layers.
    frozen_layers: tuple[str, ...] = ("conv1",)
    clip_gradients: float = 20.0       # L2 norm of all gradients, as the GPU pieces clip (grad_clip_norm)
    iterations: int = 4000             # iterations of one piece (about 1 h 15 on 2 cores)
    snapshot_every: int = 250
    val_every: int = 500               # held-out validation (training/validation.py) every this many iterations
    # the from-scratch chain (make train-hyperface-scratch): data_prep mix -> R-CNN Face -> surgery -> HyperFace
    scratch_mix: str = "aflw_crops=2500,wider=300,helen=400,utkface=1000"
    scratch_rcnn_iterations: int = 1000
    scratch_hyperface_iterations: int = 2100
    scratch_rcnn_lr: float = 0.01       # from scratch R-CNN Face learns at 0.01
    scratch_hyperface_lr: float = 0.002  # HyperFace diverged at 0.01 after ~800 iterations (model.json, piece 0)
    # the linear SVM on fc_detection (training/detection_svm.py, Section 5.1), trained as R-CNN's SVMs
    svm_photos_per_set: int = 200      # seeded sample of WIDER train-fit and of face_free photos (0: all)
    svm_heldout_photos: int = 150      # WIDER train-heldout photos whose proposals compare SVM and softmax
    svm_negatives_per_photo: int = 300  # seeded sample of each photo's background proposals
    svm_proposals: str = "fast"        # the proposals whose regions train and compare the SVM: "fast" (selective
                                       # search), "ssd" (the model's Fast-HyperFace net) or "fast+ssd" (both)
    svm_calibration_share: float = 0.2  # of the training photos (salted hash): choose C, fit Platt's sigmoid
    svm_c_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)   # 1e-4 best on the calibration share (AP 0.933; 1e-5 0.924, 1e-2 0.922)
    svm_positive_weight: float = 2.0   # R-CNN's SVMs weigh positives 2:1
    val_wider_photos: int = 150        # validation photos: WIDER train-heldout (all 150), HELEN testset, afw_sample
    val_helen_photos: int = 330
    val_landmark_crops: int = 300      # aflw_crops test split crops scored for NME / visibility / yaw
    val_gender_crops: int = 300        # UTKFace test split chips scored for gender
    seed: int = 0


@dataclass(frozen=True)
class HyperFaceConfig:
    iou: IoUThresholds = field(default_factory=IoUThresholds)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    input: InputConfig = field(default_factory=InputConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    selective_search: SelectiveSearchConfig = field(default_factory=SelectiveSearchConfig)
    test: TestConfig = field(default_factory=TestConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


def _build(cls, values: dict[str, Any], where: str):
    """Instantiate dataclass `cls` from a YAML mapping, rejecting unknown keys by name."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else known[name].default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        elif isinstance(default, dict):
            kwargs[name] = {str(k): float(v) for k, v in dict(value).items()}
        else:
            kwargs[name] = _scalar(default, value, f"{where}.{name}")
    return cls(**kwargs)


def _scalar(default, value, where: str):
    """`value` as the type of `default`, or ValueError naming the key (no silent bool("false") or int(2.7))."""
    kind = type(default)
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
          if kind is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, str) if kind is str else True)
    if not ok:
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")
    return kind(value)


# Allowed values, checked when a config loads. Fractions and IoUs lie in [0, 1]; sizes, counts and
# batch sizes are >= 1; every other number of these sections is >= 0.
_UNIT_INTERVAL = {"iou.detection_positive", "iou.detection_negative", "iou.landmarks_min", "iou.pose_gender_min",
                  "test.detection_threshold", "test.visibility_threshold", "test.lnms_iou", "test.nms_iou",
                  "test.ssd_threshold", "test.ssd_nms_iou", "test.ssd_box_weight", "test.ssd_flip_merge_iou", "benchmark.eval_iou"}
_AT_LEAST_ONE = {"input.size", "test.batch_size", "test.lnms_top_k", "test.ssd_max_proposals", "test.ssd_pre_nms_top_k", "test.max_image_side",
                 "selective_search.max_side", "selective_search.max_proposals",
                 "selective_search.max_proposals_quality", "benchmark.fddb_fp_at"}
_CHOICES = {"selective_search.mode": ("fast", "quality"), "test.proposals": ("fast", "quality", "ssd", "fast+ssd"),
            "test.ssd_merge": ("score", "quota")}
_CHECKED_SECTIONS = ("iou", "loss_weights", "input", "sampling", "selective_search", "test", "benchmark")


def validate_config(cfg: HyperFaceConfig, where: str) -> HyperFaceConfig:
    """cfg, or ValueError '<file>: <section.key> = <value>: <rule>' for the first value out of range."""
    import math
    for section in _CHECKED_SECTIONS:
        values = getattr(cfg, section)
        for f in dataclasses.fields(values):
            key, value = f"{section}.{f.name}", getattr(values, f.name)
            problem = None
            if key in _CHOICES:
                problem = None if value in _CHOICES[key] else f"must be one of {_CHOICES[key]}"
            elif isinstance(value, bool) or isinstance(value, str):
                continue
            elif isinstance(value, tuple):
                if key == "input.mean_bgr" and len(value) != 3:
                    problem = "must be 3 numbers (B, G, R)"
                elif key == "benchmark.yaw_group_edges" and list(value) != sorted(value):
                    problem = "must be increasing"
                elif not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
                    problem = "must be finite numbers"
            elif not math.isfinite(value):
                problem = "must be a finite number"
            elif key in _UNIT_INTERVAL:
                problem = None if 0.0 <= value <= 1.0 else "must lie in [0, 1]"
            elif key in _AT_LEAST_ONE:
                problem = None if value >= 1 else "must be >= 1"
            elif value < 0:
                problem = "must be >= 0"
            if problem:
                raise ValueError(f"{where}: {key} = {value!r} {problem}")
    if cfg.iou.detection_negative > cfg.iou.detection_positive:
        raise ValueError(f"{where}: iou.detection_negative = {cfg.iou.detection_negative} must not exceed "
                         f"iou.detection_positive = {cfg.iou.detection_positive}")
    return cfg


def load_config(path: str | Path | None = None) -> HyperFaceConfig:
    """Load the config (defaults overridden by `path`, or by config/hyperface.yaml when None)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    return validate_config(_build(HyperFaceConfig, values, str(path)), str(path))
