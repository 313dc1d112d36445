"""`<out>/index.jsonl`: an append-only JSON Lines index of a run's results, so a million-photo run can
be queried without opening a million JSON files.

One line per result JSON, compact, `"result"` first:
    {"result": "photo.json", "image": "in/photo.jpg", "width": 640, "height": 480, "num_faces": 1,
     "faces": [{"box": [x1, y1, x2, y2], "score": 0.97, "pose_deg": {"roll": .., "pitch": .., "yaw": ..},
                "gender": {"label": "m", "prob_male": 0.81}}]}

Lines are only ever appended. A run appends one line per result it writes (local runs in
pipeline/cli.py, Dask runs in the client, pipeline/dask_runner.py), and at its start `sync()` appends
the results a killed run wrote after its last line, so after kill + resume every result has exactly one
line. A line cut short by a kill is cut off before the next append. If a result is rewritten, its newer
line wins (`records()`); `rebuild()` (`python -m pipeline index OUT --rebuild`) writes the index anew
from the per-photo JSONs.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pipeline.model_store import atomic_write_bytes

INDEX_NAME = "index.jsonl"
_RESULT_KEY = re.compile(r'^\{"result":("(?:[^"\\]|\\.)*")')


def is_result_document(doc) -> bool:
    """A per-photo result of pipeline/cli.py (not some other JSON in the folder)."""
    return isinstance(doc, dict) and {"format_version", "image", "width", "height", "faces"} <= doc.keys()


def index_record(result_name: str, doc: dict) -> dict:
    """The index line of one result document (schema: pipeline/face_schema.json)."""
    return {
        "result": result_name,
        "image": doc["image"],
        "width": doc["width"],
        "height": doc["height"],
        "num_faces": len(doc["faces"]),
        "faces": [{"box": f["box"], "score": f["score"], "pose_deg": f["pose_deg"], "gender": f["gender"]}
                  for f in doc["faces"]],
    }


def dumps_record(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def read_result(path: Path) -> dict | None:
    """The result document at path, or None when it is not a complete result."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if is_result_document(doc) else None


def complete_lines(path: Path) -> list[str]:
    """The lines of a JSON Lines file that end in a newline (a last line cut short by a kill is left out)."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    return data[:data.rfind(b"\n") + 1].decode().splitlines()


def cut_partial_line(path: Path) -> None:
    """Truncate a last line that has no newline (a kill in the middle of an append)."""
    if not path.is_file():
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        pos, block = size, 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            nl = f.read(pos - start).rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)


def append_lines(path: Path, lines: list[str], sync: bool = True) -> None:
    """Append lines (each gets its newline) in one write, after cutting off a partial last line."""
    if not lines:
        return
    cut_partial_line(path)
    with path.open("ab") as f:
        f.write("".join(line + "\n" for line in lines).encode())
        f.flush()
        if sync:
            os.fsync(f.fileno())


class ResultIndex:
    """The index of the results in folder `out` (see the module docstring)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / INDEX_NAME

    # ------------------------------------------------------------------ reading
    def lines(self) -> list[str]:
        """The complete lines (a last line without its newline, cut short by a kill, is left out)."""
        return complete_lines(self.path)

    def names(self) -> set[str]:
        """The result file names that have a line, read from the start of each line only."""
        out = set()
        for line in self.lines():
            m = _RESULT_KEY.match(line)
            if m:
                out.add(json.loads(m.group(1)))
        return out

    def records(self) -> list[dict]:
        """One record per result, the newest line of each, in the order results were first indexed."""
        latest: dict[str, dict] = {}
        for line in self.lines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            latest[rec["result"]] = rec
        return list(latest.values())

    # ------------------------------------------------------------------ writing
    def append(self, records: list[dict]) -> None:
        """Append records, one line each, in one write."""
        if not records:
            return
        append_lines(self.path, [dumps_record(r) for r in records])

    def add(self, stem: str) -> None:
        """Append the line of <out>/<stem>.json (just written)."""
        name = f"{stem}.json"
        doc = read_result(self.out / name)
        if doc is not None:
            self.append([index_record(name, doc)])

    def result_files(self) -> list[Path]:
        """Every *.json directly in `out` except the index's own files, sorted by name."""
        if not self.out.is_dir():
            return []
        return sorted(p for p in self.out.iterdir() if p.suffix == ".json" and p.is_file())

    def sync(self) -> int:
        """Append a line for every result JSON that has none yet; returns how many were added."""
        have = self.names()
        missing = []
        for p in self.result_files():
            if p.name in have:
                continue
            doc = read_result(p)
            if doc is not None:
                missing.append(index_record(p.name, doc))
        self.append(missing)
        return len(missing)

    def rebuild(self) -> int:
        """Write the index anew from the per-photo JSONs (sorted by name); returns the line count."""
        records = []
        for p in self.result_files():
            doc = read_result(p)
            if doc is not None:
                records.append(index_record(p.name, doc))
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, "".join(dumps_record(r) + "\n" for r in records).encode())
        return len(records)


def main(argv=None) -> int:
    """`python -m pipeline index OUT [--rebuild]`: bring the index up to date and summarise it."""
    import argparse  # noqa: PLC0415
    ap = argparse.ArgumentParser(prog="python -m pipeline index")
    add_arguments(ap)
    return run_command(ap.parse_args(argv))


def add_arguments(ap) -> None:
    ap.add_argument("out", help="a run's output folder")
    ap.add_argument("--rebuild", action="store_true", help="rewrite index.jsonl from the per-photo JSONs")


def run_command(args) -> int:
    out = Path(args.out)
    if not out.is_dir():
        print(f"error: {out}: not a folder", file=__import__("sys").stderr)
        return 2
    index = ResultIndex(out)
    if args.rebuild:
        index.rebuild()
    else:
        index.sync()
    records = index.records()
    print(f"{len(records)} photos, {sum(r['num_faces'] for r in records)} faces in {index.path}")
    return 0
