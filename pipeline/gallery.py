"""`python -m pipeline gallery OUT`: a static HTML gallery of a run, `OUT/index.html`.

No server and no CDN: the page, its script and its styles are one file, and all it loads is written
beside it, under OUT/gallery/:
  data.js          the faces of every photo (from OUT/index.jsonl, pipeline/index.py, brought up to date
                   first; rounded for display: the JSON files stay the record)
  thumbs/<stem>.jpg  the overlay (OUT/<stem>.png) at most --thumb-side px (default 256), JPEG
  faces/<stem>.jpg   one sprite per photo: each face's crop of the overlay (its landmarks, box and pose
                   axes drawn by pipeline/draw.py), --face-side px square, 10 per row
Thumbnails and sprites are made again only when the overlay is newer, so rerunning the command
after a resumed run is cheap. A photo without its PNG (e.g. a benchmark's JSON-only results) is
drawn from its source image when that is readable.

The page shows `per` photos a page; each with its thumbnail (a link to the full overlay), its name,
its face count, and per face the crop, score, gender (label, P(male)) and pose. Filters: minimum
score, gender, yaw range, and "only photos with a matching face"; they and the page live in the URL
hash (`index.html#page=2&per=24&minscore=0.5&gender=f&yawmin=-30&yawmax=30&only=1`), so a view can
be bookmarked. For tests and benchmarks the page reports in `<body data-*>`: rendered, photos-shown,
faces-shown, page, pages, render-ms.

`python -m pipeline gallery runs/bench/<dataset>` (a folder with report.md) also writes report.html
(benchmarks/report_html.py).
"""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from pipeline.index import ResultIndex
from pipeline.model_store import atomic_write_bytes

log = logging.getLogger(__name__)
GALLERY_DIR = "gallery"
PAGE_NAME = "index.html"
SPRITE_COLS = 10
DEFAULT_PER_PAGE = 48
JPEG_QUALITY = 80


def _round(v, nd):
    return None if v is None else round(float(v), nd)


def face_entry(face: dict) -> list:
    """[score, gender "m"/"f"/"", P(male), roll, pitch, yaw, x1, y1, x2, y2] (compact, for the page)."""
    pose = face.get("pose_deg") or {}
    gender = face.get("gender") or {}
    return [_round(face.get("score"), 3), gender.get("label") or "", _round(gender.get("prob_male"), 3),
            _round(pose.get("roll"), 1), _round(pose.get("pitch"), 1), _round(pose.get("yaw"), 1),
            *[_round(v, 1) for v in face["box"]]]


def thumb_size(width: int, height: int, side: int) -> tuple[int, int]:
    s = min(1.0, side / max(width, height, 1))
    return max(1, round(width * s)), max(1, round(height * s))


