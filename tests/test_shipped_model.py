"""The shipped model (models/hyperface) against held-out data it never trained on: it finds the
faces of held-out photos without firing on everything, places landmarks, estimates yaw and gender
better than a constant answer, and gives the demo photos their true face counts. The bounds are the
measurements in the README ("The shipped model") with a margin for the subsets used here."""
import json

import cv2
import numpy as np
import pytest

from benchmarks.gt_box_eval import load_heldout, predict_on_boxes, score_set
from benchmarks.metrics.classification import balanced_accuracy
from core.config import load_config
from core.geometry import box_iou
from core.labels import LABEL_LAYOUT_VERSION

CFG = load_config()
# Measured on the held-out sets (README, "The shipped model"): aflw_crops NME/box 0.044, yaw MAE
# 7.8 deg (998 faces; 300 here); UTKFace balanced gender accuracy 0.94 (500; 300 here). A mean-shape
# net scores NME ~0.14 and yaw MAE ~33 deg, a constant gender answer 0.5 balanced accuracy; the
# previous model 0.068, 13.6 deg and 0.78, which these bounds reject.
AFLW_MAX_NME = 0.055
AFLW_MAX_YAW_MAE = 10.5
UTK_MIN_BALANCED_GENDER = 0.88
# Full pipeline at the model's default threshold on the first HELDOUT_PHOTOS held-out WIDER photos.
HELDOUT_PHOTOS = 4
HELDOUT_MAX_FP_PER_IMAGE = 1.0   # measured 0 false positives on these 4 photos (default and fast proposals)
HELDOUT_MIN_RECALL = 0.5   # measured 4 (default) and 3 (fast) of 5 faces >= 30 px; on the first 6 photos the
                           # previous model found 3 of 9, which fails
# The demo photos (examples/images), faces annotated by hand here (x1, y1, x2, y2), and the IoU the
# detection must reach: the cameraman is a profile behind a camera, where "the face box" is loose
# (the hand box runs from the back of the head to the nose; the detection from the ear into the camera).
DEMO_FACES = {"astronaut": [[172, 62, 278, 185]], "cameraman": [[172, 92, 262, 200]], "chelsea": []}
DEMO_MIN_IOU = {"astronaut": 0.5, "cameraman": 0.3, "chelsea": 0.0}


@pytest.fixture(scope="module")
def model_dir(repo_root):
    path = repo_root / "models" / "hyperface"
    assert (path / "model.json").is_file(), f"{path}: the shipped model is missing"
    return path


@pytest.fixture(scope="module")
def backend(model_dir):
    from pipeline.backends import make_backend
    from pipeline.model_store import load_model
    model = load_model(model_dir)
    return make_backend("opencv", model.prototxt, model.caffemodel)


@pytest.fixture(scope="module", params=["default", "fast"])
def detector(model_dir, request):
    """The pipeline with the config's default proposals (the Fast-HyperFace net) and with fast
    selective search: the product offers both, and both must hold these bounds."""
    from pipeline import HyperFace
    hf = HyperFace(model_dir, proposals=None if request.param == "default" else request.param)
    assert hf.proposals == (CFG.test.proposals if request.param == "default" else request.param)
    return hf


def test_model_directory_is_small_and_described(model_dir):
    doc = json.loads((model_dir / "model.json").read_text())
    assert doc["label_layout_version"] == LABEL_LAYOUT_VERSION
    assert doc["weights"] == "weights_fp16.npz"
    assert (model_dir / "weights_fp16.npz").stat().st_size < 70 * 2**20
    pieces = doc["meta"]["pieces"]
    assert pieces[-1]["iterations"] > 0 and pieces[-1]["validation"]
    # the default threshold was chosen on held-out photos, not left at the config's 0.5
    assert 0.0 < doc["detection_threshold"] < 1.0
    assert doc["detection_threshold_chosen"]["chosen_on"] == "wider-heldout"
    # ... with the proposal net shipped beside it (a new proposals/ needs `make calibrate-threshold` again)
    proposals = json.loads((model_dir / "proposals" / "model.json").read_text())
    assert doc["detection_threshold_chosen"]["proposal_weights_sha1"] == proposals["weights_sha1"]


def test_held_out_aflw_landmarks_and_yaw(backend, shared_data):
    faces = load_heldout(shared_data, sets=["aflw_crops"], config=CFG, limit=300)["aflw_crops"]
    pred = predict_on_boxes(backend, faces, CFG, "aflw_crops")
    metrics = score_set("aflw_crops", [f for _, f in faces], pred, CFG)["metrics"]
    assert metrics["NME_box"] < AFLW_MAX_NME
    assert metrics["MAE_yaw_deg"] < AFLW_MAX_YAW_MAE


def test_held_out_utkface_gender_beats_a_constant_answer(backend, shared_data):
    faces = load_heldout(shared_data, sets=["utkface"], config=CFG, limit=300)["utkface"]
    pred = predict_on_boxes(backend, faces, CFG, "utkface")
    male = np.array([f.gender == "m" for _, f in faces])
    assert 0.3 < male.mean() < 0.7
    assert balanced_accuracy(pred.gender_prob_male >= 0.5, male) > UTK_MIN_BALANCED_GENDER


