"""Held-out splits for sets that ship without one (aflw_crops, UTKFace).

A name's side is decided by a hash of the name alone (crc32 with a per-set salt), ranked, so the
split is the same in data_prep (which trains on `train`) and benchmarks (which score `test`),
independent of file order, of which subset a caller reads, and of Python's hash seed.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

SPLITS = ("train", "test", "all")


def _rank_key(name: str, salt: str) -> int:
    return zlib.crc32(f"{salt}:{name}".encode())


def held_out_names(names: Iterable[str], n_test: int, salt: str) -> set[str]:
    """The `n_test` names with the smallest salted crc32: the held-out test split."""
    ranked = sorted(set(names), key=lambda n: (_rank_key(n, salt), n))
    return set(ranked[:n_test])


def select_split(names: list[str], split: str, n_test: int, salt: str) -> list[bool]:
    """Mask over `names` (order kept) of the names in `split` ('train', 'test' or 'all')."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return [True] * len(names)
    held_out = held_out_names(names, n_test, salt)
    return [(n in held_out) == (split == "test") for n in names]