def face_crop(image: np.ndarray, box, side: int) -> np.ndarray:
    """A side x side square around the face box (1.4x its longer side), grey where outside the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    extent = 1.4 * max(x2 - x1, y2 - y1, 1.0)
    s = side / extent
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    m = np.array([[s, 0, side / 2 - s * cx], [0, s, side / 2 - s * cy]], dtype=np.float64)
    return cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))


def face_sprite(image: np.ndarray, faces: list[dict], side: int) -> np.ndarray:
    rows = math.ceil(len(faces) / SPRITE_COLS)
    sprite = np.full((rows * side, min(len(faces), SPRITE_COLS) * side, 3), 128, np.uint8)
    for k, f in enumerate(faces):
        r, c = divmod(k, SPRITE_COLS)
        sprite[r * side:(r + 1) * side, c * side:(c + 1) * side] = face_crop(image, f["box"], side)
    return sprite


def _overlay(out: Path, stem: str, record: dict) -> np.ndarray | None:
    png = out / f"{stem}.png"
    image = cv2.imread(str(png), cv2.IMREAD_COLOR) if png.is_file() else None
    if image is not None:
        return image
    src = Path(record["image"])
    image = cv2.imread(str(src), cv2.IMREAD_COLOR) if src.is_file() else None
    if image is None:
        return None
    from core.face import Face  # noqa: PLC0415
    from pipeline.draw import draw_faces  # noqa: PLC0415
    doc = json.loads((out / record["result"]).read_text())
    faces = []
    for f in doc["faces"]:
        prob = (f.get("gender") or {}).get("prob_male")
        faces.append(Face.from_dict({**f, "gender": {"prob_male": float("nan") if prob is None else prob}}))
    return draw_faces(image, faces)


def _jpeg(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    atomic_write_bytes(path, data.tobytes())


def build_gallery(out: str | Path, thumb_side: int = 256, face_side: int = 72, per_page: int = DEFAULT_PER_PAGE,
                  title: str | None = None) -> Path:
    """Write OUT/index.html and OUT/gallery/ for the results in OUT; returns the page's path."""
    out = Path(out)
    index = ResultIndex(out)
    index.sync()
    # the results that are still there (the index is append-only: a deleted result keeps its line)
    records = sorted((r for r in index.records() if (out / r["result"]).is_file()), key=lambda r: r["result"])
    gdir = out / GALLERY_DIR
    (gdir / "thumbs").mkdir(parents=True, exist_ok=True)
    (gdir / "faces").mkdir(parents=True, exist_ok=True)
    photos = []
    for rec in records:
        stem = rec["result"][:-len(".json")]
        thumb, sprite = gdir / "thumbs" / f"{stem}.jpg", gdir / "faces" / f"{stem}.jpg"
        png = out / f"{stem}.png"
        source_time = max(png.stat().st_mtime if png.is_file() else 0.0, (out / rec["result"]).stat().st_mtime)
        fresh = thumb.is_file() and thumb.stat().st_mtime >= source_time and \
            (not rec["faces"] or (sprite.is_file() and sprite.stat().st_mtime >= source_time))
        has_thumb = fresh
        if not fresh:
            image = _overlay(out, stem, rec)
            if image is None:
                log.warning("%s: no overlay PNG and no readable source image; no thumbnail", stem)
            else:
                tw, th = thumb_size(image.shape[1], image.shape[0], thumb_side)
                _jpeg(thumb, cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA))
                if rec["faces"]:
                    _jpeg(sprite, face_sprite(image, rec["faces"], face_side))
                has_thumb = True
        tw, th = thumb_size(rec["width"], rec["height"], thumb_side)
        photos.append({"n": stem, "img": rec["image"], "w": rec["width"], "h": rec["height"], "tw": tw, "th": th,
                       "t": has_thumb, "png": png.is_file(), "f": [face_entry(f) for f in rec["faces"]]})
    data = {"version": 1, "title": title or f"HyperFace results: {out.resolve().name}", "face_side": face_side,
            "cols": SPRITE_COLS, "per_page": per_page, "photos": photos}
    atomic_write_bytes(gdir / "data.js", ("window.HYPERFACE_GALLERY = " +
                                          json.dumps(data, separators=(",", ":"), allow_nan=False) + ";\n").encode())
    page = out / PAGE_NAME
    atomic_write_bytes(page, PAGE.replace("__TITLE__", _html_escape(data["title"])).encode())
    return page


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def gallery_weight(out: str | Path) -> dict[str, int]:
    """Bytes of the gallery (index.html + gallery/) and of the overlay PNGs it shows."""
    out = Path(out)
    gallery = (out / PAGE_NAME).stat().st_size + sum(p.stat().st_size for p in (out / GALLERY_DIR).rglob("*")
                                                      if p.is_file())
    overlays = sum(p.stat().st_size for p in out.glob("*.png"))
    return {"gallery_bytes": gallery, "overlay_bytes": overlays}


def add_arguments(ap) -> None:
    ap.add_argument("out", help="a run's output folder (or a benchmark folder with report.md)")
    ap.add_argument("--thumb-side", type=int, default=256, help="thumbnail longer side, px")
    ap.add_argument("--face-side", type=int, default=72, help="face crop side, px")
    ap.add_argument("--per-page", type=int, default=DEFAULT_PER_PAGE, help="photos per page (the page can change it)")


