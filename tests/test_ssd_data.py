"""Fast-HyperFace (Section 5.6) training data and run: AnnotatedDatum LMDB from real WIDER images,
2 SGD iterations of fast_hyperface_ssd through training.stage (and a resume), export, and the
pipeline's SSD proposals from the exported model directory."""
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.config import DATA_ROOT, load_config
from core.records import FaceRecord, ImageRecord
from data_prep.errors import DataPrepError
from data_prep.readers import read_dataset
from data_prep.ssd_lmdb import (FACE_LABEL, SSD_DB, build_ssd_lmdb, decode_annotated, normalised_faces,
                                read_ssd_lmdb)

REPO = Path(__file__).resolve().parents[1]
DATA = DATA_ROOT
WIDER_SAMPLE = DATA / "wider_sample"
WIDER_TRAIN = DATA / "wider_train"
SSD_DEPLOY = REPO / "prototxt" / "fast_hyperface_ssd" / "deploy.prototxt"
HYPERFACE_DEPLOY = REPO / "prototxt" / "hyperface" / "deploy.prototxt"
SSD_LR = 1e-4  # mk/ssd.mk's SSD_LR: the solver's 0.001 diverges from random init


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_normalised_faces_by_hand(cfg):
    """200x100 image: a box inside, one half outside (clipped), one fully outside (dropped), a tiny one."""
    record = ImageRecord(path=Path("hand.jpg"), faces=[
        FaceRecord(box=[20, 10, 120, 90], face_id="a"),
        FaceRecord(box=[150, -20, 260, 60], face_id="b"),
        FaceRecord(box=[210, 10, 250, 50], face_id="c"),
        FaceRecord(box=[0, 0, cfg.sampling.min_face_side - 1, 40], face_id="d"),
        FaceRecord(box=[50, 50, 90, 90], face_id="e", ignore=True),
    ])
    faces, dropped = normalised_faces(record, 200, 100, cfg.sampling.min_face_side)
    assert dropped == 1
    got = np.array([[f.xmin, f.ymin, f.xmax, f.ymax] for f in faces])
    np.testing.assert_allclose(got, [[0.1, 0.1, 0.6, 0.9], [0.75, 0.0, 1.0, 0.6],
                                     [0.0, 0.0, (cfg.sampling.min_face_side - 1) / 200, 0.4], [0.25, 0.5, 0.45, 0.9]])
    assert [f.difficult for f in faces] == [False, False, True, True]
    bad = ImageRecord(path=Path("nan.jpg"), faces=[FaceRecord(box=[0, np.nan, 5, 5], face_id="n")])
    with pytest.raises(DataPrepError, match=r"^nan\.jpg: NaN or infinite face box"):
        normalised_faces(bad, 10, 10, cfg.sampling.min_face_side)


def test_annotated_datum_roundtrip_on_wider(tmp_path, cfg, caffe):
    records = read_dataset("wider", WIDER_SAMPLE, split="train", limit=4, config=cfg)  # the 4th has tiny faces
    manifest = build_ssd_lmdb([("wider", r) for r in records], tmp_path, cfg, progress=False)
    assert manifest["num_images"] == 4 and manifest["label_map"] == {"0": "background", "1": "face"}
    decoded = {int(key.split(b"_")[1]): (img, boxes, diff) for key, img, boxes, diff in read_ssd_lmdb(tmp_path)}
    assert sorted(decoded) == [0, 1, 2, 3]

    # image 1 by hand from wider_face_train_bbx_gt.txt: 4 faces "x1 y1 w h" of a 1024-wide image
    image, boxes, difficult = decoded[1]
    original = cv2.imread(str(records[1].path))
    assert np.array_equal(image, original)  # the JPEG file is stored as is: identical pixels
    h, w = original.shape[:2]
    assert w == 1024
    by_hand = np.array([[286, 202, 80, 126], [392, 182, 86, 130], [568, 252, 88, 124], [740, 154, 82, 168]], float)
    by_hand[:, 2:] += by_hand[:, :2]
    np.testing.assert_allclose(boxes, by_hand / [w, h, w, h], atol=1e-6)  # NormalizedBBox holds float32
    assert not difficult.any()

    n_faces = n_difficult = 0
    for index, record in enumerate(records):
        image, boxes, difficult = decoded[index]
        h, w = image.shape[:2]
        reader = np.array([f.box for f in record.faces]).reshape(-1, 4)
        np.testing.assert_allclose(boxes, np.clip(reader / [w, h, w, h], 0, 1), atol=1e-6)
        sides = np.minimum(reader[:, 2] - reader[:, 0], reader[:, 3] - reader[:, 1])
        assert difficult.tolist() == (sides < cfg.sampling.min_face_side).tolist()
        n_faces += len(boxes)
        n_difficult += int(difficult.sum())
    assert manifest["num_faces"] == n_faces and manifest["num_difficult"] == n_difficult > 0

    # the raw message: one AnnotationGroup of the face class, encoded JPEG datum
    from caffe.proto import caffe_pb2
    import lmdb
    with lmdb.open(str(tmp_path / SSD_DB), readonly=True, lock=False) as env, env.begin() as txn:
        anno = caffe_pb2.AnnotatedDatum.FromString(next(iter(txn.cursor()))[1])
    assert anno.type == caffe_pb2.AnnotatedDatum.BBOX and anno.datum.encoded and anno.datum.channels == 3
    assert [g.group_label for g in anno.annotation_group] == [FACE_LABEL]

    # a rerun of the same inputs resumes (nothing rewritten); other inputs in the same folder are refused
    again = build_ssd_lmdb([("wider", r) for r in records], tmp_path, cfg, progress=False)
    assert again["num_faces"] == n_faces and again["lmdb_bytes"] == manifest["lmdb_bytes"]
    with pytest.raises(DataPrepError, match="other inputs or settings"):
        build_ssd_lmdb([("wider", r) for r in records[:2]], tmp_path, cfg, progress=False)


