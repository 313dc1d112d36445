"""A HyperFace piece on a GPU: the same sampler, labels and losses as the Caffe pieces, run by the
PyTorch mirror of the deploy prototxt (training/torch_net.py), exported back as a Caffe model folder.

Three steps, so the machine with the GPU needs neither Caffe nor Caffe's protobuf module:

  pack    (here)  the training splits of the sets training.sampler reads, re-encoded as JPEG at
                  their own size (annotation files copied unchanged), a small held-out set, and the
                  net as JSON, as a tar.gz cut into chunks of at most --chunk-mb MB (a lent GPU
                  machine takes a limited upload per call; `cat chunk_* | tar xzf -` there);
  train   (GPU)   build the sampler over the unpacked folder, prefill its image cache once (forked
                  DataLoader workers share it), train for --iters iterations, or for what
                  --time-budget allows at the speed measured over the first iterations (the count
                  is then fixed and recorded, so `--iters` repeats the run); the losses of eq. 6,
                  BatchNorm after every convolution when starting from scratch (folded at export);
                  writes the deploy weights (fp16, in parts), the loss CSV and the piece's record;
  import  (here)  the parts -> caffemodel -> model folder (core.model_store.export_model) whose
                  model.json carries the piece's record, written by code.

A batch is a function of (seed, iteration), as in the Caffe pieces (training/sampler.py).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("training.accelerated")

NET_JSON = "net.json"
RECORD = "record.json"
LOSSES = "losses.csv"
WEIGHT_PART = "weights_part{:02d}.npz"
MINED = "mined.jsonl.gz"
TASKS = ("detection", "landmarks", "visibility", "pose", "gender")


def heldout_sets(root: Path) -> dict[str, tuple[str, Path, str]]:
    """The held-out splits the GPU piece reports its loss on (never trained on)."""
    return {"aflw_crops": ("aflw_crops", root / "aflw_crops", "test"),
            "wider": ("wider", root / "wider_train", "train-heldout"),
            "utkface": ("utkface", root / "utkface", "test")}


# ----------------------------------------------------------------------------------------------
# pack (here)
def pack(data_root: Path, out: Path, cfg, quality: int = 68, chunk_mb: float = 60.0, heldout_limit: int = 300,
         prototxt: Path | None = None) -> list[Path]:
    """out/tree (data/ with the sampler's training sets re-encoded as JPEG `quality` at their own size,
    `heldout_limit` images of each held-out set, every annotation file of those sets; net.json;
    pack.json) and the same as one tar.gz cut into out/chunk_NN files of at most chunk_mb MB, which
    `cat out/chunk_* | tar xzf -` puts back together. Returns the chunk files."""
    import cv2
    import gzip
    import tarfile

    from data_prep.readers import read_dataset
    from training.piece import DEPLOY
    from training.sampler import sampler_sets
    from training.torch_net import layer_specs

    data_root, out = Path(data_root).resolve(), Path(out)
    if out.exists():
        shutil.rmtree(out)
    tree = out / "tree"
    (tree / "data").mkdir(parents=True)
    sets = sampler_sets(data_root, cfg)
    images: dict[Path, None] = {}
    for dataset, root, split in sets.values():
        images.update((r.path, None) for r in read_dataset(dataset, root, split=split, config=cfg))
    for dataset, root, split in heldout_sets(data_root).values():
        images.update((r.path, None) for r in read_dataset(dataset, root, split=split, config=cfg)[:heldout_limit])
    annotations = sorted({p for _dataset, root, _split in sets.values() for p in Path(root).rglob("*")
                          if p.is_file() and p.suffix.lower() in (".csv", ".txt", ".pts")})
    for path in annotations:
        target = tree / "data" / path.relative_to(data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    from tqdm import tqdm
    for path in tqdm(sorted(images), desc="re-encode", unit="image"):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: unreadable image")
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        original = path.read_bytes()
        target = tree / "data" / path.relative_to(data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buf.tobytes() if ok and len(buf) < len(original) else original)
    (tree / NET_JSON).write_text(json.dumps(layer_specs(prototxt or DEPLOY)))
    (tree / "pack.json").write_text(json.dumps({"data_root": str(data_root), "images": len(images),
                                                "annotation_files": len(annotations), "jpeg_quality": quality,
                                                "heldout_limit": heldout_limit}, indent=2))
    archive = out / "tree.tar.gz"
    with gzip.open(archive, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    chunks, size = [], int(chunk_mb * 1e6)
    with open(archive, "rb") as f:
        while True:
            data = f.read(size)
            if not data:
                break
            chunks.append(out / f"chunk_{len(chunks):02d}")
            chunks[-1].write_bytes(data)
    archive.unlink()
    return chunks


# ----------------------------------------------------------------------------------------------
# train (GPU)
class BatchStream:
    """Map-style dataset: item k is batch `first + k` of the sampler (uint8 crops NHWC, labels)."""

    def __init__(self, sampler, first: int, count: int):
        self.sampler, self.first, self.count = sampler, first, count

    def __len__(self):
        return self.count

    def __getitem__(self, k):
        import torch
        crops, labels, _ = self.sampler.draw(self.first + int(k))
        return torch.from_numpy(np.stack(crops)), torch.from_numpy(labels)


def prefill(sampler, workers: int) -> int:
    """Decode every image the sampler can draw from into its cache (once, before the workers fork)."""
    from concurrent.futures import ThreadPoolExecutor
    pools = sampler.pools
    paths = {ref.image.path for refs in pools.faces.values() for ref in refs}
    paths |= {r.path for r in pools.photos_with_faces + pools.background_photos + pools.face_free_photos}
    paths = sorted(paths)
    from data_prep.readers.common import load_image
    with ThreadPoolExecutor(workers) as ex:
        for path, image in zip(paths, ex.map(load_image, paths)):
            sampler._cache[str(path)] = image
    return len(paths)


def present_only(pools):
    """`pools` without the images that are not on disk (a packed folder holds only the first
    --heldout-limit images of each held-out set)."""
    here = lambda path: Path(path).is_file()  # noqa: E731
    pools.faces = {name: [r for r in refs if here(r.image.path)] for name, refs in pools.faces.items()}
    pools.landmark_faces = [r for r in pools.landmark_faces if here(r.image.path)]
    pools.photos_with_faces = [r for r in pools.photos_with_faces if here(r.path)]
    pools.background_photos = [r for r in pools.background_photos if here(r.path)]
    pools.face_free_photos = [r for r in pools.face_free_photos if here(r.path)]
    return pools


def lr_at(iteration: int, total: int, base_lr: float, warmup: int, power: float) -> float:
    """Linear warm-up over `warmup` iterations, then Caffe's "poly" decay to 0 at `total`."""
    if iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    return base_lr * max(0.0, 1.0 - (iteration - warmup) / max(1, total - warmup)) ** power


