"""core/splits.py: the held-out split shared by data_prep (train) and benchmarks (test)."""
import pytest

from core.splits import select_split, held_out_names


def test_split_is_disjoint_complete_and_order_free():
    names = [f"img{i:04d}" for i in range(200)]
    test = held_out_names(names, 30, "s")
    assert len(test) == 30
    assert test == held_out_names(list(reversed(names)), 30, "s")        # file order does not matter
    train_mask = select_split(names, "train", 30, "s")
    test_mask = select_split(names, "test", 30, "s")
    assert sum(train_mask) == 170 and sum(test_mask) == 30
    assert not any(a and b for a, b in zip(train_mask, test_mask))
    assert select_split(names, "all", 30, "s") == [True] * 200
    assert held_out_names(names, 30, "other salt") != test      # each set has its own draw


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="split must be one of"):
        select_split(["a"], "val", 1, "s")


def test_shared_sets_train_and_test_do_not_overlap(shared_data):
    from benchmarks.datasets.gender import load_utkface
    from benchmarks.score import load_ground_truth
    from core.config import load_config
    from data_prep.readers import read_dataset
    train = {r.image_id for r in read_dataset("aflw_crops", shared_data / "aflw_crops", split="train")}
    held_out = {r.image_id for r in read_dataset("aflw_crops", shared_data / "aflw_crops", split="test")}
    assert len(held_out) == 998 and not train & held_out          # 1000 held out, 2 bad crops skipped
    bench, _ = load_ground_truth("aflw", shared_data / "aflw_crops", load_config())   # `python -m benchmarks aflw`
    assert {r.image_id for r in bench} <= held_out and len(bench) == load_config().benchmark.aflw_subset_size
    assert all((r.faces[0].box == [0, 0, 120, 120]).all() for r in bench)           # the box training uses
    utk_train = {r.image_id for r in read_dataset("utkface", shared_data / "utkface", split="train")}
    utk_test = {s.path.name for s in load_utkface(shared_data / "utkface")}
    assert len(utk_train) == 2500 and len(utk_test) == 500 and not utk_train & utk_test


def test_mix_split_keeps_the_held_out_wider_photos_out(shared_data, tmp_path):
    """`--mix wider=LIMIT:train-fit` (the SSD training default) reads none of the 150 held-out photos."""
    from core.config import load_config
    from data_prep.mix import parse_mix, read_mix
    from data_prep.readers import read_dataset
    cfg = load_config()
    sets = parse_mix("wider=:train-fit,helen=5", shared_data)
    assert [(s.name, s.split, s.limit) for s in sets] == [("wider", "train-fit", None), ("helen", "train", 5)]
    entries, sources = read_mix(sets, tmp_path, cfg)
    held = {r.image_id for r in read_dataset("wider", shared_data / "wider_train", split="train-heldout", config=cfg)}
    every = {r.image_id for r in read_dataset("wider", shared_data / "wider_train", split="train", config=cfg)}
    wider = {r.image_id for name, _, r in entries if name == "wider"}
    assert len(held) == 150 and wider == every - held
    assert sources["wider"]["split"] == "train-fit" and sources["helen"]["images"] == 5
