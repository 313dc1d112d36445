"""`python -m pipeline run IMAGES_OR_FOLDER [...] --model DIR --out DIR`: one JSON + one overlay PNG per
image (schema: pipeline/face_schema.json). Resumable: an input whose result is complete and made with
the same settings is skipped (pipeline/run_state.py); every file is written to a temp file and
os.replace'd, the JSON last, so a killed run loses and duplicates nothing. `<out>/run_log.txt` lists
skipped, converted, failed and missing inputs, one line each.

Exit status: 0 when every input found has a result; 1 when an input is missing or no input has a
result (an empty folder, every image bad or failed); 2 when the run cannot start (bad option, model,
config or --out: one line on stderr)."""
from __future__ import annotations

import argparse
import copy
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
from pipeline.images import read_image, scan_inputs
from pipeline.index import INDEX_NAME, ResultIndex
from pipeline.model_store import atomic_write_bytes
from pipeline.run_state import (RUN_STATE, RunState, check_no_shadowing, crash_point, input_key, prepare_out,
                                remove_stale_temp_files, result_problem, run_settings)

log = logging.getLogger("pipeline")
RUN_LOG = "run_log.txt"
RESULT_FORMAT_VERSION = 2
EXIT_OK, EXIT_INCOMPLETE, EXIT_ERROR = 0, 1, 2


def json_safe(value):
    """NaN/inf -> None recursively, so the JSON is standard (the schema allows null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def result_names(out: str | Path, paths: list[Path]) -> list[str | None]:
    """The output name `python -m pipeline run` chose for each input in `out` (None: not run there)."""
    names = RunState(Path(out)).names
    return [names.get(input_key(p)) for p in paths]


def output_stems(paths: list[Path]) -> list[str]:
    """One output name per input: its stem, plus a short hash of the path when stems collide. Dask
    runs name their outputs with this; local runs keep stable names in <out>/.run_state instead."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return [p.stem if counts[p.stem] == 1 else f"{p.stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
            for p in paths]


class RunLog:
    """Appends one-line entries to <out>/run_log.txt, never the same line twice (across reruns)."""

    def __init__(self, path: Path):
        self.path = path
        self.lines = set(path.read_text(errors="replace").splitlines()) if path.is_file() else set()

    def add(self, kind: str, path: Path, reason: str) -> None:
        line = f"{kind} {path}: {reason}"
        if line not in self.lines:
            self.lines.add(line)
            with self.path.open("a") as f:
                f.write(line + "\n")
        log.info("%s", line)


def result_document(path: Path, loaded, faces, detector: HyperFace, settings: dict | None = None) -> dict:
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
        "settings": settings if settings is not None else run_settings(detector),
        "notes": loaded.notes,
        "faces": [f.to_dict() for f in faces],
    })


def run(inputs: list[str | Path], model: str | Path, out: str | Path, backend: str = DEFAULT_BACKEND,
        proposals: str | None = None, post: str = "lnms", irp_iterations: int | None = None, config=None,
        ssd_model: str | Path | None = None, progress: bool = True, force: bool = False) -> dict[str, int]:
    """Process images/folders into `out`; returns counts {"done", "already_done", "skipped", "failed",
    "missing"}. Raises PipelineError/ModelError/ValueError (one line) when the run cannot start:
    --out is not a writable folder or would shadow an input, the model or config is bad, or `out`
    holds results of other settings (unless force, which redoes them)."""
    if irp_iterations is not None and irp_iterations < 0:
        raise ValueError(f"--irp must be >= 0, got {irp_iterations}")
    cfg = load_config(config)
    out = prepare_out(Path(out))          # before the model loads and any detection: fail early
    scan = scan_inputs(inputs)
    state = RunState(out)
    names = state.assign_names(scan.paths, reserved=set())
    check_no_shadowing(out, scan.folders, scan.paths, names, [RUN_LOG, RUN_STATE, INDEX_NAME])
    run_log = RunLog(out / RUN_LOG)
    run_log.path.touch()                  # run_log.txt exists after every run that started
    detector = HyperFace(model, backend=backend, proposals=proposals, post=post, irp_iterations=irp_iterations,
                         config=cfg, ssd_model_dir=ssd_model)
    settings = run_settings(detector)
    index, counts = start_results(out, state, settings, force, scan, run_log)
    crash_point("before_results")
    # disable=None: a progress bar only on a terminal, so logs and captured stderr hold one-line messages
    for path, stem in tqdm(list(zip(scan.paths, names)), desc="images", unit="img",
                           disable=None if progress else True):
        status = process_one(path, stem, out, detector, cfg, run_log, settings)
        counts[status] += 1
        if status == "done":
            index.add(stem)
            crash_point("between_images")
    return counts


def start_results(out: Path, state, settings: dict, force: bool, scan, run_log) -> tuple:
    """The steps a local and a Dask run share before the first photo: the settings check (refused
    or, with --force, redone), stale temp files removed, the run state saved, the index synced, and
    missing / unreadable inputs logged. Returns (ResultIndex, counts)."""
    if state.check_settings(settings, force):
        log.warning("%s: --force: results made with other settings will be redone", out)
    remove_stale_temp_files(out)
    state.save()
    index = ResultIndex(out)
    index.sync()  # results a killed run wrote after its last index line
    counts = {"done": 0, "already_done": 0, "skipped": 0, "failed": 0, "missing": len(scan.missing)}
    for p in scan.missing:
        run_log.add("MISSING", p, "no such file or folder")
    for p, problem in scan.problems:
        counts["skipped"] += 1
        run_log.add("SKIPPED", p, problem)
    return index, counts


