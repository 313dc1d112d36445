"""Videos and cameras: `python -m pipeline run clip.mp4 --model DIR --out OUT [--every N]` and
`python -m pipeline run --camera 0 --model DIR --out OUT [--max-frames N]`.

Frames are read with OpenCV (cv2.VideoCapture). For a video `<stem>.<ext>` the run writes
  <out>/<stem>.frames.jsonl     one JSON line per detected frame (every Nth, N = --every):
                                {"frame": i, "time_s": i / fps, "width": w, "height": h, "faces": [...]}
                                faces as in the per-photo JSON (pipeline/face_schema.json)
  <out>/<stem>.annotated.mp4    every frame of the input with the faces of the latest detected frame
                                drawn (pipeline/draw.py), same frame count and rate (mp4v)
  <out>/<stem>.video.json       the source, frame rate and size, frame count and the detector settings
Resumable by frame index: a rerun keeps the complete lines of frames.jsonl (a line cut short by a kill
is dropped), detects only the frames after them, and renders the annotated video anew from the
records (through a temp file + os.replace, so a killed run never leaves a cut-short video). A rerun
with another --every or other detector settings refuses with a message (delete the outputs to
start over). A camera run writes camera<N>-<UTC time> outputs, is not resumed, and ends after
--max-frames frames, at the end of the stream, or on Ctrl-C (the outputs are closed properly).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.config import load_config
from core.face import Face
from pipeline.cli import json_safe
from pipeline.detector import HyperFace, scale_faces
from pipeline.draw import draw_faces
from pipeline.errors import PipelineError
from pipeline.index import append_lines, complete_lines, cut_partial_line
from pipeline.model_store import atomic_write_bytes

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
FOURCC = "mp4v"


def is_video(path) -> bool:
    p = Path(path)
    return p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir()


def output_paths(out: Path, name: str) -> dict[str, Path]:
    return {"records": out / f"{name}.frames.jsonl", "video": out / f"{name}.annotated.mp4",
            "meta": out / f"{name}.video.json"}


def detect_frame(detector: HyperFace, frame: np.ndarray, max_side: int) -> list[Face]:
    """Faces in one BGR frame; a frame larger than max_side is detected on a downscaled copy, as
    pipeline.images.read_image does for photos, and the faces mapped back."""
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return detector.detect(frame)
    scale = max_side / max(h, w)
    small = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return scale_faces(detector.detect(small), 1.0 / scale)


def frame_record(index: int, fps: float, frame: np.ndarray, faces: list[Face]) -> dict:
    h, w = frame.shape[:2]
    return json_safe({"frame": index, "time_s": round(index / fps, 6) if fps > 0 else None, "width": w, "height": h,
                      "faces": [f.to_dict() for f in faces]})


def _face(d: dict) -> Face:
    """A Face from its JSON form, where null (a value the model does not give) becomes NaN."""
    prob = (d.get("gender") or {}).get("prob_male")
    return Face.from_dict({**d, "gender": {"prob_male": float("nan") if prob is None else prob}})


def _open(source) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = f"camera {source}" if isinstance(source, int) else str(source)
        raise PipelineError(what, "cannot be opened as a video (cv2.VideoCapture)")
    return cap


def run_video(source: str | Path | int, out: str | Path, detector: HyperFace, every: int = 1,
              max_frames: int | None = None, progress: bool = True) -> dict[str, int]:
    """Detect faces on every `every`-th frame of a video file (or camera index); returns counts
    {"frames", "detected", "resumed"} (resumed: frames whose record an earlier run had written)."""
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    camera = isinstance(source, int)
    name = f"camera{source}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}" if camera else Path(source).stem
    paths = output_paths(out, name)
    cap = _open(source if camera else str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    settings = {"model": detector.model.name, "weights_sha1": detector.model.meta.get("weights_sha1"),
                "backend": detector.backend.name, "proposals": detector.proposals, "post": detector.post,
                "irp_iterations": detector.irp_iterations,
                "config_sha1": hashlib.sha1(repr(detector.cfg).encode()).hexdigest(), "every": every}
    done: dict[int, list[Face]] = {}
    if not camera and paths["records"].is_file():
        old = json.loads(paths["meta"].read_text()) if paths["meta"].is_file() else {}
        changed = {k: (old.get("settings", {}).get(k), v) for k, v in settings.items()
                   if old.get("settings", {}).get(k) != v}
        if changed:
            raise PipelineError(paths["records"], "was made with other settings (" + ", ".join(
                f"{k}: {a} -> {b}" for k, (a, b) in changed.items()) + "); delete it to start over")
        cut_partial_line(paths["records"])
        for line in complete_lines(paths["records"]):
            rec = json.loads(line)
            done[rec["frame"]] = [_face(f) for f in rec["faces"]]
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not camera else 0
    if max_frames is not None:
        total = min(total, max_frames) if total > 0 else max_frames
    tmp_video = paths["video"].with_name(f".{paths['video'].name}.tmp.mp4")
    writer = None
    meta = {"source": f"camera {source}" if camera else str(source), "fps": fps, "settings": settings}
    counts = {"frames": 0, "detected": 0, "resumed": 0}
    shown: list[Face] = []
    max_side = detector.cfg.test.max_image_side
    bar = tqdm(total=total or None, desc="frames", unit="frame", disable=not progress)
    try:
        while max_frames is None or counts["frames"] < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            i = counts["frames"]
            if writer is None:
                h, w = frame.shape[:2]
                meta.update(width=w, height=h)
                atomic_write_bytes(paths["meta"], (json.dumps(meta, indent=1) + "\n").encode())
                writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*FOURCC), fps if fps > 0 else 25.0, (w, h))
                if not writer.isOpened():
                    raise PipelineError(paths["video"], f"OpenCV cannot write {FOURCC} video")
            if i % every == 0:
                if i in done:
                    shown = done[i]
                    counts["resumed"] += 1
                else:
                    shown = detect_frame(detector, frame, max_side)
                    append_lines(paths["records"], [json.dumps(frame_record(i, fps, frame, shown), allow_nan=False)],
                                 sync=False)
                    counts["detected"] += 1
            writer.write(draw_faces(frame, shown))
            counts["frames"] += 1
            bar.update(1)
    except KeyboardInterrupt:
        if not camera:
            raise
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
    if writer is not None:
        meta["frames"] = counts["frames"]
        atomic_write_bytes(paths["meta"], (json.dumps(meta, indent=1) + "\n").encode())
        os.replace(tmp_video, paths["video"])
    return counts


def run_videos(args) -> None:
    """The CLI's video branch: every video among args.inputs, then --camera; prints one line each."""
    cfg = load_config(args.config)
    detector = HyperFace(args.model, backend=args.backend, proposals=args.proposals, post=args.post,
                         irp_iterations=args.irp, config=cfg, ssd_model_dir=args.ssd_model)
    sources: list = [p for p in args.inputs if is_video(p)]
    if args.camera is not None:
        sources.append(args.camera)
    for source in sources:
        c = run_video(source, args.out, detector, args.every, args.max_frames)
        print(f"{source}: {c['frames']} frames, {c['detected']} detected, {c['resumed']} from an earlier run "
              f"(see {Path(args.out)})", file=sys.stdout)
