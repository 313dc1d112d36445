"""Thin runner: the HyperFace pipeline over a dataset's images, one JSON per image (resumable:
images whose JSON exists are skipped), then the face-eval and FDDB text files from all JSONs."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import cv2
from tqdm import tqdm

from benchmarks import results_io
from benchmarks.errors import BenchmarkDataError

log = logging.getLogger(__name__)


def make_detector(model_dir: str | Path, proposals: str | None = None, post: str = "lnms", irp_iterations: int | None = None, **kwargs):
    """The pipeline's HyperFace (imported here only, so scoring never needs Caffe)."""
    from pipeline import HyperFace

    if irp_iterations is not None:
        kwargs["irp_iterations"] = irp_iterations
    return HyperFace(str(model_dir), proposals=proposals, post=post, **kwargs)


def run_detection(
    images: Sequence[tuple[str, Path]],
    detector,
    out_dir: str | Path,
    fddb_order: Iterable[str] | None = None,
) -> dict:
    """Detect faces in every (image_id, path) not done yet and write the raw results.

    images: (image_id, image path) pairs; detector: an object with .detect(image_bgr) -> list[Face].
    out_dir: results folder (json/, face-eval.txt, fddb-dets.txt).
    fddb_order: image ids in FDDB order for fddb-dets.txt (default: the order of `images`).
    Returns {"done": newly processed, "skipped": already there}.
    """
    out_dir = Path(out_dir)
    todo = [(i, Path(p)) for i, p in images if not results_io.json_path(out_dir, i).is_file()]
    skipped = len(images) - len(todo)
    if skipped:
        log.info("%d of %d images already have results in %s; resuming", skipped, len(images), out_dir)
    for image_id, path in tqdm(todo, desc=f"detect -> {out_dir.name}", unit="img"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise BenchmarkDataError(path, "cannot read the image (missing or not an image)")
        faces = detector.detect(img)
        results_io.write_image_result(out_dir, image_id, path, faces)
    results = results_io.read_results(out_dir)
    results_io.write_face_eval(out_dir / results_io.FACE_EVAL_TXT, results)
    results_io.write_fddb(out_dir / results_io.FDDB_TXT, results, fddb_order or [i for i, _ in images])
    return {"done": len(todo), "skipped": skipped}
