"""The detection runner with the real pipeline on two AFW sample images: raw results in every
format, resumable. Needs a model with weights (tests/fixtures/tiny_hyperface or models/hyperface)."""
from pathlib import Path

import pytest

from benchmarks import results_io
from benchmarks.datasets.afw import load_afw
from benchmarks.run_detection import make_detector, run_detection
from core.config import DATA_ROOT

REPO = Path(__file__).resolve().parents[1]
DATA = DATA_ROOT


def _model_dir():
    for d in (REPO / "tests" / "fixtures" / "tiny_hyperface", REPO / "models" / "hyperface"):
        if any((d / w).is_file() for w in ("weights.caffemodel", "weights_fp16.npz")):
            return d
    return None


@pytest.mark.skipif(_model_dir() is None, reason="no HyperFace model with weights yet")
def test_runner_writes_all_formats_and_resumes(tmp_path):
    recs = load_afw(DATA / "afw_sample")[:2]
    images = [(r.image_id, r.path) for r in recs]
    det = make_detector(_model_dir(), proposals="fast", post="nms", irp_iterations=0)
    assert run_detection(images, det, tmp_path) == {"done": 2, "skipped": 0}
    assert run_detection(images, det, tmp_path) == {"done": 0, "skipped": 2}
    results = results_io.read_results(tmp_path)
    assert set(results) == {r.image_id for r in recs}
    n_faces = sum(len(v) for v in results.values())
    assert len((tmp_path / results_io.FACE_EVAL_TXT).read_text().splitlines()) == n_faces
    fddb_lines = (tmp_path / results_io.FDDB_TXT).read_text().splitlines()
    assert fddb_lines[0] == recs[0].image_id and len(fddb_lines) == 2 * len(recs) + n_faces
