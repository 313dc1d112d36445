"""Held-out accuracy per training piece of the Fast-HyperFace proposal net: does another piece still pay?

    python benchmarks/plateau.py --net LABEL=MODEL_DIR:RESULTS_DIR:RECALL_DIR [--net ...]
           [--baseline LABEL=RESULTS_DIR] [--data DIR] [--out runs/bench/plateau]

Each --net is one proposal net, in training order: MODEL_DIR a model folder whose proposals/ is that
net (with its own threshold and box style, `make calibrate-threshold CAL_LIMIT=30`), RESULTS_DIR its
pipeline results on the 150 held-out WIDER photos (`python -m benchmarks wider-heldout --threshold 0.3
--limit 150`, the model's box style) and RECALL_DIR its proposal benchmark (`python -m benchmarks
proposals --out`). For each: the proposal net's training iterations so far (its model.json: every earlier
piece plus its own), held-out proposal recall at IoU 0.5, and face-eval AP on the held-out photos after
those that chose its threshold (31-150 after `CAL_LIMIT=30`, as its model.json records) and on all of them,
with faces found / false positives at its threshold (benchmarks.threshold.check_choice).
A --baseline (e.g. MTCNN's `benchmarks baselines` results) is scored the same way, all its detections
counted, and drawn as a line. Writes plateau.md, plateau.json and plateau.png under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.config import DATA_ROOT, load_config  # noqa: E402
from core.errors import HyperFaceError  # noqa: E402


def chain_iterations(meta: dict) -> int:
    """Training iterations behind a proposal net: its own piece's plus every earlier piece's
    (model.json meta, `earlier_pieces` oldest first, as `training export-ssd --previous` keeps them)."""
    return int(meta.get("iterations", 0)) + sum(int(p.get("iterations", 0)) for p in meta.get("earlier_pieces", []))


def recall_at_05(recall_dir: Path) -> float:
    """Held-out proposal recall at IoU 0.5, all faces, from `python -m benchmarks proposals`'s recall.json."""
    path = Path(recall_dir) / "recall.json"
    if not path.is_file():
        raise HyperFaceError(path, "not found (run python -m benchmarks proposals --out for this net)")
    return float(json.loads(path.read_text())["summary"]["SSD net"]["recall 0.5 (all)"])


def score_subsets(results: Path, style, threshold: float, chose: int, data: Path, cfg) -> dict:
    """check_choice on the held-out photos after the first `chose` (those chose the threshold and box
    style) and on all of them (sampling.wider_train_test_images)."""
    from benchmarks.threshold import check_choice

    out = {}
    for name, skip in (("heldout", chose), ("all", 0)):
        r = check_choice("wider-heldout", data, results, cfg, style, threshold, cfg.sampling.wider_train_test_images, skip)
        out[name] = {"AP": r["AP_styled"], "found": r["TP"], "FP": r["FP"], "faces": r["faces"]}
    return out


def score_net(label: str, model_dir: Path, results: Path, recall_dir: Path, data: Path, cfg) -> dict:
    meta_path = Path(model_dir) / "model.json"
    ssd_meta_path = Path(model_dir) / "proposals" / "model.json"
    for path in (meta_path, ssd_meta_path):
        if not path.is_file():
            raise HyperFaceError(path, "not found")
    model = json.loads(meta_path.read_text())
    ssd = json.loads(ssd_meta_path.read_text())
    chose = model.get("detection_threshold_chosen", {}).get("images")
    if not chose:
        raise HyperFaceError(meta_path, "no detection_threshold_chosen.images (run make calibrate-threshold CAL_LIMIT=30)")
    row = {"net": label, "iterations": chain_iterations(ssd["meta"]), "proposal_recall": round(recall_at_05(recall_dir), 4),
           "threshold": model["detection_threshold"], "chose_on_photos": int(chose)}
    return {**row, **score_subsets(results, model["box_style"], model["detection_threshold"], int(chose), data, cfg)}


