"""The one-call API: HyperFace(model_dir, ...).detect(image_bgr) -> list[Face] (Section 3.3)."""
from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core import net_io
from core.config import HyperFaceConfig, load_config
from core.face import Face
from pipeline.backends import DEFAULT_BACKEND, input_shape, make_backend
from pipeline.errors import ModelError
from pipeline.geometry import make_batch, mirror_boxes, nms
from pipeline.images import to_bgr8
from pipeline.model_store import load_model
from pipeline.postprocess import Regions, decode_outputs, iterative_region_proposals, landmark_nms, nms_faces, restyle_boxes
from pipeline.proposals import SS_MODES, SSDProposer, selective_search

log = logging.getLogger(__name__)
# "fast+ssd": the SSD net's proposals followed by fast selective search's (recall of both; both costs)
PROPOSALS = SS_MODES + ("ssd", "fast+ssd")
POSTS = ("lnms", "nms")
SSD_SUBDIR = "proposals"  # <model_dir>/proposals/ holds the SSD proposal model directory for proposals="ssd"


def resolve_proposals(proposals: str | None, cfg: HyperFaceConfig, model_dir: str | Path,
                      ssd_model_dir: str | Path | None = None) -> str:
    """The proposal mode a run uses: `proposals` when given, else the config's test.proposals. A default
    that needs the SSD net falls back to fast selective search (one log line) when the model folder has
    no proposals/ and no ssd_model_dir is given; an explicit request for it does not (load_model says
    what is missing)."""
    if proposals is not None:
        if proposals not in PROPOSALS:
            raise ValueError(f"unknown proposals {proposals!r}; choose one of {PROPOSALS}")
        return proposals
    default = cfg.test.proposals
    if "ssd" in default and ssd_model_dir is None and not (Path(model_dir) / SSD_SUBDIR).is_dir():
        log.info("%s has no %s/ (Fast-HyperFace proposal net): using fast selective search", model_dir, SSD_SUBDIR)
        return "fast"
    return default


