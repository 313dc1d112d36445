"""`python -m pipeline run IMAGES_OR_FOLDER [...] --model DIR --out DIR`: one JSON + one overlay PNG per
image (schema: pipeline/face_schema.json). Resumable: an input whose JSON exists is skipped; every file
is written to a temp file and os.replace'd, the JSON last, so a killed run loses and duplicates
nothing. `<out>/run_log.txt` lists skipped or converted inputs, one line each."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from core.config import load_config
from pipeline.backends import BACKENDS, DEFAULT_BACKEND
from pipeline.detector import POSTS, PROPOSALS, HyperFace, scale_faces
from pipeline.draw import draw_faces
from pipeline.errors import BadImageError, HyperFaceError, PipelineError
from pipeline.images import list_inputs, read_image
from pipeline.index import ResultIndex
from pipeline.model_store import atomic_write_bytes

log = logging.getLogger("pipeline")
RUN_LOG = "run_log.txt"
RESULT_FORMAT_VERSION = 1


def json_safe(value):
    """NaN/inf -> None recursively, so the JSON is standard (the schema allows null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def output_stems(paths: list[Path]) -> list[str]:
    """One output name per input: its stem, plus a short hash of the path when stems collide."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return [p.stem if counts[p.stem] == 1 else f"{p.stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
            for p in paths]


class RunLog:
    """Appends one-line entries to <out>/run_log.txt, never the same line twice (across reruns)."""

    def __init__(self, path: Path):
        self.path = path
        self.lines = set(path.read_text().splitlines()) if path.is_file() else set()

    def add(self, kind: str, path: Path, reason: str) -> None:
        line = f"{kind} {path}: {reason}"
        if line not in self.lines:
            self.lines.add(line)
            with self.path.open("a") as f:
                f.write(line + "\n")
        log.info("%s", line)


def result_document(path: Path, loaded, faces, detector: HyperFace) -> dict:
    return json_safe({
        "format_version": RESULT_FORMAT_VERSION,
        "image": str(path),
        "width": loaded.width,
        "height": loaded.height,
        "model": detector.model.name,
        "backend": detector.backend.name,
        "proposals": detector.proposals,
        "post": detector.post,
        "irp_iterations": detector.irp_iterations,
        "notes": loaded.notes,
        "faces": [f.to_dict() for f in faces],
    })


def run(inputs: list[str | Path], model: str | Path, out: str | Path, backend: str = DEFAULT_BACKEND,
        proposals: str = "fast", post: str = "lnms", irp_iterations: int | None = None, config=None,
        ssd_model: str | Path | None = None, progress: bool = True) -> dict[str, int]:
    """Process images/folders into `out`; returns counts {"done", "already_done", "skipped"}."""
    cfg = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = list_inputs(inputs)
    detector = HyperFace(model, backend=backend, proposals=proposals, post=post, irp_iterations=irp_iterations,
                         config=cfg, ssd_model_dir=ssd_model)
    run_log = RunLog(out / RUN_LOG)
    counts = {"done": 0, "already_done": 0, "skipped": 0}
    index = ResultIndex(out)
    index.sync()  # results a killed run wrote after its last index line
    for path, stem in tqdm(list(zip(paths, output_stems(paths))), desc="images", unit="img", disable=not progress):
        status = process_one(path, stem, out, detector, cfg, run_log)
        counts[status] += 1
        if status == "done":
            index.add(stem)
    return counts


def already_done(json_path: Path) -> bool:
    """Whether an input's result exists (resume skips it); the Dask client asks the same question."""
    return json_path.is_file()


def process_one(path: Path, stem: str, out: Path, detector: HyperFace, cfg, run_log) -> str:
    """One input -> <out>/<stem>.png, then <out>/<stem>.json (each through a temp file + os.replace).
    Returns "done", "already_done" or "skipped"; log lines go to run_log.add(kind, path, reason).
    The one per-photo code path of local and Dask runs (pipeline/dask_runner.py)."""
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    if already_done(json_path):
        run_log.add("SKIPPED", path, f"already done ({json_path.name} exists)")
        return "already_done"
    try:
        loaded = read_image(path, cfg.test.max_image_side)
        if loaded.notes:
            run_log.add("CONVERTED", path, "; ".join(loaded.notes))
        faces = scale_faces(detector.detect(loaded.image), 1.0 / loaded.scale)
        overlay = draw_faces(read_image(path, sys.maxsize).image if loaded.scale != 1.0 else loaded.image, faces)
        ok, png = cv2.imencode(".png", overlay)
        if not ok:
            raise PipelineError(png_path, "PNG encoding failed")
        atomic_write_bytes(png_path, png.tobytes())
        doc = result_document(path, loaded, faces, detector)
        atomic_write_bytes(json_path, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())
        return "done"
    except BadImageError as err:
        run_log.add("SKIPPED", path, err.problem)
    except Exception as err:  # one bad input never stops the batch
        log.debug("failure on %s", path, exc_info=True)
        run_log.add("SKIPPED", path, f"error: {err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return "skipped"


def add_scale_out_arguments(r, sub) -> None:
    """Options of Dask runs and videos (issue 15), and the `index` and `gallery` commands."""
    r.add_argument("--scheduler", default=None,
                   help="run on a Dask cluster: its scheduler address, or 'local' for a LocalCluster (pipeline/dask_runner.py)")
    r.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default 2)")
    r.add_argument("--chunk-size", type=int, default=None, help="photos per Dask task (default: ~16 tasks per worker thread)")
    r.add_argument("--task-threads", type=int, default=None,
                   help="onnxruntime/OpenCV threads per Dask task (default: the host's cores / its worker threads)")
    r.add_argument("--camera", type=int, default=None, help="detect on frames of camera N (pipeline/video.py)")
    r.add_argument("--every", type=int, default=1, help="videos and camera: detect on every Nth frame")
    r.add_argument("--max-frames", type=int, default=None, help="videos and camera: stop after N frames")
    from pipeline import gallery, index  # noqa: PLC0415
    index.add_arguments(sub.add_parser("index", help="bring <out>/index.jsonl up to date (--rebuild: anew)"))
    gallery.add_arguments(sub.add_parser("gallery", help="write a static HTML gallery <out>/index.html"))


def run_other_command(args) -> int:
    from pipeline import gallery, index  # noqa: PLC0415
    return index.run_command(args) if args.command == "index" else gallery.run_command(args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline", description="HyperFace test-time pipeline")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="detect faces in images and folders; write JSON + overlay PNG per image")
    r.add_argument("inputs", nargs="*", help="image files and/or folders, or video files (pipeline/video.py)")
    r.add_argument("--model", required=True, help="model directory (deploy.prototxt, weights, model.json)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    r.add_argument("--proposals", choices=PROPOSALS, default="fast")
    r.add_argument("--post", choices=POSTS, default="lnms")
    r.add_argument("--irp", type=int, default=None, help="IRP iterations T (default: config test.irp_iterations)")
    r.add_argument("--ssd-model", default=None, help="SSD proposal model dir (default: <model>/proposals)")
    r.add_argument("--config", default=None, help="YAML overriding config/hyperface.yaml")
    r.add_argument("-v", "--verbose", action="store_true")
    add_scale_out_arguments(r, sub)
    args = ap.parse_args(argv)
    if args.command != "run":
        return run_other_command(args)
    if not args.inputs and args.camera is None:
        ap.error("run: give image files, folders or video files, or --camera N")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        from pipeline.video import is_video, run_videos  # noqa: PLC0415
        if args.camera is not None or any(is_video(p) for p in args.inputs):
            run_videos(args)
            args.inputs = [p for p in args.inputs if not is_video(p)]
            if not args.inputs:
                return 0
        if args.scheduler:  # Dask is imported only here
            from pipeline.dask_runner import run_dask  # noqa: PLC0415
            counts = run_dask(args.inputs, args.model, args.out, args.scheduler, args.workers, args.backend,
                              args.proposals, args.post, args.irp, args.config, args.ssd_model, args.chunk_size,
                              args.task_threads)
        else:
            counts = run(args.inputs, args.model, args.out, args.backend, args.proposals, args.post, args.irp,
                         args.config, args.ssd_model)
    except (HyperFaceError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{counts['done']} done, {counts['already_done']} already done, {counts['skipped']} skipped "
          f"(see {Path(args.out) / RUN_LOG})")
    return 0
