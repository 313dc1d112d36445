"""The linear SVM on fc_detection (training/detection_svm.py): labels, Platt fit, the fold into the
deploy net (checked through ONNX Runtime and pycaffe), and a small real run that resumes."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.config import load_config
from core.records import FaceRecord, ImageRecord
from training.detection_svm import (FeatureNet, SvmFit, spec_from_config, calibration_mask, fold_into_model,
                                    label_proposals, load_features, platt, run, svm_probability)

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "hyperface"


def test_proposal_labels_follow_the_iou_thresholds():
    cfg = load_config()
    record = ImageRecord(Path("x.jpg"), [FaceRecord(box=[0, 0, 99, 99]), FaceRecord(box=[300, 300, 309, 309], ignore=True)])
    boxes = np.array([
        [0, 0, 99, 99],        # IoU 1 with the face -> 1
        [0, 0, 99, 59],        # IoU 0.6 -> 1 (> 0.5)
        [0, 0, 99, 39],        # IoU 0.4 -> dropped (between 0.35 and 0.5)
        [0, 0, 99, 29],        # IoU 0.3 -> 0
        [500, 500, 599, 599],  # no overlap -> 0
        [300, 300, 309, 309],  # the ignored face itself: never a face, never background -> -1
    ], dtype=np.float64)
    assert label_proposals(boxes, record, cfg).tolist() == [1, 1, -1, 0, 0, -1]
    no_faces = ImageRecord(Path("y.jpg"), [])
    assert label_proposals(boxes, no_faces, cfg).tolist() == [0] * 6


def test_platt_recovers_a_known_sigmoid():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-4, 4, 20000)
    labels = (rng.uniform(size=scores.size) < 1 / (1 + np.exp(-(1.5 * scores - 0.5)))).astype(int)
    a, b = platt(scores, labels)
    assert a == pytest.approx(1.5, abs=0.08) and b == pytest.approx(-0.5, abs=0.08)


def test_calibration_share_is_stable_and_near_its_size():
    photo = np.repeat(np.arange(1000), 3)
    mask = calibration_mask(photo, 0.2)
    assert np.array_equal(mask, calibration_mask(photo, 0.2))
    share = mask.reshape(1000, 3)
    assert (share.all(axis=1) | ~share.any(axis=1)).all()      # a photo is wholly on one side
    assert 150 <= share[:, 0].sum() <= 250


def test_folded_svm_is_the_nets_detection_probability(tmp_path, shared_data):
    """After the fold, every backend's detection_prob face column equals the calibrated SVM on the
    original net's fc_detection features (fp16 weights: within 2e-3); the other outputs are unchanged."""
    import cv2
    from pipeline.backends import make_backend
    from pipeline.geometry import make_batch
    from core.model_store import load_model
    cfg = load_config()
    image = cv2.imread(str(REPO / "examples" / "images" / "astronaut.jpg"))
    assert image is not None
    boxes = np.array([[170, 30, 300, 190], [0, 0, 120, 120], [250, 300, 500, 500], [100, 50, 350, 300]], float)
    feats, _ = FeatureNet(MODEL, cfg)(image, boxes)
    assert feats.shape == (4, 512) and (feats >= 0).all()      # after relu_detection
    rng = np.random.default_rng(1)
    fit = SvmFit(weights=rng.normal(0, 0.01, 512), bias=-0.3, platt_a=1.7, platt_b=0.2, c=1e-3, feature_scale=1.0)
    want = svm_probability(fit, feats.astype(np.float64))
    assert 0.01 < want.min() and want.max() < 0.99              # a case that can fail: not saturated
    out = fold_into_model(MODEL, fit, tmp_path / "svm_model", {"kind": "linear_svm"})
    doc = json.loads((out / "model.json").read_text())
    assert doc["detection_scorer"] == {"kind": "linear_svm"}
    source_doc = json.loads((MODEL / "model.json").read_text())
    assert "detection_threshold" not in doc and "detection_threshold_chosen" not in doc
    assert doc["box_style"] == source_doc["box_style"] and doc["meta"] == source_doc["meta"]
    with np.load(MODEL / "weights_fp16.npz") as a, np.load(out / "weights_fp16.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        changed = [k for k in a.files if not np.array_equal(a[k], b[k])]
    assert sorted(changed) == ["detection_score#0", "detection_score#1"]     # every other blob as stored
    # the proposal net comes along, so --proposals ssd (the default) works on the folded model
    assert sorted(p.name for p in (out / "proposals").iterdir()) == sorted(p.name for p in (MODEL / "proposals").iterdir())
    batch = make_batch(image, boxes, cfg.input.size, cfg.input.mean_bgr)
    folded, original = load_model(out), load_model(MODEL)
    for backend in ("onnxruntime", "caffe"):
        got = make_backend(backend, folded.prototxt, folded.caffemodel).forward(batch)
        base = make_backend(backend, original.prototxt, original.caffemodel).forward(batch)
        np.testing.assert_allclose(got["detection_prob"][:, 1], want, atol=2e-3)
        np.testing.assert_allclose(got["landmarks"], base["landmarks"], atol=1e-5)
        np.testing.assert_allclose(got["pose"], base["pose"], atol=1e-5)


def test_small_run_extracts_fits_compares_and_resumes(tmp_path, shared_data):
    cfg = load_config()
    spec = spec_from_config(cfg, MODEL, tmp_path / "work", shared_data, photos_per_set=3, heldout_photos=2,
                            negatives_per_photo=15, calibration_share=0.5, c_grid=(1e-2,))
    assert spec.positive_weight == cfg.training.svm_positive_weight and spec.export is None
    record = run(spec, cfg, progress=False)
    train_files = sorted((tmp_path / "work" / "features" / "train").glob("*.npz"))
    assert len(train_files) == 6 and len(list((tmp_path / "work" / "features" / "heldout").glob("*.npz"))) == 2
    feats, labels, soft, photo = load_features(train_files)
    assert feats.shape[1] == 512 and len(feats) == len(labels) == len(soft) == len(photo)
    # every photo: at most 15 background regions; training photos add their counted faces as positives
    for f in train_files:
        with np.load(f) as z:
            assert (z["labels"] == 0).sum() <= 15 and set(np.unique(z["labels"])) <= {0, 1}
    assert record["training"] == {"photos": 6, "faces": int((labels == 1).sum()), "background": int((labels == 0).sum()),
                                  "negatives_per_photo": 15}
    assert record["training"]["faces"] >= 3                       # the 3 WIDER photos' faces at least
    assert record["source_weights_sha1"] == json.loads((MODEL / "model.json").read_text())["weights_sha1"]
    h = record["heldout_regions"]
    assert 0.0 <= h["ap_softmax"] <= 1.0 and 0.0 <= h["ap_svm"] <= 1.0 and h["photos"] == 2
    before = {f.name: f.stat().st_mtime_ns for f in train_files}
    again = run(replace(spec, export=tmp_path / "svm_model"), cfg, progress=False)
    assert {f.name: f.stat().st_mtime_ns for f in train_files} == before     # resumed: nothing re-extracted
    assert again["heldout_regions"] == h and again["C"] == record["C"]      # same inputs, same fit
    assert json.loads((tmp_path / "svm_model" / "model.json").read_text())["detection_scorer"]["C"] == 1e-2


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    from training.__main__ import main
    assert main(["svm", "--model", str(tmp_path / "nope"), "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "nope") in err[0] and "not found" in err[0]


def test_regions_come_from_the_given_proposals(tmp_path):
    """photo_regions takes its boxes from propose(image): faces by IoU, then the seeded background sample."""
    from training.detection_svm import photo_regions
    cfg = load_config()
    record = ImageRecord(Path("x.jpg"), [FaceRecord(box=[0, 0, 99, 99])])
    boxes = np.array([[0, 0, 99, 59], [0, 0, 99, 39], [200, 200, 260, 260], [300, 0, 380, 80], [0, 300, 50, 350]], float)
    got, labels = photo_regions(record, np.zeros((400, 400, 3), np.uint8), cfg, negatives_per_photo=2, add_faces=True,
                                seed=0, propose=lambda image: boxes)
    # the counted face first, then the proposal with IoU 0.6, then 2 of the 3 background proposals
    assert labels.tolist() == [1, 1, 0, 0]
    np.testing.assert_array_equal(got[:2], [[0, 0, 99, 99], [0, 0, 99, 59]])
    assert all(any((g == b).all() for b in boxes[2:]) for g in got[2:])
    again, _ = photo_regions(record, np.zeros((400, 400, 3), np.uint8), cfg, 2, True, 0, lambda image: boxes)
    np.testing.assert_array_equal(got, again)


def test_ssd_proposal_run_keeps_its_own_features_and_records_the_mode(tmp_path, shared_data):
    if not (MODEL / "proposals").is_dir():
        pytest.skip("the shipped model has no proposals/ net")
    cfg = load_config()
    spec = spec_from_config(cfg, MODEL, tmp_path / "work", shared_data, photos_per_set=3, heldout_photos=1,
                            negatives_per_photo=400, calibration_share=0.5, c_grid=(1e-2,), proposals="ssd")
    record = run(spec, cfg, progress=False)
    assert record["proposals"] == "ssd" and not (tmp_path / "work" / "features").exists()
    files = sorted((tmp_path / "work" / "features_ssd" / "train").glob("*.npz"))
    assert len(files) == 6
    from pipeline.detector import HyperFace
    from data_prep.readers.common import load_image
    propose = HyperFace(MODEL, proposals="ssd", config=cfg).propose
    with np.load(files[0]) as z:
        photo, boxes, labels = str(z["photo"]), z["boxes"], z["labels"]
    ssd = propose(load_image(photo)).astype(np.float32)
    # every region after the photo's own faces is one of its SSD proposals (all background kept: 400 > 200)
    n_faces = int((labels == 1).sum()) - int(sum((np.abs(ssd - b).max(axis=1) < 1e-3).any() for b in boxes[labels == 1]))
    assert all((np.abs(ssd - b).max(axis=1) < 1e-3).any() for b in boxes[n_faces:])
    with pytest.raises(Exception, match="choose one of"):
        run(replace(spec, proposals="edges"), cfg, progress=False)