PART_ELEMENTS = 8_350_000   # fp16 values per part: 16.7 MB, under the 16 MiB a lent machine returns per file


def save_weight_parts(weights: dict[str, list[np.ndarray]], out: Path, part_elements: int = PART_ELEMENTS) -> list[Path]:
    """fp16 weights as out/weights_partNN.npz: one flat fp16 vector cut into parts of part_elements
    values; part 0 also holds the index (layer#k, shape, offset) as JSON."""
    keys = [(f"{layer}#{k}", np.asarray(b)) for layer, blobs in weights.items() for k, b in enumerate(blobs)]
    index, offset = [], 0
    for key, arr in keys:
        index.append([key, list(arr.shape), offset])
        offset += arr.size
    flat = np.concatenate([arr.astype(np.float16).ravel() for _key, arr in keys])
    for old in out.glob("weights_part*.npz"):
        old.unlink()
    paths = []
    for i, start in enumerate(range(0, len(flat), part_elements)):
        path = out / WEIGHT_PART.format(i)
        tmp = out / f".{path.name}.tmp.npz"
        extra = {"index": np.array(json.dumps(index))} if i == 0 else {}
        np.savez(tmp, values=flat[start:start + part_elements], **extra)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def load_weight_parts(folder: Path) -> dict[str, list[np.ndarray]]:
    """Inverse of save_weight_parts: {layer: [blobs]} float32."""
    paths = sorted(Path(folder).glob("weights_part*.npz"))
    if not paths:
        raise ValueError(f"{folder}: no weights_part*.npz files")
    values, index = [], None
    for path in paths:
        with np.load(path) as npz:
            values.append(npz["values"])
            if "index" in npz.files:
                index = json.loads(str(npz["index"]))
    if index is None:
        raise ValueError(f"{folder}: weights_part00.npz holds no index")
    flat = np.concatenate(values)
    weights: dict[str, list[np.ndarray]] = {}
    for key, shape, offset in index:
        layer, _k = key.rsplit("#", 1)
        size = int(np.prod(shape)) if shape else 1
        weights.setdefault(layer, []).append(flat[offset:offset + size].astype(np.float32).reshape(shape))
    return weights


