"""report.md -> report.html beside it: the benchmark report as a static page with its plots shown
inline (the PNGs are referenced where they lie, next to the report; no server, no CDN).

Converts the markdown that benchmarks/report.py writes (headings, bullet lists, pipe tables, images,
links, **bold**, `code`, paragraphs). benchmarks.report.write_report calls it after every report;
`python -m benchmarks.report_html runs/bench` converts every report.md under a folder, and
`python -m pipeline gallery runs/bench/<dataset>` does it for one.
"""
from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1100px;
       padding: 0 16px; color: #222; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eceff1; }
code { background: #f1f1f1; padding: 0 3px; border-radius: 3px; }
figure { display: inline-block; margin: 8px 12px 8px 0; }
figure img { max-width: 520px; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; text-align: center; }
"""


def _inline(text: str) -> str:
    """Escape, then **bold**, `code`, [text](url)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', s)
        out.append(s)
    return "".join(out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


def markdown_to_html(md: str, title: str | None = None) -> str:
    lines = md.splitlines()
    body: list[str] = []
    i = 0
    first_h1 = None
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            level = len(m.group(1))
            first_h1 = first_h1 or (m.group(2) if level == 1 else None)
            body.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
            continue
        if line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            head, rest = rows[0], rows[1:]
            if rest and all(re.fullmatch(r":?-{3,}:?", c) or c == "" for c in rest[0]):
                rest = rest[1:]
            t = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead>", "<tbody>"]
            t += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rest]
            body.append("\n".join(t + ["</tbody></table>"]))
            continue
        m = re.match(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", line.strip())
        if m:
            figs = []
            while i < len(lines) and (m := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", lines[i].strip())):
                alt, src = html.escape(m.group(1)), html.escape(m.group(2))
                figs.append(f'<figure><a href="{src}"><img src="{src}" alt="{alt}"></a><figcaption>{alt}</figcaption></figure>')
                i += 1
            body.append('<div class="figures">' + "\n".join(figs) + "</div>")
            continue
        if re.match(r"^\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                items.append("<li>" + _inline(re.sub(r"^\s*[-*]\s+", "", lines[i])) + "</li>")
                i += 1
            body.append("<ul>\n" + "\n".join(items) + "\n</ul>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,6}\s|\||!\[|\s*[-*]\s)", lines[i]):
            para.append(lines[i].strip())
            i += 1
        body.append(f"<p>{_inline(' '.join(para))}</p>")
    title = title or first_h1 or "report"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(re.sub(r'[*`]', '', title))}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report_html(report_md: str | Path) -> Path:
    """Write report.html beside report_md; returns its path."""
    report_md = Path(report_md)
    out = report_md.with_suffix(".html")
    out.write_text(markdown_to_html(report_md.read_text()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report_html",
                                 description="write report.html beside every report.md under the given paths")
    ap.add_argument("paths", nargs="+", help="report.md files or folders (searched recursively)")
    args = ap.parse_args(argv)
    reports = []
    for p in map(Path, args.paths):
        reports += sorted(p.rglob("report.md")) if p.is_dir() else [p]
    if not reports:
        print("error: no report.md found", file=sys.stderr)
        return 2
    for r in reports:
        print(write_report_html(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
