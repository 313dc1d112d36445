"""`make demo`: run a HyperFace model directory on sample photos and say where the results are.

    python examples/demo.py --model models/hyperface --out runs/demo [IMAGES_OR_FOLDERS ...] [-- PIPELINE_ARGS]

Runs `python -m pipeline run` (OpenCV DNN backend: needs caffe_pb2 only, from `make setup-inference`)
and prints one line per image (faces found, overlay PNG, JSON), then the output folder. The pipeline
skips inputs whose JSON exists, so when the model in --model changed since the last demo into the same
folder (model.json's weights_sha1, kept in <out>/.demo_model), the previous demo outputs are removed first.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from core.errors import HyperFaceError
from pipeline.cli import RUN_LOG, result_names
from pipeline.cli import main as pipeline_main
from pipeline.images import list_inputs
from pipeline.model_store import DEPLOY, META
from pipeline.run_state import RUN_STATE

log = logging.getLogger("demo")
DEFAULT_IMAGES = Path(__file__).resolve().parent / "images"
MARKER = ".demo_model"


class DemoError(HyperFaceError):
    """Bad demo input: `path: problem`, printed as one line."""


def model_key(model_dir: Path) -> str:
    """Identity of a model directory's weights (model.json's weights_sha1); DemoError when unusable."""
    if not model_dir.is_dir():
        raise DemoError(model_dir, "model directory not found (the trained model ships in models/hyperface; "
                                   "pass MODEL=DIR)")
    if not (model_dir / DEPLOY).is_file():
        raise DemoError(model_dir, f"not a model directory (no {DEPLOY})")
    meta_path = model_dir / META
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DemoError(meta_path, "missing (written by pipeline.model_store.export_model)") from None
    except json.JSONDecodeError as err:
        raise DemoError(meta_path, f"not valid JSON ({err.msg}, line {err.lineno})") from None
    key = meta.get("weights_sha1")
    if not key:
        raise DemoError(meta_path, "has no weights_sha1")
    return str(key)


def clear_if_model_changed(out: Path, key: str) -> None:
    """Remove the previous demo's JSON/PNG/run log in `out` when they came from other weights."""
    marker = out / MARKER
    if marker.is_file() and marker.read_text().strip() != key:
        stale = [*out.glob("*.json"), *out.glob("*.png"), out / RUN_LOG, out / RUN_STATE]
        log.warning("model changed since the last demo in %s: removing its %d previous outputs", out,
                    sum(p.is_file() for p in stale))
        for p in stale:
            p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")


def summary_lines(inputs: list[str], out: Path) -> list[str]:
    """One line per input image: faces found (with the best face's attributes) and its output files."""
    paths = list_inputs(inputs)
    lines = []
    for path, stem in zip(paths, result_names(out, paths)):
        json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
        if stem is None or not json_path.is_file():
            lines.append(f"{path}: skipped (see {out / RUN_LOG})")
            continue
        faces = json.loads(json_path.read_text())["faces"]
        text = f"{path}: {len(faces)} face(s)"
        if faces:
            best = faces[0]
            pose, gender = best.get("pose_deg") or {}, best.get("gender") or {}
            text += f", best score {best['score']:.2f}"
            if pose.get("yaw") is not None:
                text += f" yaw {pose['yaw']:+.0f} deg"
            if gender.get("label"):
                text += f" gender {gender['label']}"
        lines.append(f"{text} -> {png_path}, {json_path}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="examples/demo.py", description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="*", help=f"image files and/or folders (default: {DEFAULT_IMAGES})")
    ap.add_argument("--model", required=True, help="model directory (deploy.prototxt, weights, model.json)")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    inputs = args.inputs or [str(DEFAULT_IMAGES)]
    out = Path(args.out).resolve()
    try:
        clear_if_model_changed(out, model_key(Path(args.model)))
    except DemoError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2
    rc = pipeline_main(["run", *inputs, "--model", args.model, "--out", str(out), *extra])
    if rc != 0:
        return rc
    for line in summary_lines(inputs, out):
        print(line)
    print(f"demo: overlays (*.png) and results (*.json, schema pipeline/face_schema.json) are in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