# ----------------------------------------------------------------------------------------------
# hard-negative mining on the GPU (bootstrapping between the phases of a piece)
class CandidateStream:
    """Item k: `per_item` background regions drawn as the sampler draws them (random regions of
    face-free and fully annotated photos, near misses), as plain crops (no flip or colour jitter)."""

    def __init__(self, sampler, count: int, per_item: int, seed: int):
        self.sampler, self.count, self.per_item, self.seed = sampler, count, per_item, seed

    def __len__(self):
        return self.count

    def __getitem__(self, k):
        import torch

        from core.geometry import crop_and_warp
        rng = np.random.default_rng([self.seed, 7_919, int(k)])
        inp = self.sampler.cfg.input
        crops, boxes, paths = [], [], []
        for _ in range(self.per_item):
            got = self.sampler._background(rng)
            if got is None:
                continue
            image, region, _label, path = got
            crops.append(crop_and_warp(image, region, inp.size, inp.mean_bgr))
            boxes.append(np.asarray(region, dtype=np.float64))
            paths.append(str(path))
        return torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(boxes)), paths


def mine(net, sampler, to_input, amp, args, phase_seed: int) -> tuple[list, dict]:
    """Score args.mine_candidates background regions with the current net; the highest-scored
    above args.mine_threshold (at most args.mine_keep) become the sampler's mined pool."""
    import torch
    per_item = 256
    stream = CandidateStream(sampler, max(1, args.mine_candidates // per_item), per_item, args.seed + phase_seed)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers, prefetch_factor=4
                                         if args.workers else None)
    scores, boxes, paths = [], [], []
    net.eval()
    with torch.no_grad(), amp:
        for crops, regions, names in loader:
            prob = net(to_input(crops))["detection_prob"][:, 1].float().cpu().numpy()
            keep = prob > args.mine_threshold
            scores.append(prob[keep])
            boxes.append(regions.numpy()[keep])
            paths += [n for n, k in zip(names, keep) if k]
    net.train()
    scores = np.concatenate(scores) if scores else np.zeros(0)
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    order = np.argsort(-scores, kind="stable")[:args.mine_keep]
    mined = [(Path(paths[i]), boxes[i]) for i in order]
    counts = {"candidates": len(stream) * per_item, "above_threshold": int(len(scores)), "kept": len(mined),
              "threshold": args.mine_threshold,
              "kept_from_face_free": sum("face_free" in str(p) for p, _b in mined)}
    return mined, counts, scores[order]


def train(args) -> dict:
    import torch

    from core.config import load_config
    from training.sampler import RegionSampler, build_pools, sampler_sets, sampling_record
    from training.torch_net import CaffeNet, hyperface_losses, parameter_groups, weighted_total

    t_start = time.time()
    cfg = load_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    layers = json.loads(Path(args.net).read_text())
    init = Path(args.init) if args.init else None
    net = CaffeNet(layers, batchnorm=init is None)
    if init is not None:
        from core.model_store import load_model, read_caffemodel
        net.load_deploy_weights(read_caffemodel(load_model(init).caffemodel))
    net = net.to(device).to(memory_format=torch.channels_last)
    groups = parameter_groups(net, weight_decay=args.weight_decay)
    opt = torch.optim.SGD(groups, lr=args.lr, momentum=0.9)

    sets = sampler_sets(Path(args.data_root), cfg)
    pools = build_pools(sets, cfg)
    sampler = RegionSampler(pools, cfg, batch_size=args.batch, seed=args.seed)
    t0 = time.time()
    n_images = prefill(sampler, max(1, os.cpu_count() or 1)) if args.prefill else 0
    log.info("decoded %d images in %.1f s; pools %s", n_images, time.time() - t0, json.dumps(pools.counts()))
    held_pools = present_only(build_pools(heldout_sets(Path(args.data_root)), cfg))
    held = RegionSampler(held_pools, cfg, batch_size=args.batch, seed=args.seed + 1)
    held_batches = [held.draw(k)[:2] for k in range(args.heldout_batches)]

    mean = torch.tensor(cfg.input.mean_bgr, device=device, dtype=torch.float32).view(1, 3, 1, 1)

    def to_input(crops):
        x = crops.to(device, non_blocking=True).permute(0, 3, 1, 2).float() - mean
        return x.contiguous(memory_format=torch.channels_last)

    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def heldout_loss() -> dict:
        net.eval()
        sums = {t: 0.0 for t in TASKS}
        with torch.no_grad(), amp:
            for crops, labels in held_batches:
                losses = hyperface_losses(net(to_input(torch.from_numpy(np.stack(crops)))),
                                          torch.from_numpy(labels).to(device))
                for t in TASKS:
                    sums[t] += float(losses[t]) / len(held_batches)
        net.train()
        sums["total"] = sum(float(getattr(cfg.loss_weights, t)) * sums[t] for t in TASKS)
        return sums

    total = args.iters or 10 ** 9
    mine_at = int(total * args.mine_at) if args.iters and args.mine_at > 0 else None

    def batches(first: int):
        """Batches first, first+1, ... from worker processes forked now (they see the current pools)."""
        return iter(torch.utils.data.DataLoader(BatchStream(sampler, first, 10 ** 9), batch_size=None, shuffle=False,
                                                num_workers=args.workers, pin_memory=device.type == "cuda",
                                                prefetch_factor=4 if args.workers else None))

    csv = open(out / LOSSES, "w")
    csv.write("iteration,lr,total," + ",".join(TASKS) + ",samples_per_s\n")
    history, running, skipped, mining = [], torch.zeros(len(TASKS), device=device), 0, None
    t_train, last_export, measured = time.time(), time.time(), False
    iteration, logged_at, t_logged = 0, 0, time.time()
    net.train()
    record = {}

    def export(final: bool):
        save_weight_parts(net.deploy_weights(), out)
        record.update({
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "final": final, "iterations": iteration, "planned_iterations": total if total < 10 ** 9 else None,
            "batch_size": args.batch, "base_lr": args.lr, "lr_policy": f"linear warm-up {args.warmup} iterations, "
            f"then poly power {args.lr_power} to 0 at the planned iterations", "momentum": 0.9,
            "weight_decay": args.weight_decay, "grad_clip_norm": args.clip,
            "init": str(init) if init else "from scratch (He-normal), BatchNorm after every convolution, folded at export",
            "engine": f"PyTorch {torch.__version__} mirror of prototxt/hyperface/deploy.prototxt on "
                      f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU'}, bf16 autocast",
            "seed": args.seed, "samples_seen": iteration * args.batch, "skipped_nonfinite": skipped,
            "wall_s": round(time.time() - t_start, 1), "train_s": round(time.time() - t_train, 1),
            "sampling": sampling_record(cfg),
            "pools": pools.counts(), "heldout_pools": held_pools.counts(), "heldout_loss": history,
            "mining": mining,
        })
        (out / RECORD).write_text(json.dumps(record, indent=2))

    stream = batches(0)
    while iteration < total:
        if mine_at is not None and iteration == mine_at and mining is None:
            del stream  # its workers forked before the pool existed
            t0 = time.time()
            mined, mining, kept_scores = mine(net, sampler, to_input, amp, args, phase_seed=iteration)
            sampler.pools.mined = mined
            mining.update({"at_iteration": iteration, "seconds": round(time.time() - t0, 1),
                           "kept_score_min": float(kept_scores.min()) if len(kept_scores) else None})
            write_mined(out / MINED, mined, Path(args.data_root), kept_scores)
            log.info("mining: %s", json.dumps(mining))
            stream = batches(iteration)
        crops, labels = next(stream)
        lr = lr_at(iteration, total if total < 10 ** 9 else 10 ** 6, args.lr, args.warmup, args.lr_power)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        x, y = to_input(crops), labels.to(device, non_blocking=True)
        with amp:
            losses = hyperface_losses(net(x), y)
        loss = weighted_total(losses, cfg.loss_weights)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            skipped += 1
            if skipped > 50:
                raise RuntimeError("more than 50 non-finite losses: lower --lr")
            iteration += 1
            continue
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        opt.step()
        running += torch.stack([losses[t].detach().float() for t in TASKS])
        iteration += 1
        if not measured and not args.iters and iteration == max(1, args.measure_after // 3):
            t_rate = time.time()  # the rate is timed after start-up (workers, cuDNN autotuning): 1/3 .. 3/3
        if not measured and not args.iters and iteration == args.measure_after:
            rate = (iteration - max(1, args.measure_after // 3)) / max(1e-6, time.time() - t_rate)
            left = args.time_budget - (time.time() - t_start) - (args.mine_reserve if args.mine_at > 0 else 0)
            total = iteration + max(args.warmup + 1, int(rate * left * 0.95))
            mine_at = int(total * args.mine_at) if args.mine_at > 0 else None
            measured = True
            log.info("speed %.2f it/s (%.0f samples/s): %d iterations in the budget, mining at %s",
                     rate, rate * args.batch, total, mine_at)
        if iteration % args.log_every == 0:
            rate = (iteration - logged_at) * args.batch / (time.time() - t_logged)
            avg = dict(zip(TASKS, (running / (iteration - logged_at)).tolist()))
            logged_at, t_logged = iteration, time.time()
            tot = sum(float(getattr(cfg.loss_weights, t)) * avg[t] for t in TASKS)
            csv.write(f"{iteration},{lr:.6g},{tot:.5f}," + ",".join(f"{avg[t]:.5f}" for t in TASKS) + f",{rate:.0f}\n")
            csv.flush()
            log.info("it %d/%s lr %.4g loss %.4f (%s) %.0f samples/s", iteration, total if total < 10 ** 9 else "?",
                     lr, tot, " ".join(f"{t[:4]} {avg[t]:.3f}" for t in TASKS), rate)
            running.zero_()
        if iteration % args.heldout_every == 0 or iteration == total:
            row = {"iteration": iteration, **{k: round(v, 5) for k, v in heldout_loss().items()}}
            history.append(row)
            log.info("held-out loss %s", json.dumps(row))
        if time.time() - last_export > args.export_every:
            export(final=False)
            last_export = time.time()
    del stream
    csv.close()
    export(final=True)
    log.info("done: %d iterations in %.0f s", iteration, time.time() - t_start)
    return record


def write_mined(path: Path, mined: list, data_root: Path, scores: np.ndarray) -> Path:
    """The mined pool as gzipped JSON Lines (image relative to the data root, box, score), so it
    travels between machines; `import` turns it into a pool for the next piece here."""
    import gzip
    with gzip.open(path, "wt") as f:
        for (image, box), score in zip(mined, scores):
            rel = os.path.relpath(image, data_root)
            f.write(json.dumps({"image": rel, "box": [round(float(v), 1) for v in box], "score": round(float(score), 4)})
                    + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# import (here)
def local_mined_pool(parts_dir: Path, data_root: Path) -> Path | None:
    """parts_dir/mined_pool.jsonl: the piece's mined regions in training/mining.py's pool format with
    image paths under this machine's `data_root` (`make train-hyperface MINED=...`); None without any."""
    import gzip
    source = Path(parts_dir) / MINED
    if not source.is_file():
        return None
    target = Path(parts_dir) / "mined_pool.jsonl"
    with gzip.open(source, "rt") as f, open(target, "w") as out:
        for line in f:
            if line.strip():
                item = json.loads(line)
                item["image"] = str(Path(data_root).resolve() / item["image"])
                out.write(json.dumps({**item, "round": 0}) + "\n")
    return target


def import_piece(parts_dir: Path, export_dir: Path, cfg=None, data_root: Path | None = None) -> Path:
    """The GPU piece's weights and record as a model folder (deploy prototxt of prototxt/hyperface);
    its mined regions become parts_dir/mined_pool.jsonl under `data_root` (default: core.config.DATA_ROOT)."""
    import tempfile

    from core.model_store import export_model, write_caffemodel
    from training.piece import DEPLOY, plot_validation

    from core.config import DATA_ROOT
    parts_dir = Path(parts_dir)
    record = json.loads((parts_dir / RECORD).read_text())
    pool = local_mined_pool(parts_dir, data_root or DATA_ROOT)
    weights = load_weight_parts(parts_dir)
    with tempfile.TemporaryDirectory() as tmp:
        caffemodel = write_caffemodel(DEPLOY, weights, Path(tmp) / "accelerated.caffemodel")
        piece = {"piece": 0, "what": "GPU piece (training/accelerated.py)", **record, "source": str(parts_dir),
                 # the piece's held-out validation: the eq. 6 task losses on fixed batches of WIDER
                 # train-heldout, aflw_crops test and UTKFace test (never trained on)
                 "validation": record.get("heldout_loss", []),
                 "validation_kind": "held-out loss per task (training/accelerated.py heldout_sets)",
                 "mined_pool": str(pool) if pool else None}
        meta = {"trained_here": "on the shared sets with training/accelerated.py (the sampler of training/sampler.py, "
                                "the losses of prototxt/hyperface/train_val.prototxt, a PyTorch mirror of the deploy net "
                                "on a GPU), not the paper's AFLW split",
                "pieces": [piece]}
        out = export_model(DEPLOY, caffemodel, export_dir, fp16=True, meta=meta, config=cfg)
    if (parts_dir / LOSSES).is_file():
        shutil.copyfile(parts_dir / LOSSES, Path(out) / "training_losses_gpu.csv")
        plot_losses(Path(out) / "training_losses_gpu.csv", Path(out) / "training_losses_gpu.png", record)
    plot_validation(meta["pieces"], Path(out) / "validation.png")
    return Path(out)


def plot_losses(csv_path: Path, png: Path, record: dict) -> Path:
    """Training losses per task and the held-out total of a GPU piece."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    frame = pd.read_csv(csv_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    for col in ("total",) + TASKS:
        ax.plot(frame["iteration"], frame[col], label=f"train {col}", lw=1.2 if col == "total" else 0.8)
    held = record.get("heldout_loss") or []
    if held:
        ax.plot([h["iteration"] for h in held], [h["total"] for h in held], "ko-", label="held-out total")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_title(f"GPU piece: batch {record.get('batch_size')}, {record.get('iterations')} iterations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.accelerated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="re-encoded training data + net.json as upload-sized tar.gz chunks")
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quality", type=int, default=68, help="JPEG quality of the re-encoded images")
    p.add_argument("--chunk-mb", type=float, default=60.0)
    p.add_argument("--heldout-limit", type=int, default=300)
    p.add_argument("--config", type=Path, default=None)
    t = sub.add_parser("train", help="one piece on the GPU (or --cpu) from an unpacked data folder")
    t.add_argument("--data-root", type=Path, required=True)
    t.add_argument("--net", type=Path, required=True, help="net.json written by pack")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--init", type=Path, default=None, help="model folder to start from (default: from scratch + BN)")
    t.add_argument("--iters", type=int, default=None, help="fixed iteration count (default: what --time-budget allows)")
    t.add_argument("--time-budget", type=float, default=420.0, help="seconds for the whole command")
    t.add_argument("--measure-after", type=int, default=300,
                   help="the run is sized by the speed of iterations measure_after/3 .. measure_after")
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--lr", type=float, default=0.02)
    t.add_argument("--lr-power", type=float, default=1.0)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--clip", type=float, default=20.0)
    t.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--heldout-every", type=int, default=500)
    t.add_argument("--heldout-batches", type=int, default=8)
    t.add_argument("--export-every", type=float, default=120.0, help="seconds between interim exports")
    t.add_argument("--mine-at", type=float, default=0.6,
                   help="share of the iterations after which one round of hard-negative mining runs (0: none)")
    t.add_argument("--mine-candidates", type=int, default=300_000, help="background regions scored by the round")
    t.add_argument("--mine-threshold", type=float, default=0.3)
    t.add_argument("--mine-keep", type=int, default=40_000)
    t.add_argument("--mine-reserve", type=float, default=45.0, help="seconds of the budget kept for mining")
    t.add_argument("--config", type=Path, default=None)
    t.add_argument("--cpu", action="store_true")
    t.add_argument("--no-prefill", dest="prefill", action="store_false",
                   help="decode images on first use instead of all up front (small test runs)")
    i = sub.add_parser("import", help="GPU piece output -> model folder")
    i.add_argument("parts", type=Path)
    i.add_argument("--export", type=Path, required=True)
    i.add_argument("--data-root", type=Path, default=None, help="where the mined pool's images are here "
                                                                 "(default: ../shared/data)")
    i.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    from core.config import load_config
    if args.command == "pack":
        for chunk in pack(args.data_root, args.out, load_config(args.config), args.quality, args.chunk_mb,
                          args.heldout_limit):
            print(f"{chunk}: {chunk.stat().st_size / 1e6:.1f} MB")
    elif args.command == "train":
        train(args)
    else:
        print(import_piece(args.parts, args.export, load_config(args.config), args.data_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