def test_held_out_photos_faces_found_and_few_false_positives(detector, shared_data):
    """A model that calls everything a face fails here (the first shipped model gave ~25 per photo)."""
    from data_prep.readers import read_dataset
    records = read_dataset("wider", shared_data / "wider_train", split="train-heldout", config=CFG)[:HELDOUT_PHOTOS]
    min_side = CFG.benchmark.face_eval_min_gt_side
    found = false_positives = counted = 0
    for record in records:
        faces = detector.detect(cv2.imread(str(record.path)))
        boxes = np.array([f.box for f in record.faces]).reshape(-1, 4)
        big = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_side
        counted += int(big.sum())
        det = np.array([f.box for f in faces]).reshape(-1, 4)
        iou = box_iou(det, boxes) if len(boxes) else np.zeros((len(det), 0))
        # a detection on any annotated face (small ones included) is not a false positive
        false_positives += int(np.sum(iou.max(axis=1, initial=0.0) <= CFG.benchmark.eval_iou)) if len(det) else 0
        found += int(np.sum(iou[:, big].max(axis=0, initial=0.0) > CFG.benchmark.eval_iou)) if len(det) else 0
    assert counted > 0
    assert false_positives / len(records) <= HELDOUT_MAX_FP_PER_IMAGE
    assert found / counted >= HELDOUT_MIN_RECALL


def test_afw_sample_default_path_finds_every_face_with_few_false_positives(model_dir, shared_data):
    """Issue 11's target on the 10 full-size afw_sample photos, face-eval rules, default threshold: all
    16 faces with at most 5 false positives. Measured 16 with 0 with the pose-aware face box (14 with 2
    with one frontal mean shape, two profiles' boxes at IoU 0.47-0.49; README)."""
    from benchmarks.datasets.afw import load_afw
    from benchmarks.metrics.detection import face_eval_ap
    from pipeline import HyperFace
    hf = HyperFace(model_dir)
    dets, gts = {}, {}
    for record in load_afw(shared_data / "afw_sample"):
        faces = hf.detect(cv2.imread(str(record.path)))
        dets[record.image_id] = (np.array([f.box for f in faces]).reshape(-1, 4), np.array([f.score for f in faces]))
        gts[record.image_id] = np.array([f.box for f in record.faces]).reshape(-1, 4)
    result = face_eval_ap(dets, gts, CFG.benchmark.face_eval_min_gt_side, CFG.benchmark.eval_iou)
    assert result.n_positives == 16
    assert result.n_tp == 16 and result.n_fp <= 5, (result.n_tp, result.n_fp)


@pytest.mark.parametrize("name", sorted(DEMO_FACES))
def test_demo_photos_give_their_true_face_count(detector, repo_root, name):
    faces = detector.detect(cv2.imread(str(repo_root / "examples" / "images" / f"{name}.jpg")))
    truth = np.array(DEMO_FACES[name], dtype=float).reshape(-1, 4)
    assert len(faces) == len(truth)
    if len(truth):
        det = np.array([f.box for f in faces])
        assert box_iou(det, truth).max(axis=0).min() > DEMO_MIN_IOU[name]


# ---- the shipped Fast-HyperFace proposal net (models/hyperface/proposals, issue 12) ----

@pytest.fixture(scope="module")
def proposal_model(model_dir):
    from pipeline.model_store import load_model
    path = model_dir / "proposals"
    assert (path / "model.json").is_file(), f"{path}: the shipped proposal net is missing"
    return load_model(path)


def test_proposal_net_is_small_and_described(proposal_model):
    from benchmarks.plateau import chain_iterations
    doc = json.loads((proposal_model.model_dir / "model.json").read_text())
    assert doc["weights"] == "weights_fp16.npz"
    assert (proposal_model.model_dir / "weights_fp16.npz").stat().st_size < 5 * 2**20
    meta = doc["meta"]
    # a trained net, not a smoke run: its pieces together (a fine-tuning piece may be short)
    assert chain_iterations(meta) >= 10000
    assert "recomputed" in meta["batchnorm"]
    assert meta["trained_on"]["wider"]["split"] == "train-fit"  # the held-out photos were not trained on


def test_openvino_runs_the_proposal_net_in_fp32(model_dir):
    """With backend "openvino" the HyperFace net runs in bf16 where the CPU has it, the SSD in fp32
    (its boxes in bf16 cost held-out AP); other backends run both nets."""
    pytest.importorskip("openvino")
    from pipeline import HyperFace
    hf = HyperFace(model_dir, backend="openvino", proposals="ssd")
    assert hf.backend.name == "openvino" and hf.ssd.backend.name == "openvino-fp32"
    assert hf.ssd.backend.precision == "f32"
    assert HyperFace(model_dir, backend="onnxruntime", proposals="ssd").ssd.backend.name == "onnxruntime"


def test_proposal_net_runs_in_onnxruntime_and_opencv_and_finds_the_demo_faces(proposal_model, repo_root):
    from pipeline.backends import OnnxRuntimeBackend, OpenCVBackend
    from pipeline.proposals import SSDProposer
    ort = SSDProposer(proposal_model, "onnxruntime", CFG.input, CFG.test)
    ocv = SSDProposer(proposal_model, "opencv", CFG.input, CFG.test)
    assert isinstance(ort.backend, OnnxRuntimeBackend) and isinstance(ocv.backend, OpenCVBackend)
    for name, faces in DEMO_FACES.items():
        image = cv2.imread(str(repo_root / "examples" / "images" / f"{name}.jpg"))
        boxes, same = ort(image), ocv(image)
        assert 0 < len(boxes) <= CFG.test.ssd_max_proposals
        # the two engines give the same proposals (the best 20 within a pixel)
        np.testing.assert_allclose(boxes[:20], same[:20], atol=1.0)
        for face in faces:
            best = float(box_iou(np.asarray(face, float), boxes).max())
            assert best > 0.5, f"{name}: best proposal IoU {best:.2f} with the face"