def write_report(rows: list[dict], baselines: list[dict], photos: dict, out: Path) -> None:
    """photos: {"heldout": "31-150", "all": "1-150"}, the labels of the two subsets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "plateau.json").write_text(json.dumps({"photos": photos, "nets": rows, "baselines": baselines}, indent=1) + "\n")
    held, every = photos["heldout"], photos["all"]
    lines = [f"| proposal net | iterations | proposal recall (IoU 0.5) | AP photos {held} | AP {every} | "
             f"{held} at its threshold: found / FP |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['iterations']} | {100 * r['proposal_recall']:.1f} % | "
                     f"{100 * r['heldout']['AP']:.1f} % | {100 * r['all']['AP']:.1f} % | "
                     f"{r['heldout']['found']} / {r['heldout']['FP']} |")
    for b in baselines:
        lines.append(f"| {b['net']} | | | {100 * b['heldout']['AP']:.1f} % | {100 * b['all']['AP']:.1f} % | |")
    (out / "plateau.md").write_text("\n".join(lines) + "\n")

    fig, (ax_ap, ax_recall) = plt.subplots(1, 2, figsize=(10, 4))
    its = [r["iterations"] for r in rows]
    for name, style in (("heldout", "o-"), ("all", "s--")):
        ax_ap.plot(its, [100 * r[name]["AP"] for r in rows], style, label=f"HyperFace, photos {photos[name]}")
    for b, colour in zip(baselines, ("tab:red", "tab:purple", "tab:brown")):
        for name, ls in (("heldout", "-"), ("all", "--")):
            ax_ap.axhline(100 * b[name]["AP"], color=colour, ls=ls, lw=1, label=f"{b['net']}, photos {photos[name]}")
    for r in rows:
        ax_ap.annotate(r["net"], (r["iterations"], 100 * r["all"]["AP"]), textcoords="offset points", xytext=(0, -14),
                       ha="center", fontsize=8)
    ax_ap.set(xlabel="proposal-net training iterations (all pieces)", ylabel="held-out WIDER AP (%)",
              title="pipeline AP per proposal-net piece")
    ax_ap.margins(x=0.08, y=0.2)
    ax_ap.legend(fontsize=7)
    ax_recall.plot(its, [100 * r["proposal_recall"] for r in rows], "o-")
    ax_recall.axhline(95.0, color="grey", ls=":", lw=1, label="issue 12 target")
    ax_recall.set(xlabel="proposal-net training iterations (all pieces)", ylabel="proposal recall, IoU 0.5 (%)",
                  title="held-out proposal recall (299 faces)")
    ax_recall.margins(x=0.08, y=0.2)
    ax_recall.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "plateau.png", dpi=110)
    plt.close(fig)


def _split(spec: str, parts: int) -> tuple[str, list[Path]]:
    label, _, rest = spec.partition("=")
    paths = rest.split(":")
    if not label or len(paths) != parts:
        raise HyperFaceError(spec, f"expected LABEL={':'.join(['DIR'] * parts)}")
    return label, [Path(p) for p in paths]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/plateau.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", action="append", required=True, help="LABEL=MODEL_DIR:RESULTS_DIR:RECALL_DIR (training order)")
    p.add_argument("--baseline", action="append", default=[], help="LABEL=RESULTS_DIR")
    p.add_argument("--data", type=Path, default=DATA_ROOT / "wider_train")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "plateau")
    p.add_argument("--config", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
        rows = []
        for spec in args.net:
            label, (model, results, recall) = _split(spec, 3)
            rows.append(score_net(label, model, results, recall, args.data, cfg))
        chose = {r["chose_on_photos"] for r in rows}
        if len(chose) != 1:
            raise HyperFaceError(f"the nets' thresholds were chosen on different numbers of photos ({sorted(chose)})")
        chose = chose.pop()
        baselines = []
        for spec in args.baseline:   # every detection counted, the detector's own boxes
            label, (results,) = _split(spec, 1)
            baselines.append({"net": label, **score_subsets(results, (0.0, 0.0, 1.0, 1.0), 0.0, chose, args.data, cfg)})
        n = cfg.sampling.wider_train_test_images
        write_report(rows, baselines, {"heldout": f"{chose + 1}-{n}", "all": f"1-{n}"}, args.out)
    except HyperFaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((args.out / "plateau.md").read_text(), end="")
    print(f"figure: {args.out / 'plateau.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