class HyperFace:
    """Face detection, landmarks (AFLW-21), visibility, pose and gender from one deploy net.

    model_dir: a model directory (pipeline/model_store.py). backend: one of pipeline.backends.BACKENDS,
    default the fastest installed: "openvino" (bf16 on CPUs with AMX / AVX512_BF16; the SSD proposal net
    in fp32, ssd_backend), "onnxruntime", "opencv" (OpenCV DNN); "caffe" (pycaffe) is the reference. proposals: "fast" / "quality" selective search, "ssd" (Fast-HyperFace; the SSD model
    directory is ssd_model_dir or <model_dir>/proposals) or "fast+ssd" (both, the SSD's first); None: the
    config's test.proposals (resolve_proposals). post: "lnms" (Algorithm 2) or "nms" (plain
    NMS + box regression when the net has bbox_deltas, the R-CNN Face baseline). irp_iterations: T of
    Algorithm 1 (None: config value; forced to 0 for nets without landmarks). config: a
    HyperFaceConfig or a YAML path (None: config/hyperface.yaml). detection_threshold: face
    probability a region needs (None: the threshold chosen on held-out data and recorded in the
    model's model.json, else the config's test.detection_threshold). The output boxes get the box
    style (test.box_style: shift and scale) recorded in model.json next to the threshold, else the config's;
    box_style: (tx, ty, sx, sy) instead of both ((0, 0, 1, 1): the landmark-fitted boxes as L-NMS gives them,
    which is what a box style is calibrated from, with test.ssd_box_weight 0). With Fast-HyperFace
    proposals, L-NMS then averages each styled box with its cluster's SSD boxes (test.ssd_box_weight).
    """

    def __init__(self, model_dir: str | Path, backend: str = DEFAULT_BACKEND, proposals: str | None = None,
                 post: str = "lnms", irp_iterations: int | None = None, config: HyperFaceConfig | str | Path | None = None,
                 ssd_model_dir: str | Path | None = None, detection_threshold: float | None = None,
                 box_style: tuple[float, float, float, float] | None = None):
        self.cfg = config if isinstance(config, HyperFaceConfig) else load_config(config)
        proposals = resolve_proposals(proposals, self.cfg, model_dir, ssd_model_dir)
        if post not in POSTS:
            raise ValueError(f"unknown post-processing {post!r}; choose one of {POSTS}")
        self.model = load_model(model_dir)
        self._check_input()
        threshold = detection_threshold if detection_threshold is not None else self.model.meta.get("detection_threshold")
        if threshold is not None:
            if not 0.0 <= float(threshold) <= 1.0:
                raise ValueError(f"detection_threshold must be in [0, 1], got {threshold!r}")
            self.cfg = dataclasses.replace(self.cfg, test=dataclasses.replace(self.cfg.test, detection_threshold=float(threshold)))
        style = self.model.meta.get("box_style") if box_style is None else box_style
        if style is not None:
            if len(style) != 4 or not all(np.isfinite(style)) or min(style[2:]) <= 0:
                where = self.model.model_dir / "model.json" if box_style is None else "box_style"
                raise ModelError(where, f"box_style must be [tx, ty, sx > 0, sy > 0], got {style}")
            self.cfg = dataclasses.replace(self.cfg, test=dataclasses.replace(self.cfg.test, box_style=tuple(float(v) for v in style)))
        self.backend = make_backend(backend, self.model.prototxt, self.model.caffemodel)
        has_landmarks = net_io.LANDMARKS in self.backend.outputs
        if net_io.DETECTION_PROB not in self.backend.outputs:
            raise ModelError(self.model.prototxt, f"the net has no {net_io.DETECTION_PROB!r} output")
        if post == "lnms" and not has_landmarks:
            raise ModelError(self.model.prototxt, "post='lnms' needs a 'landmarks' output; use post='nms'")
        self.proposals, self.post = proposals, post
        default_t = self.cfg.test.irp_iterations if has_landmarks else 0
        if irp_iterations is not None and (isinstance(irp_iterations, bool) or int(irp_iterations) != irp_iterations
                                           or irp_iterations < 0):
            raise ValueError(f"irp_iterations must be a whole number >= 0, got {irp_iterations!r}")
        self.irp_iterations = default_t if irp_iterations is None else int(irp_iterations)
        if self.irp_iterations and not has_landmarks:
            raise ModelError(self.model.prototxt, "IRP needs a 'landmarks' output; use irp_iterations=0")
        self.ssd = self.ssd_model = None
        if proposals in ("ssd", "fast+ssd"):
            ssd_dir = Path(ssd_model_dir) if ssd_model_dir else self.model.model_dir / SSD_SUBDIR
            self.ssd_model = load_model(ssd_dir)
            self.ssd = SSDProposer(self.ssd_model, ssd_backend(backend), self.cfg.input, self.cfg.test)
        self.last_timings: dict[str, float] = {}
        self.last_evaluated_boxes = np.zeros((0, 4))
        self.last_regions = Regions.empty()
        self.last_ssd_boxes = np.zeros((0, 4))

    def _check_input(self) -> None:
        _, channels, h, w = input_shape(self.model.prototxt)
        size = self.cfg.input.size
        if (channels, h, w) != (3, size, size):
            raise ModelError(self.model.prototxt, f"input is {channels}x{h}x{w}, config expects 3x{size}x{size}")
        meta_input = self.model.meta.get("input")
        if meta_input and (meta_input.get("size") != size or
                           tuple(float(v) for v in meta_input.get("mean_bgr", ())) != tuple(self.cfg.input.mean_bgr)):
            raise ModelError(self.model.model_dir / "model.json",
                             f"trained with input {meta_input}, config has size {size} mean {self.cfg.input.mean_bgr}")

    def propose(self, image: np.ndarray) -> np.ndarray:
        """Proposal boxes (n, 4) for a uint8 BGR image."""
        self.last_ssd_boxes = np.zeros((0, 4))
        if self.proposals == "ssd":
            self.last_ssd_boxes = self.ssd_boxes(image)
            return self.last_ssd_boxes
        if self.proposals == "fast+ssd":
            self.last_ssd_boxes = self.ssd_boxes(image)
            return np.concatenate([self.last_ssd_boxes, selective_search(image, self.cfg.selective_search, "fast")])
        return selective_search(image, self.cfg.selective_search, self.proposals)

    def ssd_boxes(self, image: np.ndarray) -> np.ndarray:
        """The Fast-HyperFace proposals; with test.ssd_flip_proposals also those of the mirrored photo,
        mirrored back and merged in rank order (interleave_unique)."""
        boxes = self.ssd(image)
        test = self.cfg.test
        if not test.ssd_flip_proposals:
            return boxes
        mirrored = mirror_boxes(self.ssd(np.ascontiguousarray(image[:, ::-1])), image.shape[1])
        return interleave_unique(boxes, mirrored, test.ssd_flip_merge_iou, test.ssd_max_proposals)

    def evaluate(self, image: np.ndarray, boxes: np.ndarray) -> Regions:
        """Forward every box through the net in batches of test.batch_size and decode (no threshold).

        The crops of the next batch are made in a second thread while the net runs on this one
        (cv2 and the backends release the GIL); last_timings: "crop" (seconds spent cropping, in
        that thread), "forward" (seconds in the net), "evaluate" (wall time of both)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return Regions.empty()
        bs = self.cfg.test.batch_size
        chunks = [boxes[start:start + bs] for start in range(0, len(boxes), bs)]
        timings = self.last_timings

        def crop(chunk: np.ndarray) -> np.ndarray:
            t = time.perf_counter()
            batch = make_batch(image, chunk, self.cfg.input.size, self.cfg.input.mean_bgr)
            timings["crop"] = timings.get("crop", 0.0) + time.perf_counter() - t
            return batch

        parts = []
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(crop, chunks[0])
            for k, chunk in enumerate(chunks):
                batch = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(crop, chunks[k + 1])
                t = time.perf_counter()
                outputs = self.backend.forward(batch)
                timings["forward"] = timings.get("forward", 0.0) + time.perf_counter() - t
                parts.append(decode_outputs(outputs, chunk))
        timings["evaluate"] = timings.get("evaluate", 0.0) + time.perf_counter() - t0
        timings["regions"] = timings.get("regions", 0) + len(boxes)
        return Regions.concat(parts)

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        """Faces in a BGR image (gray, BGRA, 16-bit and float are converted), best score first.
        Anything that is not an image (None, an empty array, a 0x0x3 image, other shapes or pixel
        types) raises pipeline.errors.BadImageError saying what was wrong."""
        return self.detect_variants(image_bgr, [(self.post, self.irp_iterations)])[0]

    def detect_variants(self, image_bgr: np.ndarray, variants: list[tuple[str, int]]) -> list[list[Face]]:
        """detect() for several (post, irp_iterations) settings of one image: the proposals are made
        once and every set of boxes is forwarded once (the ablation's variants share them)."""
        image = to_bgr8(image_bgr, "<array>", [])  # BadImageError for None, empty or non-image arrays
        self.last_timings = {}
        t0 = time.perf_counter()
        boxes = self.propose(image)
        t1 = time.perf_counter()
        self.last_timings["proposals"] = t1 - t0
        self.last_timings["num_proposals"] = len(boxes)
        test = self.cfg.test
        memo: dict[bytes, Regions] = {}

        def evaluate(b: np.ndarray) -> Regions:
            key = np.ascontiguousarray(b, dtype=np.float64).tobytes()
            if key not in memo:
                memo[key] = self.evaluate(image, b)
            return memo[key]

        results = []
        for post, irp in variants:
            if post not in POSTS:
                raise ValueError(f"unknown post-processing {post!r}; choose one of {POSTS}")
            regions = iterative_region_proposals(boxes, evaluate, test, irp)
            t2 = time.perf_counter()
            if post == "lnms":  # styled boxes, fused with the SSD's where it proposed them
                faces = landmark_nms(regions, test, rows_in(regions.boxes, self.last_ssd_boxes))
            else:
                faces = nms_faces(regions, test)
            if post != "lnms" and tuple(test.box_style) != (0.0, 0.0, 1.0, 1.0) and faces:
                # the style maps landmark-fitted (AFLW-crop) boxes; an SSD proposal already is a face box
                boxes_found = np.array([f.box for f in faces], dtype=np.float64)
                styled = restyle_boxes(boxes_found, test.box_style)
                for face, box, is_ssd in zip(faces, styled, rows_in(boxes_found, self.last_ssd_boxes)):
                    if not is_ssd:
                        face.box = box
            if test.flip_rescore:
                faces = self.flip_rescore(image, faces)
            results.append(faces)
            self.last_timings["post"] = self.last_timings.get("post", 0.0) + time.perf_counter() - t2
        self.last_timings["total"] = time.perf_counter() - t0
        # every region the net saw with its outputs, proposals first, then IRP's (the proposal benchmark's
        # recall after IRP, benchmarks/miss_analysis.py's causes of missed faces)
        self.last_regions = Regions.concat(list(memo.values())) if memo else Regions.empty()
        self.last_evaluated_boxes = self.last_regions.boxes
        return results

    def flip_rescore(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """test.flip_rescore: each face's score becomes the mean of its score and the net's score of its
        region (Face.region) in the left-right mirrored image, i.e. of the mirrored crop; faces under the
        detection threshold afterwards are dropped, the rest come out best first (stable). Faces without
        a region keep their score."""
        rescored = [f for f in faces if f.region is not None]
        if not rescored:
            return faces
        mirrored = np.ascontiguousarray(image[:, ::-1])
        boxes = mirror_boxes(np.array([f.region for f in rescored]), image.shape[1])
        for face, score in zip(rescored, self.evaluate(mirrored, boxes).scores):
            face.score = (face.score + float(score)) / 2
        kept = [f for f in faces if f.score >= self.cfg.test.detection_threshold]
        return sorted(kept, key=lambda f: -f.score)


def ssd_backend(backend: str) -> str:
    """The backend of the SSD proposal net for HyperFace's `backend`: the same, except that OpenVINO runs
    it in fp32. Its box regression in bf16 lost 0.4-0.5 points of held-out AP (150 WIDER photos), the
    HyperFace net in bf16 none (README "Speed")."""
    return "openvino-fp32" if backend == "openvino" else backend


def interleave_unique(first: np.ndarray, second: np.ndarray, merge_iou: float, cap: int) -> np.ndarray:
    """Boxes of two ranked lists taken in turn (first[0], second[0], first[1], ...), a box dropped when it
    overlaps an already taken one by IoU > merge_iou, at most cap boxes: the proposals of a photo and of
    its mirror image, each list's best first, without near-duplicates. Greedy NMS on the turn order."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    second = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    order = [lst[i] for i in range(max(len(first), len(second))) for lst in (first, second) if i < len(lst)]
    boxes = np.array(order).reshape(-1, 4)
    return boxes[nms(boxes, -np.arange(len(boxes), dtype=np.float64), merge_iou, limit=cap)]


def rows_in(boxes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n,) bool: which rows of boxes are exactly a row of reference (the SSD proposals among the
    regions IRP returns; IRP's own boxes are landmark fits and never equal one)."""
    known = {row.tobytes() for row in np.ascontiguousarray(reference, dtype=np.float64).reshape(-1, 4)}
    return np.array([row.tobytes() in known for row in np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)],
                    dtype=bool)


def scale_faces(faces: list[Face], factor: float) -> list[Face]:
    """Faces with box and landmarks multiplied by factor (maps results on a resized image back)."""
    for f in faces:
        f.box = np.asarray(f.box) * factor
        f.landmarks = np.asarray(f.landmarks) * factor
        if f.landmarks68 is not None:
            f.landmarks68 = np.asarray(f.landmarks68) * factor
    return faces
