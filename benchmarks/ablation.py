"""Section 5.5 post-processing ablation: Fast vs Quality selective search (and the Fast-HyperFace
proposal net, the default path here) x (plain NMS, +IRP, +IRP +L-NMS), the detection AP of each on AFW
or another detection set (wider-heldout), as one table."""
from __future__ import annotations

from pathlib import Path

from benchmarks import results_io
from benchmarks.cli import check_run_settings
from benchmarks.errors import BenchmarkDataError
from benchmarks.run_detection import make_detector
from benchmarks.score import load_ground_truth, score_one
from benchmarks.report import write_report
from core.config import HyperFaceConfig

PROPOSALS = ("fast", "quality")   # the paper's rows
ROW_NAMES = {"fast": "Fast SS", "quality": "Quality SS", "ssd": "Fast-HyperFace (SSD)", "fast+ssd": "Fast SS + SSD"}


def variants(cfg: HyperFaceConfig) -> dict[str, dict]:
    """Column name -> pipeline arguments (T from the config)."""
    t = cfg.test.irp_iterations
    return {"NMS": {"post": "nms", "irp_iterations": 0},
            "NMS + IRP": {"post": "nms", "irp_iterations": t},
            "IRP + L-NMS": {"post": "lnms", "irp_iterations": t}}


def run_ablation(data_dir: str | Path, model_dir: str | Path, out_dir: str | Path, cfg: HyperFaceConfig, dataset: str = "afw",
                 proposal_modes=PROPOSALS, limit: int | None = None, detection_threshold: float | None = None) -> dict:
    """AP of every (proposals, variant) cell. Per proposals mode one detector: each image's proposals
    are made and forwarded once, and every variant is post-processed from those regions
    (HyperFace.detect_variants), instead of three identical runs through the net. limit: the first N
    images; detection_threshold: run below the model's default (AP needs the low scores too)."""
    import cv2

    out_dir = Path(out_dir)
    gt, images = load_ground_truth(dataset, data_dir, cfg, limit)
    table: dict[str, dict[str, float]] = {}
    for proposals in proposal_modes:
        cells = {name: (kwargs, out_dir / f"{proposals}_{kwargs['post']}_irp{kwargs['irp_iterations']}")
                 for name, kwargs in variants(cfg).items()}
        detector = make_detector(model_dir, proposals=proposals, config=cfg, detection_threshold=detection_threshold)
        for _, rdir in cells.values():  # a resume with other settings must not mix two runs in one folder
            check_run_settings(rdir, {"model": str(Path(model_dir).resolve()), "proposals": proposals,
                                      "detection_threshold": detection_threshold}, detector)
        for image_id, path in images:
            if all(results_io.json_path(rdir, image_id).is_file() for _, rdir in cells.values()):
                continue  # resumable: this image is done for every variant
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise BenchmarkDataError(path, "cannot read the image (missing or not an image)")
            faces = detector.detect_variants(image, [(kw["post"], kw["irp_iterations"]) for kw, _ in cells.values()])
            for (_, rdir), found in zip(cells.values(), faces):
                results_io.write_image_result(rdir, image_id, path, found)
        for name, (_, rdir) in cells.items():
            ap = score_one(dataset, gt, results_io.read_results(rdir), cfg)["metrics"]["AP"]
            table.setdefault(ROW_NAMES[proposals], {})[name] = ap
    write_report(out_dir / "report.md", f"HyperFace Section 5.5 ablation ({dataset.upper()} AP)", {"model": str(model_dir)},
                 {"data": str(data_dir), "irp_iterations": cfg.test.irp_iterations, "lnms_top_k": cfg.test.lnms_top_k,
                  "images": len(images), "detection_threshold": detection_threshold if detection_threshold is not None else "model default"},
                 {"AP": table})
    return table
