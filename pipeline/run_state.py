"""What makes a folder run safe to kill, rerun and trust (`python -m pipeline run`, pipeline/cli.py).

`<out>/.run_state` (JSON) records, before the first result is written:
  * "settings": what the results depend on (model name, SHA-1 of the weights and of the deploy
    prototxt, backend, proposals, post-processing, IRP T, the config sections the test procedure
    reads). Every result JSON carries the same record. A rerun with other settings is refused with
    a message naming each difference, unless --force (then the results are redone).
  * "names": input file (absolute, resolved) -> output name, chosen once and kept: `a.jpg` is `a`;
    an input whose stem is taken by another input (`a.png` after `a.jpg`) is `a_png`, then
    `a_png_<hash>`. A later rerun that adds inputs never renames an earlier result.
Checks made before any detection: the output folder is a folder, can be created and written, and
no output could overwrite or be read back as an input. A result counts as done only when its JSON
parses, follows pipeline/face_schema.json, has this run's settings and its PNG exists; else it is
redone. Temp files that a killed run left (`.<name>.<random suffix>.tmp`) are removed at the start.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import tempfile
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.model_store import atomic_write_bytes

log = logging.getLogger("pipeline")
RUN_STATE = ".run_state"  # JSON; hidden and without .json so no *.json glob takes it for a result
RUN_STATE_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "face_schema.json"
CONFIG_SECTIONS = ("input", "selective_search", "test")  # what detection reads from core.config
CRASH_ENV = "HYPERFACE_CRASH_AT"  # tests only: "<point>[:<n>]" kills the process (SIGKILL) at the n-th <point>


def crash_point(name: str, _seen: dict = {}) -> None:  # noqa: B006 (per-process counter)
    """Test hook for the kill -9 tests: SIGKILL this process at the n-th time `name` is reached when
    $HYPERFACE_CRASH_AT is "<name>:<n>" (n defaults to 1). Does nothing otherwise."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def run_settings(detector) -> dict:
    """Everything a result depends on, as plain JSON values (the same dict in every result)."""
    model = detector.model
    settings = {
        "model": model.name,
        "weights_sha1": model.weights_sha1 or _sha1(model.caffemodel),
        "prototxt_sha1": _sha1(model.prototxt),
        "backend": detector.backend.name,
        "proposals": detector.proposals,
        "post": detector.post,
        "irp_iterations": detector.irp_iterations,
        "config": {name: _plain(dataclasses.asdict(getattr(detector.cfg, name))) for name in CONFIG_SECTIONS},
    }
    if getattr(detector, "ssd_model", None) is not None:
        settings["ssd_weights_sha1"] = detector.ssd_model.weights_sha1 or _sha1(detector.ssd_model.caffemodel)
    return settings


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def settings_difference(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every setting that differs (config keys as test.batch_size ...)."""
    a, b = _flat(old or {}), _flat(new or {})
    return [f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def prepare_out(out: Path) -> Path:
    """Create `out` and check it is a writable folder; PipelineError naming it otherwise."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PipelineError(out, "--out is an existing file, not a folder")
    for parent in out.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise PipelineError(out, f"--out cannot be created: {parent} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PipelineError(out, f"--out cannot be created ({err.strerror or err.__class__.__name__})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_test.", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PipelineError(out, f"--out is not writable ({err.strerror or err.__class__.__name__})") from None
    return out


def remove_stale_temp_files(out: Path) -> list[Path]:
    """Delete the `.<name>.<random suffix>.tmp` files an interrupted run left in `out`; returns them."""
    removed = []
    for p in sorted(out.glob(".*.tmp")):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
            log.info("removed %s (temp file of an interrupted run)", p)
    return removed


def input_key(path: Path) -> str:
    return str(Path(path).resolve())


class RunState:
    """<out>/.run_state: the settings of the results in `out` and the output name of each input."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / RUN_STATE
        self.settings: dict | None = None
        self.names: dict[str, str] = {}
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                if not isinstance(doc, dict) or not isinstance(doc.get("names", {}), dict):
                    raise ValueError("not a run state object")
            except (ValueError, UnicodeDecodeError) as err:
                raise PipelineError(self.path, f"not a valid run state ({err.__class__.__name__}); it records "
                                               "the settings of the results in this folder: remove it to "
                                               "redo them, or use another --out") from None
            self.settings = doc.get("settings")
            self.names = {str(k): str(v) for k, v in doc.get("names", {}).items()}

    def check_settings(self, settings: dict, force: bool) -> list[str]:
        """Refuse (PipelineError naming the differences) when `out` holds results of other settings,
        unless force; returns the differences."""
        diff = settings_difference(self.settings, settings) if self.settings is not None else []
        if diff and not force:
            shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
            raise PipelineError(self.out, f"holds results made with other settings ({shown}); rerun with the same "
                                          "settings, use another --out, or add --force to redo them")
        self.settings = settings
        return diff

    def assign_names(self, paths: list[Path], reserved: set[str]) -> list[str]:
        """One output name per input, stable across reruns (see the module docstring)."""
        used = set(self.names.values()) | reserved
        names = []
        for p in paths:
            key = input_key(p)
            if key not in self.names:
                stem = p.stem or p.name
                candidates = [stem, f"{stem}_{p.suffix.lstrip('.').lower()}" if p.suffix else f"{stem}_",
                              f"{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"]
                name = next((c for c in candidates if c not in used), None)
                k = 2
                while name is None:
                    name = f"{candidates[-1]}_{k}" if f"{candidates[-1]}_{k}" not in used else None
                    k += 1
                self.names[key] = name
                used.add(name)
            names.append(self.names[key])
        return names

    def save(self) -> None:
        doc = {"format_version": RUN_STATE_VERSION, "settings": self.settings, "names": self.names}
        atomic_write_bytes(self.path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def check_no_shadowing(out: Path, input_folders: list[Path], paths: list[Path], names: list[str],
                       extra_outputs: list[str]) -> None:
    """PipelineError when an output would overwrite an input or be read back as one."""
    out_r = out.resolve()
    if out_r in input_folders:
        raise PipelineError(out, "--out is an input folder: the overlays (*.png) written there would be read as "
                                 "new inputs by the next run, and could overwrite photos; choose another --out")
    inputs = {p.resolve(): p for p in paths}
    outputs = [out_r / f"{n}{ext}" for n in names for ext in (".json", ".png")] + [out_r / e for e in extra_outputs]
    for o in outputs:
        if o in inputs:
            raise PipelineError(inputs[o], f"is an input and would be overwritten by the output {o}; "
                                           "choose another --out")


_VALIDATOR = None


def result_problem(json_path: Path, png_path: Path, settings: dict) -> str | None:
    """Why an existing result cannot be kept (None: it is complete and made with `settings`)."""
    global _VALIDATOR
    try:
        data = json_path.read_bytes()
    except OSError as err:
        return f"unreadable ({err.strerror or err.__class__.__name__})"
    if not data:
        return "is empty (0 bytes)"
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "is not valid JSON (cut short?)"
    if _VALIDATOR is None:
        import jsonschema
        _VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    error = next(iter(_VALIDATOR.iter_errors(doc)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        return f"does not follow face_schema.json ({where}: {error.message[:80]})"
    if doc.get("settings") != settings:
        diff = settings_difference(doc.get("settings"), settings)
        return "was made with other settings (" + "; ".join(diff[:3]) + ")"
    if not png_path.is_file() or png_path.stat().st_size == 0:
        return f"has no overlay ({png_path.name} missing)"
    return None
