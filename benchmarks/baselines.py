"""Side-by-side baselines (issue 11, item 6): MTCNN (PyPI `faceie`, numpy, its own weights) and
OpenCV's Haar cascade over the same held-out photos as HyperFace, scored by the project's own
face-eval scorer (benchmarks.score.score_runs), with seconds per image measured in the same run.

  python -m benchmarks baselines [--set wider-heldout[=DIR]] [--set afw[=DIR]] [--methods haar mtcnn]
                                 [--model DIR] [--out runs/bench/baselines] [--limit N]

* `--model DIR` adds HyperFace (benchmarks.run_detection.make_detector) as a third method; without it
  only the baselines run. MTCNN is an optional extra: `pip install -r requirements-baselines.txt`.
* Layout: <out>/<dataset>/<method>/ is a results folder (json/ per image, face-eval.txt,
  fddb-dets.txt) that `python -m benchmarks score` reads, plus timing.jsonl (seconds of each image's
  detect call and the machine's load then) and settings.json (the detector's settings; a folder made
  with other settings is refused, never mixed). <out>/<dataset>/report.md: the side-by-side table,
  every metric, the PR curves; <out>/report.md and summary.json: both sets together.
* Resumable: an image whose JSON exists for a method is skipped for that method. Methods run one
  after another on each image (one read per image), so their timings share the machine's load.
* Boxes are 0-based pixels with x2 = x + width (the project's convention, as the WIDER reader
  makes ground truth); landmarks, pose and gender are NaN. Scores: MTCNN's O-Net probability,
  Haar's levelWeights of detectMultiScale3(outputRejectLevels=True).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import results_io
from benchmarks.errors import BenchmarkDataError
from core.config import DATA_ROOT, REPO_ROOT, HyperFaceConfig, load_config
from core.errors import HyperFaceError
from core.face import Face

log = logging.getLogger(__name__)

# the held-out detection sets and their folders under the data root
SETS = {"wider-heldout": "wider_train", "afw": "afw_sample"}
BASELINES = ("haar", "mtcnn")
# the side-by-side columns (metric names of benchmarks.score.score_detection_ap, then the timing)
COLUMNS = ("AP", "AP_calibrated", "FP_per_image_at_90_recall", "recall", "TP", "FP", "faces", "FP_per_image",
           "s_per_image")
TIMING_FILE = "timing.jsonl"
SETTINGS_FILE = "settings.json"
MTCNN_REQUIREMENT = "faceie==0.0.5"


# ----------------------------------------------------------------------------- detectors
class HaarDetector:
    """OpenCV's frontal-face Haar cascade; score = levelWeights of detectMultiScale3 with
    outputRejectLevels=True (the last stage's sum, so AP has a ranking)."""

    name = "haar"

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 3, min_size: int = 0, equalize: bool = True):
        self.path = haar_cascade_path(cascade)
        self.cascade = cv2.CascadeClassifier(str(self.path))
        if self.cascade.empty():
            raise BenchmarkDataError(self.path, "OpenCV could not load the Haar cascade")
        self.scale_factor, self.min_neighbors, self.min_size, self.equalize = scale_factor, min_neighbors, min_size, equalize

    @property
    def settings(self) -> dict:
        return {"method": "haar", "cascade": self.path.name, "opencv": cv2.__version__, "scale_factor": self.scale_factor,
                "min_neighbors": self.min_neighbors, "min_size": self.min_size, "equalize_hist": self.equalize,
                "score": "levelWeights (detectMultiScale3, outputRejectLevels=True)"}

    def raw(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) x, y, w, h rectangles and (N,) level weights, as OpenCV returns them."""
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        rects, _levels, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        # OpenCV's parallel cascade returns its groups in a thread-dependent order: best score first, ties by box
        order = np.lexsort((rects[:, 3], rects[:, 2], rects[:, 1], rects[:, 0], -weights))
        return rects[order], weights[order]

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        rects, weights = self.raw(image_bgr)
        return [Face(box=np.array([x, y, x + w, y + h]), score=float(s)) for (x, y, w, h), s in zip(rects, weights)]


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> Path:
    """The cascade XML: cv2.data.haarcascades, else inside the installed cv2 package, else Debian's
    opencv-data (/usr/share/opencv4/haarcascades)."""
    cands = []
    if getattr(cv2, "data", None) is not None:
        cands.append(Path(cv2.data.haarcascades) / name)
    cands += sorted(Path(cv2.__file__).resolve().parent.rglob(name))
    cands += [Path(d) / name for d in ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")]
    for c in cands:
        if c.is_file():
            return c
    raise BenchmarkDataError(name, "Haar cascade not found (cv2.data, the cv2 package, /usr/share/opencv4; "
                                   "apt-get install opencv-data)")


MTCNN_THRESHOLDS = (0.6, 0.6, 0.5)   # P-, R-, O-Net: MTCNN's own (Zhang et al. 2016)


class MtcnnDetector:
    """MTCNN of PyPI `faceie` (pure numpy; the facenet-pytorch weights it ships). Stage thresholds
    0.6/0.6/0.5, no rotation, pyramid factor sqrt(2) (faceie's), smallest face `min_face` px (the
    P-Net's 12 px window on pyramid levels downscaled at least min_face/12; faceie's default is 48)."""

    name = "mtcnn"

    def __init__(self, thresholds: Sequence[float] = MTCNN_THRESHOLDS, min_face: float = 20.0):
        try:
            import faceie
            from faceie.mtcnn import detect_faces
        except ImportError:
            raise BenchmarkDataError("faceie", "MTCNN baseline needs the optional extra: "
                                               "pip install -r requirements-baselines.txt") from None
        self._detect_faces = detect_faces
        self.version = getattr(faceie, "__version__", None) or _dist_version("faceie")
        self.thresholds = tuple(float(t) for t in thresholds)
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise BenchmarkDataError("mtcnn", f"stage thresholds must be three numbers in [0, 1], got {thresholds}")
        if self.thresholds != MTCNN_THRESHOLDS:  # its own results folder, next to the default's
            self.name = "mtcnn_" + "_".join(f"{t:g}" for t in self.thresholds)
        self.min_face = float(min_face)

    @property
    def settings(self) -> dict:
        return {"method": "mtcnn", "package": f"faceie {self.version}", "thresholds": list(self.thresholds),
                "rotations": [0.0], "min_face_px": self.min_face, "pyramid_downscale_factor": math.sqrt(2),
                "score": "O-Net face probability"}

    def raw(self, image_bgr: np.ndarray):
        """faceie's DetectedFaces (inclusive x2, y2) for a BGR image."""
        from PIL import Image

        rgb = Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        p, r, o = self.thresholds
        return self._detect_faces(rgb, rotations=np.array([0.0]), proposal_skip_downscale_factor=self.min_face / 12.0,
                                  proposal_probability_threshold=p, refine_probability_threshold=r,
                                  output_probability_threshold=o, extract_images=None)

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        d = self.raw(image_bgr)
        boxes = np.asarray(d.bounding_boxes, dtype=np.float64).reshape(-1, 4) + np.array([0.0, 0.0, 1.0, 1.0])  # inclusive -> x + w
        return [Face(box=b, score=float(s)) for b, s in zip(boxes, np.asarray(d.probabilities, dtype=np.float64))]


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class HyperFaceMethod:
    """The project's pipeline (benchmarks.run_detection.make_detector) as one more method."""

    name = "hyperface"

    def __init__(self, model_dir: str | Path, cfg: HyperFaceConfig, proposals: str | None = None, post: str = "lnms",
                 irp_iterations: int | None = None):
        from benchmarks.run_detection import make_detector

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise BenchmarkDataError(model_dir, "model folder not found")
        irp = cfg.test.irp_iterations if irp_iterations is None else irp_iterations
        from pipeline.detector import resolve_proposals
        proposals = resolve_proposals(proposals, cfg, model_dir)
        self._settings = {"method": "hyperface", "model": str(model_dir.resolve()), "model_sha256": _folder_sha256(model_dir),
                          "proposals": proposals, "post": post, "irp_iterations": irp}
        self.detector = make_detector(model_dir, proposals=proposals, post=post, irp_iterations=irp, config=cfg)

    @property
    def settings(self) -> dict:
        return self._settings

    def detect(self, image_bgr: np.ndarray) -> list[Face]:
        return self.detector.detect(image_bgr)


