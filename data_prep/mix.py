"""Training mixes: one LMDB pair from several datasets, each capped at a number of images.

A set is `DATASET=ROOT[:LIMIT[:SPLIT]]` (e.g. `aflw_crops=../shared/data/aflw_crops:4000`), or, with
the shared data folder's default roots, `--mix aflw_crops=4000,wider=600,helen=870,utkface=1500`.
Images of all sets are interleaved in a seeded order; the LMDB keys shuffle the samples again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import DATA_ROOT, HyperFaceConfig
from data_prep.build import build_lmdb
from data_prep.errors import DataPrepError
from data_prep.readers import CROP_DATASETS, read_dataset

log = logging.getLogger(__name__)

SHARED_DATA = DATA_ROOT
# Dataset kind and folder (under the shared data folder) of each set name `--mix` accepts.
DEFAULT_SETS = {
    "helen": ("300w", "helen"),
    "300w": ("300w", "helen"),
    "aflw_crops": ("aflw_crops", "aflw_crops"),
    "wider": ("wider", "wider_train"),
    "utkface": ("utkface", "utkface"),
    "aflw2000": ("aflw2000", "aflw2000_sample"),
}


@dataclass(frozen=True)
class MixSet:
    dataset: str          # reader name (aflw, 300w, aflw2000, aflw_crops, wider, utkface)
    root: Path
    limit: int | None = None
    split: str = "train"
    name: str = ""         # name in the manifest (defaults to dataset)


def parse_set(text: str) -> MixSet:
    """`DATASET=ROOT[:LIMIT[:SPLIT]]` -> MixSet."""
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected DATASET=ROOT[:LIMIT[:SPLIT]]")
    dataset, rest = text.split("=", 1)
    parts = rest.split(":")
    limit = int(parts[1]) if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    kind = DEFAULT_SETS.get(dataset, (dataset, None))[0]
    return MixSet(dataset=kind, root=Path(parts[0]), limit=limit, split=split, name=dataset)


def parse_mix(text: str, data_root: Path = SHARED_DATA) -> list[MixSet]:
    """`name=LIMIT[:SPLIT],...` with the default roots under `data_root` (split default 'train';
    e.g. `wider=1239:train-fit` leaves out the held-out WIDER photos)."""
    sets = []
    for item in filter(None, text.split(",")):
        name, _, limit = item.partition("=")
        limit, _, split = limit.partition(":")
        if name not in DEFAULT_SETS:
            raise ValueError(f"--mix: unknown set {name!r}; known: {sorted(DEFAULT_SETS)}")
        kind, folder = DEFAULT_SETS[name]
        sets.append(MixSet(dataset=kind, root=Path(data_root) / folder, limit=int(limit) if limit else None,
                           split=split or "train", name=name))
    return sets


def read_mix(sets: list[MixSet], out_dir: str | Path, cfg: HyperFaceConfig) -> tuple[list, dict]:
    """The images of every set (its split, capped at its limit) as (set name, dataset, ImageRecord),
    interleaved in a seeded order, and the manifest's `sources` entry. Shared by the HyperFace mix
    and the SSD LMDB (data_prep/ssd_lmdb.py)."""
    names = [s.name or s.dataset for s in sets]
    if len(set(names)) != len(names):
        raise DataPrepError(out_dir, f"a set name appears twice in the mix: {names}")
    entries, sources = [], {}
    for mix_set, name in zip(sets, names):
        records = read_dataset(mix_set.dataset, mix_set.root, split=mix_set.split, limit=mix_set.limit, config=cfg)
        entries += [(name, mix_set.dataset, r) for r in records]
        sources[name] = {"dataset": mix_set.dataset, "root": str(mix_set.root), "split": mix_set.split,
                         "limit": mix_set.limit, "images": len(records)}
        log.info("mix: %s: %d images from %s", name, len(records), mix_set.root)
    order = np.random.default_rng(cfg.sampling.seed).permutation(len(entries))
    return [entries[i] for i in order], sources


def build_mix(sets: list[MixSet], out_dir: str | Path, cfg: HyperFaceConfig, workers: int = 2,
              overwrite: bool = False) -> dict:
    """Read every set (capped at its limit of images), interleave them in a seeded order and build
    one LMDB pair; returns the manifest (counts per set under counts_per_set)."""
    entries, sources = read_mix(sets, out_dir, cfg)
    entries = [(name, record, dataset in CROP_DATASETS) for name, dataset, record in entries]
    return build_lmdb(entries, out_dir, cfg, sources=sources, workers=workers, overwrite=overwrite)
