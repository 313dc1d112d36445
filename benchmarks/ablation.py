"""Section 5.5 post-processing ablation: Fast vs Quality selective search x (plain NMS, +IRP,
+IRP +L-NMS), AFW detection AP of each, as one table."""
from __future__ import annotations

from pathlib import Path

from benchmarks import results_io
from benchmarks.run_detection import make_detector, run_detection
from benchmarks.score import load_ground_truth, score_one
from benchmarks.report import write_report
from core.config import HyperFaceConfig

PROPOSALS = ("fast", "quality")


def variants(cfg: HyperFaceConfig) -> dict[str, dict]:
    """Column name -> pipeline arguments (T from the config)."""
    t = cfg.test.irp_iterations
    return {"NMS": {"post": "nms", "irp_iterations": 0},
            "NMS + IRP": {"post": "nms", "irp_iterations": t},
            "IRP + L-NMS": {"post": "lnms", "irp_iterations": t}}


def run_ablation(data_dir: str | Path, model_dir: str | Path, out_dir: str | Path, cfg: HyperFaceConfig, dataset: str = "afw") -> dict:
    out_dir = Path(out_dir)
    gt, images = load_ground_truth(dataset, data_dir, cfg)
    table: dict[str, dict[str, float]] = {}
    for proposals in PROPOSALS:
        for name, kwargs in variants(cfg).items():
            rdir = out_dir / f"{proposals}_{kwargs['post']}_irp{kwargs['irp_iterations']}"
            run_detection(images, make_detector(model_dir, proposals=proposals, config=cfg, **kwargs), rdir)
            ap = score_one(dataset, gt, results_io.read_results(rdir), cfg)["metrics"]["AP"]
            table.setdefault(f"{proposals.capitalize()} SS", {})[name] = ap
    write_report(out_dir / "report.md", f"HyperFace Section 5.5 ablation ({dataset.upper()} AP)", {"model": str(model_dir)},
                 {"data": str(data_dir), "irp_iterations": cfg.test.irp_iterations, "lnms_top_k": cfg.test.lnms_top_k},
                 {"AP": table})
    return table