def test_corrupt_image_names_the_file(tmp_path, cfg, caffe):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    record = ImageRecord(path=broken, faces=[FaceRecord(box=[1, 1, 30, 30], face_id="x")])
    with pytest.raises(DataPrepError) as err:
        build_ssd_lmdb([("x", record)], tmp_path / "out", cfg, progress=False)
    assert str(err.value) == f"{broken}: corrupt or unreadable image (OpenCV could not decode it)"


@pytest.mark.skipif(not SSD_DEPLOY.is_file(), reason="prototxt/fast_hyperface_ssd not there")
def test_train_export_and_propose_end_to_end(tmp_path, cfg, caffe, monkeypatch):
    from data_prep.cli import main as data_prep_main
    from pipeline import HyperFace
    from pipeline.fixtures import make_model_dir
    from pipeline.model_store import load_model, read_caffemodel
    from training.__main__ import main as training_main
    from training.batchnorm import fold_batchnorm
    from training.stage import StageSpec, TrainingError, prepare_run

    monkeypatch.setenv("HYPERFACE_MODEL_CACHE", str(tmp_path / "cache"))
    lmdb_dir, run_dir = tmp_path / "lmdb", tmp_path / "run"
    assert data_prep_main(["ssd", "--out", str(lmdb_dir), "--set", f"wider={WIDER_TRAIN}:3"]) == 0
    manifest = json.loads((lmdb_dir / "manifest.json").read_text())
    assert manifest["num_images"] == 3 and manifest["sources"]["wider"]["images"] == 3

    # the stage finds ssd_lmdb for a net with AnnotatedData, and says which LMDB is missing otherwise
    with pytest.raises(TrainingError, match=r"ssd_lmdb: LMDB not found"):
        prepare_run(StageSpec("fast_hyperface_ssd", tmp_path / "nothing", tmp_path / "r0", 1))

    args = ["stage", "fast_hyperface_ssd", "--lmdb", str(lmdb_dir), "--out", str(run_dir), "--batch", "2",
            "--lr", str(SSD_LR), "--snapshot-every", "1", "--batchnorm"]
    assert training_main(args + ["--iters", "2"]) == 0
    train_val = (run_dir / "train_val.prototxt").read_text()
    assert f'source: "{lmdb_dir / SSD_DB}"' in train_val and "batch_size: 2" in train_val
    assert train_val.count('type: "BatchNorm"') == 13 and train_val.count('type: "Scale"') == 13
    assert (run_dir / "snapshots" / "fast_hyperface_ssd_iter_2.solverstate").is_file()
    assert training_main(args + ["--iters", "3", "--seed", "7"]) == 0  # resumes from iteration 2, its own seed
    assert "random_seed: 7" in (run_dir / "solver.prototxt").read_text()
    assert [r["seed"] for r in json.loads((run_dir / "stage.json").read_text())["runs"]] == [0, 7]
    with (run_dir / "losses.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["iter", "mbox_loss"] and [int(r[0]) for r in rows[1:]] == [1, 2, 3]
    losses = np.array([float(r[1]) for r in rows[1:]])
    assert np.isfinite(losses).all() and (losses > 0).all()

    final = run_dir / "fast_hyperface_ssd_final.caffemodel"
    weights = read_caffemodel(final)
    assert weights["conv1_1"][0].shape == (16, 3, 3, 3) and not np.array_equal(
        weights["conv1_1"][0], read_caffemodel(run_dir / "snapshots" / "fast_hyperface_ssd_iter_2.caffemodel")["conv1_1"][0])
    ssd_dir = tmp_path / "ssd_model"
    assert training_main(["export-ssd", "--stage", str(run_dir), "--lmdb", str(lmdb_dir), "--out", str(ssd_dir),
                          "--bn-batches", "3"]) == 0
    meta = json.loads((ssd_dir / "model.json").read_text())["meta"]
    assert meta["iterations"] == 3 and meta["batch_size"] == 2 and "recomputed over 3 training batches" in meta["batchnorm"]
    assert meta["trained_on"]["wider"]["images"] == 3
    # stage.json -> model.json: a first run from random weights, then a resume at iteration 2
    runs = meta["stage_runs"]
    assert [(r["from_iteration"], r["max_iter"], r["init_weights"]) for r in runs] == [(0, 2, None), (2, 3, None)]
    assert runs[0]["resumed_from"] is None and runs[1]["resumed_from"].endswith("fast_hyperface_ssd_iter_2.solverstate")
    assert "earlier_pieces" not in meta
    # a later piece exported with --previous keeps the earlier record: [the earlier pieces..., the previous model]
    for k, out in enumerate((tmp_path / "piece2", tmp_path / "piece3")):
        before = ssd_dir if k == 0 else tmp_path / "piece2"
        assert training_main(["export-ssd", "--stage", str(run_dir), "--lmdb", str(lmdb_dir), "--out", str(out),
                              "--bn-batches", "1", "--previous", str(before)]) == 0
    chain = json.loads((tmp_path / "piece3" / "model.json").read_text())["meta"]["earlier_pieces"]
    assert [("earlier_pieces" in m, m["batchnorm"][-40:]) for m in chain] == [
        (False, meta["batchnorm"][-40:]), (False, json.loads((tmp_path / "piece2" / "model.json").read_text())["meta"]["batchnorm"][-40:])]
    assert chain[0] == meta and "recomputed over 1 training batches" in chain[1]["batchnorm"]
    assert training_main(["export-ssd", "--stage", str(run_dir), "--lmdb", str(lmdb_dir), "--out", str(out),
                          "--previous", str(tmp_path / "nothing")]) == 2
    # the statistics are recomputed at the final weights (3 batches of 2), not Caffe's moving average
    # over the 3 iterations; the folded convolution is the snapshot's up to a positive per-channel gain
    exported = read_caffemodel(load_model(ssd_dir).caffemodel)
    assert "conv1_1_bn" not in exported and weights["conv1_1_bn"][2][0] != 3.0
    moving = fold_batchnorm(weights)["conv1_1"][0]
    assert not np.allclose(exported["conv1_1"][0], moving, rtol=1e-2, atol=1e-3)
    e = exported["conv1_1"][0].reshape(16, -1).astype(np.float64)
    w = weights["conv1_1"][0].reshape(16, -1).astype(np.float64)
    gain = (e * w).sum(axis=1) / (w * w).sum(axis=1)
    assert np.abs(e - gain[:, None] * w).max() <= 2e-3 * np.abs(e).max()

    model = make_model_dir(HYPERFACE_DEPLOY, tmp_path / "hyperface", fp16=True)
    hf = HyperFace(model, backend="opencv", proposals="ssd", ssd_model_dir=ssd_dir)
    image = cv2.imread(str(WIDER_SAMPLE / "WIDER_val" / "images" / "0--Parade" /
                           sorted(p.name for p in (WIDER_SAMPLE / "WIDER_val" / "images" / "0--Parade").iterdir())[0]))
    boxes = hf.propose(image)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and 0 < len(boxes) <= cfg.test.ssd_max_proposals
    h, w = image.shape[:2]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()


def test_a_piece_without_batchnorm_records_the_folded_net_it_fine_tunes():
    from training.ssd_export import _inherited_batchnorm
    bn = "BatchNorm + Scale after every base convolution, statistics recomputed over 50 training batches"
    assert _inherited_batchnorm(None) == "none"
    assert _inherited_batchnorm([{"batchnorm": "none"}]) == "none"
    one = _inherited_batchnorm([{"batchnorm": bn}])
    assert one == f"none in this piece: it fine-tunes the folded net of an earlier piece ({bn})"
    # a second fine-tuning piece names the BatchNorm piece, not the first fine-tuning piece's sentence
    assert _inherited_batchnorm([{"batchnorm": "none"}, {"batchnorm": bn}, {"batchnorm": one}]) == one


def test_training_net_has_a_zoom_in_sampler_for_small_faces(caffe):
    # a 40 px face of a 1000 px photo must reach the 512 training input at >= 48 px (the size of the 2048
    # test canvas minus a quarter), which only a crop of <= ~0.43 of the side that keeps the face gives
    from prototxt.netspec_utils import read_net
    net = read_net(Path(__file__).resolve().parents[1] / "prototxt" / "fast_hyperface_ssd" / "train_val.prototxt")
    samplers = [s for layer in net.layer if layer.type == "AnnotatedData"
                for s in layer.annotated_data_param.batch_sampler]
    zoom = [s for s in samplers if s.sampler.max_scale and s.sampler.max_scale < 1.0
            and s.sample_constraint.min_object_coverage >= 0.89]  # float32 0.9
    assert len(zoom) == 1
    assert (zoom[0].sampler.min_scale, zoom[0].sampler.max_scale) == pytest.approx((0.15, 0.35))
    assert 40 / zoom[0].sampler.max_scale * 512 / 1000 >= 48