def run_command(args) -> int:
    out = Path(args.out)
    if not out.is_dir():
        print(f"error: {out}: not a folder", file=sys.stderr)
        return 2
    wrote = []
    if (out / "report.md").is_file():
        from benchmarks.report_html import write_report_html  # noqa: PLC0415
        wrote.append(write_report_html(out / "report.md"))
    index = ResultIndex(out)
    if index.path.is_file() or index.result_files():
        if not args.thumb_side > 0 or not args.face_side > 0 or not args.per_page > 0:
            print("error: --thumb-side, --face-side and --per-page must be positive", file=sys.stderr)
            return 2
        page = build_gallery(out, args.thumb_side, args.face_side, args.per_page)
        w = gallery_weight(out)
        n = sum((out / r["result"]).is_file() for r in index.records())
        wrote.append(page)
        print(f"{page}: {n} photos; gallery {w['gallery_bytes'] / 1e6:.1f} MB, overlays {w['overlay_bytes'] / 1e6:.1f} MB")
    if not wrote:
        print(f"error: {out}: no results (*.json, index.jsonl) and no report.md", file=sys.stderr)
        return 2
    if len(wrote) > 1 or not wrote[0].name == PAGE_NAME:
        for p in wrote:
            print(f"wrote {p}")
    return 0


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f4f4f2; color: #222; }
  header { position: sticky; top: 0; background: #263238; color: #eceff1; padding: 8px 14px; z-index: 1; }
  header h1 { font-size: 17px; margin: 0 0 6px 0; }
  #controls { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
  #controls label { white-space: nowrap; }
  #controls input[type=number] { width: 4.5em; }
  #summary { margin-top: 4px; color: #b0bec5; }
  #grid { display: flex; flex-wrap: wrap; gap: 12px; padding: 12px; }
  .photo { background: #fff; border: 1px solid #ddd; border-radius: 4px; margin: 0; padding: 6px; width: 268px; }
  .photo img.thumb { display: block; max-width: 256px; height: auto; margin: 0 auto; background: #ccc; }
  .photo figcaption { margin: 4px 0; display: flex; justify-content: space-between; gap: 6px; }
  .photo .name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .photo .count { color: #555; white-space: nowrap; }
  .faces { display: flex; flex-wrap: wrap; gap: 4px; }
  .face { width: 84px; font-size: 11px; line-height: 1.2; }
  .face .crop { background-color: #888; background-repeat: no-repeat; margin: 0 auto; }
  .face .meta { text-align: center; }
  .g-m { color: #1565c0; } .g-f { color: #ad1457; }
  #pager button { min-width: 5em; }
  .empty { padding: 24px; color: #666; }
</style>
</head>
<body>
<header>
  <h1 id="title">__TITLE__</h1>
  <div id="controls">
    <label>min score <input id="minscore" type="number" min="0" max="1" step="0.05" value="0"></label>
    <label>gender <select id="gender"><option value="any">any</option><option value="m">male</option><option value="f">female</option></select></label>
    <label>yaw from <input id="yawmin" type="number" min="-90" max="90" step="5" value="-90"> to <input id="yawmax" type="number" min="-90" max="90" step="5" value="90"> deg</label>
    <label><input id="only" type="checkbox"> only photos with a matching face</label>
    <label>per page <select id="per"><option>12</option><option>24</option><option>48</option><option>96</option><option>192</option></select></label>
    <span id="pager"><button id="prev" type="button">&larr; prev</button> <span id="pageinfo"></span> <button id="next" type="button">next &rarr;</button></span>
  </div>
  <div id="summary"></div>
</header>
<main id="grid"></main>
<script src="gallery/data.js"></script>
<script>
(function () {
  "use strict";
  var G = window.HYPERFACE_GALLERY;
  var grid = document.getElementById("grid");
  if (!G) { grid.textContent = "gallery/data.js is missing: run python -m pipeline gallery on this folder"; return; }
  var S = {page: 1, per: G.per_page, minscore: 0, gender: "any", yawmin: -90, yawmax: 90, only: false};
  var el = function (id) { return document.getElementById(id); };
  var perSel = el("per");
  if (![].some.call(perSel.options, function (o) { return +o.value === G.per_page; })) {
    var o = document.createElement("option"); o.textContent = String(G.per_page); perSel.appendChild(o);
  }
  function num(v, d) { var x = parseFloat(v); return isFinite(x) ? x : d; }
  function readHash() {
    var p = new URLSearchParams(location.hash.slice(1));
    S.page = Math.max(1, Math.floor(num(p.get("page"), 1)));
    S.per = Math.max(1, Math.floor(num(p.get("per"), G.per_page)));
    S.minscore = num(p.get("minscore"), 0);
    S.gender = ["m", "f"].indexOf(p.get("gender")) >= 0 ? p.get("gender") : "any";
    S.yawmin = num(p.get("yawmin"), -90); S.yawmax = num(p.get("yawmax"), 90);
    S.only = p.get("only") === "1";
  }
  function writeHash() {
    var p = new URLSearchParams();
    if (S.page !== 1) p.set("page", S.page);
    if (S.per !== G.per_page) p.set("per", S.per);
    if (S.minscore > 0) p.set("minscore", S.minscore);
    if (S.gender !== "any") p.set("gender", S.gender);
    if (S.yawmin > -90) p.set("yawmin", S.yawmin);
    if (S.yawmax < 90) p.set("yawmax", S.yawmax);
    if (S.only) p.set("only", "1");
    history.replaceState(null, "", "#" + p.toString());
  }
  function showControls() {
    el("minscore").value = S.minscore; el("gender").value = S.gender;
    el("yawmin").value = S.yawmin; el("yawmax").value = S.yawmax; el("only").checked = S.only;
    perSel.value = String(S.per);
  }
  function yawOk(y) {
    if (S.yawmin <= -90 && S.yawmax >= 90) return true;
    return y !== null && y >= S.yawmin && y <= S.yawmax;
  }
  function faceOk(f) {
    return (f[0] === null ? 0 : f[0]) >= S.minscore && (S.gender === "any" || f[1] === S.gender) && yawOk(f[5]);
  }
  function fmt(v, d) { return v === null ? "n/a" : (Math.abs(v) < 0.5 * Math.pow(10, -d) ? 0 : v).toFixed(d); }
  function add(parent, tag, cls, text) {
    var e = document.createElement(tag); if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; parent.appendChild(e); return e;
  }
  function card(p, matched) {
    var fig = document.createElement("figure");
    fig.className = "photo"; fig.dataset.name = p.n; fig.dataset.faces = p.f.length; fig.dataset.facesShown = matched.length;
    var stem = encodeURIComponent(p.n);
    var a = add(fig, "a"); a.href = p.png ? stem + ".png" : "#"; a.title = p.img;
    var img = add(a, "img", "thumb"); img.alt = p.n; img.width = p.tw; img.height = p.th; img.loading = "lazy";
    if (p.t) img.src = "gallery/thumbs/" + stem + ".jpg";
    var cap = add(fig, "figcaption");
    add(cap, "span", "name", p.n).title = p.img;
    add(cap, "span", "count", matched.length === p.f.length ? p.f.length + (p.f.length === 1 ? " face" : " faces")
                                                            : matched.length + " of " + p.f.length + " faces");
    var faces = add(fig, "div", "faces"), side = G.face_side;
    matched.forEach(function (m) {
      var f = m[0], k = m[1];
      var d = add(faces, "div", "face");
      d.dataset.score = f[0]; d.dataset.gender = f[1]; d.dataset.yaw = f[5] === null ? "" : f[5]; d.dataset.k = k;
      var c = add(d, "div", "crop");
      c.style.width = side + "px"; c.style.height = side + "px";
      if (p.t) {
        c.style.backgroundImage = "url(gallery/faces/" + stem + ".jpg)";
        c.style.backgroundPosition = (-(k % G.cols) * side) + "px " + (-Math.floor(k / G.cols) * side) + "px";
      }
      var meta = add(d, "div", "meta");
      add(meta, "div", "score", "score " + fmt(f[0], 2));
      add(meta, "div", f[1] ? "gender g-" + f[1] : "gender", f[1] ? (f[1] === "m" ? "male " : "female ") + fmt(f[2], 2) : "gender n/a");
      add(meta, "div", "pose", "yaw " + fmt(f[5], 0) + " pitch " + fmt(f[4], 0) + " roll " + fmt(f[3], 0));
      d.title = "box " + f.slice(6).map(function (v) { return fmt(v, 0); }).join(", ");
    });
    return fig;
  }
  function render() {
    var t0 = performance.now();
    var sel = [], facesShown = 0;
    G.photos.forEach(function (p) {
      var m = [];
      p.f.forEach(function (f, k) { if (faceOk(f)) m.push([f, k]); });
      if (!S.only || m.length) sel.push([p, m]);
    });
    var pages = Math.max(1, Math.ceil(sel.length / S.per));
    S.page = Math.min(S.page, pages);
    var shown = sel.slice((S.page - 1) * S.per, S.page * S.per);
    var frag = document.createDocumentFragment();
    shown.forEach(function (s) { facesShown += s[1].length; frag.appendChild(card(s[0], s[1])); });
    grid.replaceChildren(frag);
    if (!shown.length) add(grid, "div", "empty", "no photo matches the filters");
    var total = 0; sel.forEach(function (s) { total += s[1].length; });
    el("pageinfo").textContent = "page " + S.page + " of " + pages;
    el("prev").disabled = S.page <= 1; el("next").disabled = S.page >= pages;
    el("summary").textContent = sel.length + " of " + G.photos.length + " photos, " + total + " faces match; " +
        "this page: " + shown.length + " photos, " + facesShown + " faces";
    var b = document.body.dataset;
    b.photosShown = shown.length; b.facesShown = facesShown; b.page = S.page; b.pages = pages;
    b.renderMs = (performance.now() - t0).toFixed(1); b.rendered = "1";
  }
  function update() { writeHash(); render(); }
  ["minscore", "yawmin", "yawmax"].forEach(function (id) {
    el(id).addEventListener("input", function () { S[id] = num(this.value, S[id]); S.page = 1; update(); });
  });
  el("gender").addEventListener("change", function () { S.gender = this.value; S.page = 1; update(); });
  el("only").addEventListener("change", function () { S.only = this.checked; S.page = 1; update(); });
  perSel.addEventListener("change", function () { S.per = +this.value; S.page = 1; update(); });
  el("prev").addEventListener("click", function () { S.page -= 1; update(); window.scrollTo(0, 0); });
  el("next").addEventListener("click", function () { S.page += 1; update(); window.scrollTo(0, 0); });
  window.addEventListener("hashchange", function () { readHash(); showControls(); render(); });
  readHash(); showControls(); render();
  window.addEventListener("load", function () { document.body.dataset.loadMs = performance.now().toFixed(1); });
})();
</script>
</body>
</html>
"""