def already_done(json_path: Path, settings: dict | None = None) -> bool:
    """Whether an input's result can be kept (resume skips it). With `settings`: its JSON is complete,
    follows the schema, was made with these settings and has its PNG (run_state.result_problem);
    without (the Dask client): its JSON exists."""
    if settings is None:
        return json_path.is_file()
    return result_problem(json_path, json_path.with_suffix(".png"), settings) is None


# photos up to this many pixels get a full-size overlay PNG; larger ones one of the downscaled
# image they were detected on (issue 12: a folder run on a 20000 x 20000 photo within 2 GB)
OVERLAY_MAX_PIXELS = 50_000_000


def process_one(path: Path, stem: str, out: Path, detector: HyperFace, cfg, run_log,
                settings: dict | None = None) -> str:
    """One input -> <out>/<stem>.png, then <out>/<stem>.json (each through a temp file + os.replace).
    Returns "done", "already_done", "skipped" (a bad image) or "failed" (an error while detecting);
    log lines go to run_log.add(kind, path, reason). The one per-photo code path of local and Dask
    runs (pipeline/dask_runner.py). settings: run_state.run_settings(detector) (computed when None)."""
    settings = settings if settings is not None else detector_settings(detector)
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    if json_path.exists():
        problem = result_problem(json_path, png_path, settings)
        if problem is None:
            run_log.add("SKIPPED", path, f"already done ({json_path.name} exists)")
            return "already_done"
        run_log.add("REDONE", path, f"{json_path.name} {problem}")
    try:
        loaded = read_image(path, cfg.test.max_image_side)
        if loaded.notes:
            run_log.add("CONVERTED", path, "; ".join(loaded.notes))
        faces = scale_faces(detector.detect(loaded.image), 1.0 / loaded.scale)
        if loaded.scale == 1.0:
            overlay = draw_faces(loaded.image, faces)
        elif loaded.width * loaded.height <= OVERLAY_MAX_PIXELS:
            overlay = draw_faces(read_image(path, sys.maxsize).image, faces)
        else:  # drawn on the detection-size image: a 20000 x 20000 input never exists as a full bitmap
            overlay = draw_faces(loaded.image, scale_faces(copy.deepcopy(faces), loaded.scale))
        ok, png = cv2.imencode(".png", overlay)
        if not ok:
            raise PipelineError(png_path, "PNG encoding failed")
        atomic_write_bytes(png_path, png.tobytes(), mid_write=lambda: crash_point("mid_png"))
        crash_point("after_png")
        doc = result_document(path, loaded, faces, detector, settings)
        atomic_write_bytes(json_path, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode(),
                           mid_write=lambda: crash_point("mid_json"))
        return "done"
    except BadImageError as err:
        run_log.add("SKIPPED", path, err.problem)
        return "skipped"
    except Exception as err:  # one bad input never stops the batch
        log.debug("failure on %s", path, exc_info=True)
        run_log.add("FAILED", path, f"error: {err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        return "failed"


def detector_settings(detector: HyperFace) -> dict:
    """run_settings of a detector, computed once (the weights' SHA-1 reads the file)."""
    cached = getattr(detector, "_run_settings", None)
    if cached is None:
        cached = detector._run_settings = run_settings(detector)
    return cached


def summary_line(counts: dict[str, int], out: Path) -> str:
    return (f"{counts['done']} done, {counts['already_done']} already done, {counts['skipped']} skipped, "
            f"{counts['failed']} failed, {counts['missing']} missing (see {out / RUN_LOG})")


def missing_inputs(inputs) -> list[Path]:
    return scan_inputs(inputs).missing


def exit_status(counts: dict[str, int]) -> int:
    """0: every input found has a result; 1: an input is missing, or no input has a result."""
    if counts["missing"] or counts["done"] + counts["already_done"] == 0:
        return EXIT_INCOMPLETE
    return EXIT_OK


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


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
    r.add_argument("--proposals", choices=PROPOSALS, default=None,
                   help="default: the config's test.proposals")
    r.add_argument("--post", choices=POSTS, default="lnms")
    r.add_argument("--irp", type=_non_negative_int, default=None,
                   help="IRP iterations T >= 0 (default: config test.irp_iterations)")
    r.add_argument("--ssd-model", default=None, help="SSD proposal model dir (default: <model>/proposals)")
    r.add_argument("--config", default=None, help="YAML overriding config/hyperface.yaml")
    r.add_argument("--force", action="store_true",
                   help="redo the results in --out that were made with other settings (model, options, config)")
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
                              args.task_threads, force=args.force)
        else:
            counts = run(args.inputs, args.model, args.out, args.backend, args.proposals, args.post, args.irp,
                         args.config, args.ssd_model, force=args.force)
    except (HyperFaceError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    counts = {"failed": 0, "missing": 0, **counts}  # Dask runs count done / already done / skipped
    print(summary_line(counts, Path(args.out)))
    for p in missing_inputs(args.inputs):
        print(f"error: {p}: no such file or folder", file=sys.stderr)
    if counts["done"] + counts["already_done"] + counts["skipped"] + counts["failed"] + counts["missing"] == 0:
        print(f"error: no image files in {' '.join(map(str, args.inputs))}", file=sys.stderr)
    return exit_status(counts)