def _folder_sha256(folder: Path) -> str:
    """Hash of a model folder's net and weights files (so a retrained model never resumes old results)."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in (".prototxt", ".caffemodel", ".npz", ".json", ".onnx"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- machine load
def machine_load() -> dict:
    """Load average, CPU count, own niceness/OMP threads and whether a training piece is running
    (the processes whose command line has 'training piece', as `pgrep -f "training piece"`)."""
    training = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "training piece" in cmd and int(d.name) != os.getpid():
            training.append(int(d.name))
    return {"loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "nice": os.nice(0),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""), "training_pids": sorted(training)}


# ----------------------------------------------------------------------------- running
def _check_settings(rdir: Path, settings: dict) -> None:
    path = rdir / SETTINGS_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            diff = {k: (old.get(k), settings.get(k)) for k in set(old) | set(settings) if old.get(k) != settings.get(k)}
            raise BenchmarkDataError(rdir, f"results made with other settings {diff}; remove the folder or use another --out")
    else:
        rdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")


def run_methods(images: Sequence[tuple[str, Path]], methods: Sequence, out_dir: str | Path) -> dict[str, Path]:
    """Run every method on every (image_id, path) it has not done yet: <out_dir>/<method>/ results
    folders plus timing.jsonl lines. Returns method name -> results folder."""
    out_dir = Path(out_dir)
    rdirs = {m.name: out_dir / m.name for m in methods}
    for m in methods:
        _check_settings(rdirs[m.name], m.settings)
    todo = [(i, Path(p)) for i, p in images if any(not results_io.json_path(rdirs[m.name], i).is_file() for m in methods)]
    if len(todo) < len(images):
        log.info("%s: %d of %d images already done by every method; resuming", out_dir.name, len(images) - len(todo), len(images))
    for image_id, path in tqdm(todo, desc=f"baselines -> {out_dir.name}", unit="img"):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise BenchmarkDataError(path, "cannot read the image (missing or not an image)")
        for m in methods:
            rdir = rdirs[m.name]
            if results_io.json_path(rdir, image_id).is_file():
                continue
            load = machine_load()
            t0 = time.perf_counter()
            faces = m.detect(img)
            seconds = time.perf_counter() - t0
            results_io.write_image_result(rdir, image_id, path, faces)
            with open(rdir / TIMING_FILE, "a") as f:
                f.write(json.dumps({"image_id": image_id, "seconds": round(seconds, 6), "faces": len(faces),
                                    "height": img.shape[0], "width": img.shape[1], **load}) + "\n")
    for m in methods:
        rdir = rdirs[m.name]
        results = results_io.read_results(rdir)
        results_io.write_face_eval(rdir / results_io.FACE_EVAL_TXT, results)
        results_io.write_fddb(rdir / results_io.FDDB_TXT, results, [i for i, _ in images])
    return rdirs


def read_timing(rdir: str | Path, image_ids: Sequence[str] | None = None) -> dict:
    """Seconds per image of a results folder (the last timing line of each image; only `image_ids`
    when given) and the load it ran under. {} when the folder has no timing file."""
    path = Path(rdir) / TIMING_FILE
    if not path.is_file():
        return {}
    rows = {}
    for ln in path.read_text().splitlines():
        if ln.strip():
            r = json.loads(ln)
            rows[r["image_id"]] = r
    if image_ids is not None:
        rows = {k: rows[k] for k in image_ids if k in rows}
    if not rows:
        return {}
    sec = np.array([r["seconds"] for r in rows.values()])
    loads = np.array([r["loadavg_1m"] for r in rows.values()])
    return {"s_per_image": float(sec.mean()), "s_median": float(np.median(sec)), "timed_images": len(rows),
            "loadavg_1m_mean": float(loads.mean()), "cpus": next(iter(rows.values()))["cpus"],
            "training_running_frac": float(np.mean([bool(r["training_pids"]) for r in rows.values()]))}


def load_note(timings: Mapping[str, dict]) -> str:
    """One line on the load the timings were measured under."""
    parts = []
    for name, t in timings.items():
        if t:
            parts.append(f"{name}: {t['timed_images']} images, mean 1-min load {t['loadavg_1m_mean']:.1f} on {t['cpus']} CPUs, "
                         f"a training process running during {100 * t['training_running_frac']:.0f} % of them")
    loaded = any(t and (t["training_running_frac"] > 0 or t["loadavg_1m_mean"] > t["cpus"]) for t in timings.values())
    head = ("Timings are on a LOADED machine (another process held the CPUs); compare methods with each other, "
            "not with idle-machine numbers. " if loaded else "Timings on an unloaded machine. ")
    return head + "; ".join(parts)


def score_set(dataset: str, data_dir: str | Path, rdirs: Mapping[str, Path], out_dir: str | Path, cfg: HyperFaceConfig,
              settings: Mapping[str, object], limit: int | None = None) -> dict[str, dict]:
    """Score each method's folder with benchmarks.score.score_runs (same protocol for all), then
    rewrite out_dir/report.md with the side-by-side table (+ s/image) first. Returns method -> row."""
    from benchmarks.report import write_report
    from benchmarks.score import load_ground_truth, score_runs

    out_dir = Path(out_dir)
    metrics = score_runs(dataset, data_dir, dict(rdirs), out_dir, cfg, settings, limit)
    _, images = load_ground_truth(dataset, data_dir, cfg, limit)
    ids = [i for i, _ in images]
    timings = {name: read_timing(rdir, ids) for name, rdir in rdirs.items()}
    rows = {}
    for name, m in metrics.items():
        rows[name] = {c: m[c] for c in COLUMNS if c in m}
        rows[name]["s_per_image"] = timings[name].get("s_per_image", float("nan"))
    figures = sorted(out_dir.glob(f"{dataset}_pr*.png"))
    method_settings = {f"{name}.{k}": v for name, rdir in rdirs.items()
                       for k, v in json.loads((Path(rdir) / SETTINGS_FILE).read_text()).items() if k != "method"} \
        if all((Path(r) / SETTINGS_FILE).is_file() for r in rdirs.values()) else {}
    write_report(out_dir / "report.md", f"Side by side: {dataset} ({len(ids)} images)", {k: str(v) for k, v in rdirs.items()},
                 {"data": str(data_dir), **settings, **method_settings},
                 {"Side by side (face-eval protocol, IoU 0.5, faces under 30 px ignored)": rows,
                  "Timing": {n: t for n, t in timings.items() if t},
                  "All metrics": metrics}, figures,
                 [load_note(timings), "s_per_image: mean seconds of the detect call per image (image read excluded), "
                  "timing.jsonl in each results folder has every image."])
    return rows


def run(sets: Mapping[str, str | Path], methods: Sequence[str], out: str | Path, cfg: HyperFaceConfig,
        model: str | Path | None = None, limit: int | None = None, mtcnn_min_face: float = 20.0,
        proposals: str | None = None, post: str = "lnms", irp: int | None = None,
        mtcnn_thresholds: Sequence[float] | None = None) -> dict[str, dict[str, dict]]:
    """Run and score `methods` (+ HyperFace when `model` is given) on each set -> dataset -> method -> row."""
    from benchmarks.report import write_report
    from benchmarks.score import load_ground_truth

    out = Path(out)
    dets = []
    for name in methods:
        if name == "haar":
            dets.append(HaarDetector())
        elif name == "mtcnn":
            dets.append(MtcnnDetector(mtcnn_thresholds or MTCNN_THRESHOLDS, min_face=mtcnn_min_face))
        else:
            raise BenchmarkDataError(name, f"unknown baseline (known: {', '.join(BASELINES)})")
    if model is not None:
        dets.append(HyperFaceMethod(model, cfg, proposals, post, irp))
    settings = {"methods": " ".join(d.name for d in dets), **({"limit": limit} if limit is not None else {})}
    table = {}
    for dataset, data_dir in sets.items():
        _, images = load_ground_truth(dataset, data_dir, cfg, limit)
        rdirs = run_methods(images, dets, out / dataset)
        # every method folder of this set that exists (HyperFace from an earlier --model run included)
        for extra in sorted(p for p in (out / dataset).iterdir() if p.is_dir() and (p / results_io.JSON_DIR).is_dir()):
            rdirs.setdefault(extra.name, extra)
        table[dataset] = score_set(dataset, data_dir, rdirs, out / dataset, cfg, settings, limit)
    (out / "summary.json").write_text(json.dumps(table, indent=1) + "\n")
    timings = {f"{ds}/{n}": read_timing(out / ds / n) for ds, rows in table.items() for n in rows}
    write_report(out / "report.md", "Side by side: HyperFace, MTCNN, Haar on the held-out detection sets",
                 {f"{ds}/{n}": str(out / ds / n) for ds, rows in table.items() for n in rows},
                 {**{f"data.{ds}": str(d) for ds, d in sets.items()}, **settings},
                 {"Side by side": {f"{ds} / {n}": r for ds, rows in table.items() for n, r in rows.items()}},
                 notes=[load_note(timings), "Per-set reports with every metric and the PR curves: <set>/report.md."])
    return table


def _parse_sets(items: Sequence[str]) -> dict[str, Path]:
    sets = {}
    for it in items or list(SETS):
        name, _, d = it.partition("=")
        if name not in SETS:
            raise BenchmarkDataError(name, f"not a held-out detection set (known: {', '.join(SETS)})")
        sets[name] = Path(d) if d else DATA_ROOT / SETS[name]
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks baselines", description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="NAME[=DIR]",
                   help=f"held-out set (repeat; default all: {', '.join(f'{k}={DATA_ROOT / v}' for k, v in SETS.items())})")
    p.add_argument("--methods", nargs="+", default=list(BASELINES), choices=BASELINES)
    p.add_argument("--model", default=None, help="also run HyperFace with this model folder")
    p.add_argument("--proposals", default=None, choices=("fast", "quality", "ssd", "fast+ssd"),
                   help="with --model (default: the config's test.proposals)")
    p.add_argument("--post", default="lnms", choices=("lnms", "nms"), help="with --model")
    p.add_argument("--irp", type=int, default=None, help="with --model: IRP iterations (default config)")
    p.add_argument("--mtcnn-thresholds", type=float, nargs=3, default=list(MTCNN_THRESHOLDS), metavar=("P", "R", "O"),
                   help="MTCNN's stage thresholds (default 0.6 0.6 0.5, MTCNN's; O = 0.05: its curve down to the "
                        "floor HyperFace's AP is reported at); other values get their own results folder")
    p.add_argument("--mtcnn-min-face", type=float, default=20.0, help="MTCNN's smallest face in px (20 as in MTCNN; faceie's default 48)")
    p.add_argument("--out", default=str(REPO_ROOT / "runs" / "bench" / "baselines"))
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    p.add_argument("--config", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        table = run(_parse_sets(args.set), args.methods, args.out, load_config(args.config), args.model, args.limit,
                    args.mtcnn_min_face, args.proposals, args.post, args.irp, args.mtcnn_thresholds)
    except HyperFaceError as err:
        log.error("%s", err)
        return 2
    for ds, rows in table.items():
        for name, r in rows.items():
            print(f"{ds} {name}: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
