"""Markdown report of one benchmark run: the numbers, the model(s), the settings and the date."""
from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Mapping, Sequence

from benchmarks.report_html import write_report_html


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def write_report(
    path: str | Path,
    title: str,
    models: Mapping[str, str],
    settings: Mapping[str, object],
    tables: Mapping[str, Mapping[str, Mapping[str, object]]],
    figures: Sequence[str | Path] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Write a markdown report.

    models: label -> model folder or results folder. settings: name -> value.
    tables: table title -> row name -> column name -> value (floats printed with 4 decimals).
    figures: PNG paths (linked relative to the report). notes: extra lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [f"# {title}", "", f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}", "", "## Models", ""]
    out += [f"- **{k}**: `{v}`" for k, v in models.items()]
    out += ["", "## Settings", ""] + [f"- {k}: `{v}`" for k, v in settings.items()]
    for name, rows in tables.items():
        cols = list(dict.fromkeys(c for r in rows.values() for c in r))
        out += ["", f"## {name}", "", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        out += [f"| {r} | " + " | ".join(_fmt(vals.get(c, "")) for c in cols) + " |" for r, vals in rows.items()]
    if figures:
        out += ["", "## Figures", ""]
        for fpath in figures:
            rel = Path(fpath).resolve().relative_to(path.parent.resolve()) if Path(fpath).resolve().is_relative_to(path.parent.resolve()) else Path(fpath)
            out.append(f"![{Path(fpath).stem}]({rel})")
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(out) + "\n")
    write_report_html(path)  # report.html beside it, with the figures inline
    return path
