"""data_prep LMDBs from a slice of the real HELEN trainset: exact round trip, resume, Caffe Data layer."""
import gc
import json

import numpy as np
import pytest

pytest.importorskip("caffe.proto.caffe_pb2")

from core.config import load_config  # noqa: E402
from core.labels import LABEL_LAYOUT_VERSION, LABEL_LENGTH, OFFSETS, SEGMENTS, SLICE_POINTS  # noqa: E402
from data_prep import lmdb_io  # noqa: E402
from data_prep.build import CACHE_DIR, PROGRESS_FILE, build_lmdb, read_manifest  # noqa: E402
from data_prep.cli import main as cli_main  # noqa: E402
from data_prep.errors import DataPrepError  # noqa: E402
from data_prep.readers import read_300w  # noqa: E402
from data_prep.readers.common import load_image  # noqa: E402
from data_prep.regions import cached_proposals, image_samples  # noqa: E402

CFG = load_config()
N_IMAGES = 3


@pytest.fixture(scope="module")
def helen_build(shared_data, tmp_path_factory):
    if not (shared_data / "helen").is_dir():
        pytest.skip("shared HELEN data not present")
    records = read_300w(shared_data / "helen", split="train", limit=N_IMAGES)
    out = tmp_path_factory.mktemp("helen_lmdb")
    entries = [("helen", r, False) for r in records]
    manifest = build_lmdb(entries, out, CFG, sources={"helen": {"images": len(records)}}, workers=2)
    return records, entries, out, manifest


def test_manifest_counts_and_balance(helen_build):
    records, _, out, manifest = helen_build
    assert manifest == read_manifest(out)
    assert manifest["label_layout_version"] == LABEL_LAYOUT_VERSION and manifest["label_length"] == LABEL_LENGTH
    counts = manifest["counts"]
    # per face: max_positives_per_face positives, negatives = ratio x positives (capped per image)
    assert counts["detection_positive"] == N_IMAGES * CFG.sampling.max_positives_per_face
    expected_neg = N_IMAGES * min(CFG.sampling.max_negatives_per_image,
                                  CFG.sampling.negatives_per_positive * CFG.sampling.max_positives_per_face)
    assert counts["detection_negative"] == expected_neg
    assert counts["pose"] == counts["bbox"] == counts["detection_positive"]
    assert counts["landmarks"] == counts["detection_positive"] + counts["landmarks_only"]
    assert manifest["num_samples"] == counts["detection_positive"] + counts["detection_negative"] + counts["landmarks_only"]
    assert manifest["counts_per_set"]["helen"] == counts
    assert manifest["mean_bgr"] == list(CFG.input.mean_bgr)


def test_lmdb_round_trips_exactly(helen_build):
    records, _, out, manifest = helen_build
    pair = lmdb_io.LmdbPair(out, readonly=True)
    try:
        stored = {key: (crop, label) for key, crop, label in pair.items()}
        image_keys, label_keys = pair.keys()
    finally:
        pair.close()
    assert image_keys == label_keys and len(stored) == manifest["num_samples"]
    assert image_keys == sorted(image_keys)
    # regenerate image 1's samples from scratch (same seed, cached proposals) and compare byte for byte
    image = load_image(records[1].path)
    proposals = cached_proposals(image, records[1].path, out / CACHE_DIR, CFG.selective_search)
    samples = image_samples(records[1], image, proposals, CFG, np.random.default_rng([CFG.sampling.seed, 1]))
    assert len(samples) > 0
    for k, sample in enumerate(samples):
        crop, label = stored[lmdb_io.sample_key(CFG.sampling.seed, 1, k)]
        assert crop.shape == (CFG.input.size, CFG.input.size, 3) and crop.dtype == np.uint8
        assert crop.tobytes() == sample.crop.tobytes()
        np.testing.assert_array_equal(label, sample.label)
    # a stored positive's landmarks sit where the 68 points say (eq. 2 inverted)
    positives = [s for s in samples if s.kind == "positive" and not s.flipped]
    s = positives[0]
    w, h = s.region[2] - s.region[0], s.region[3] - s.region[1]
    centre = np.array([(s.region[0] + s.region[2]) / 2, (s.region[1] + s.region[3]) / 2])
    back = s.label[OFFSETS["landmarks"]].reshape(21, 2) * [w, h] + centre
    np.testing.assert_allclose(back[20], records[1].faces[0].landmarks68[8], atol=1e-3)


def test_resume_finishes_without_duplicates(helen_build, tmp_path):
    records, entries, out, manifest = helen_build
    work = tmp_path / "resume"
    build_lmdb(entries[:1] + entries[1:], work, CFG, workers=1)  # same inputs, fresh folder
    cache_files = sorted((work / CACHE_DIR).glob("*.npy"))
    mtimes = [p.stat().st_mtime_ns for p in cache_files]
    pair = lmdb_io.LmdbPair(work)
    full_keys = pair.keys()[0]
    # simulate a crash during image 2: progress says 1 image done, image 2 half written, image 1 missing
    with pair.images.begin(write=True) as txn:
        for key in full_keys:
            if b"_0000001_" in key:
                txn.delete(key)
    with pair.labels.begin(write=True) as txn:
        for key in full_keys:
            if b"_0000001_" in key or (b"_0000002_" in key and key.endswith(b"_000")):
                txn.delete(key)
    pair.close()
    progress = json.loads((work / PROGRESS_FILE).read_text())
    progress["images_done"] = 1
    (work / PROGRESS_FILE).write_text(json.dumps(progress))
    resumed = build_lmdb(entries, work, CFG, workers=1)
    pair = lmdb_io.LmdbPair(work, readonly=True)
    image_keys, label_keys = pair.keys()
    pair.close()
    assert image_keys == label_keys == full_keys
    assert resumed["num_samples"] == manifest["num_samples"] == len(set(image_keys))
    assert [p.stat().st_mtime_ns for p in cache_files] == mtimes  # proposals came from the cache
    with pytest.raises(DataPrepError, match="other inputs"):
        build_lmdb(entries[:1], work, CFG, workers=1)


def test_cli_build_and_corrupt_image_error(shared_data, tmp_path, capsys):
    root = tmp_path / "pts"
    root.mkdir()
    src = shared_data / "helen" / "trainset" / "100032540_1.pts"
    (root / "a.pts").write_text(src.read_text())
    (root / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    assert cli_main(["build", "--dataset", "300w", "--root", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {root / 'a.jpg'}: corrupt or unreadable image (OpenCV could not decode it)"


def _minimal_net(tmp_path, out, batch):
    tops = "\n".join(f'  top: "{name}"' for name in SEGMENTS)
    points = "\n".join(f"    slice_point: {p}" for p in SLICE_POINTS)
    text = f"""name: "data_prep_check"
layer {{ name: "data" type: "Data" top: "data"
  data_param {{ source: "{out / lmdb_io.IMAGE_DB}" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "label" type: "Data" top: "label"
  data_param {{ source: "{out / lmdb_io.LABEL_DB}" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "label_flat" type: "Flatten" bottom: "label" top: "label_flat" }}
layer {{ name: "slice_label" type: "Slice" bottom: "label_flat"
{tops}
  slice_param {{ axis: 1
{points}
  }} }}
"""
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return path


def test_caffe_data_layers_read_the_pair(helen_build, tmp_path, repo_root):
    caffe = pytest.importorskip("caffe")
    if not hasattr(caffe, "Net"):
        pytest.skip("pycaffe not built yet (only caffe.proto importable)")
    caffe.set_mode_cpu()
    _, _, out, _ = helen_build
    pair = lmdb_io.LmdbPair(out, readonly=True)
    first = [item for _, item in zip(range(4), pair.items())]
    pair.close()
    net = caffe.Net(str(_minimal_net(tmp_path, out, 4)), caffe.TRAIN)
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, np.stack([c.transpose(2, 0, 1) for _, c, _ in first]))
    labels = np.stack([lab for _, _, lab in first])
    for name in SEGMENTS:
        np.testing.assert_array_equal(net.blobs[name].data.reshape(4, -1), labels[:, OFFSETS[name]])
    del net  # LMDB forbids opening one environment twice in a process: free the first net's readers
    gc.collect()
    train_val = repo_root / "prototxt" / "hyperface" / "train_val.prototxt"
    try:
        from prototxt.netspec_utils import with_data_sources
    except ImportError:
        return
    if train_val.is_file():
        text = with_data_sources(train_val, train_images=str(out / lmdb_io.IMAGE_DB),
                                 train_labels=str(out / lmdb_io.LABEL_DB), batch_size=2)
        path = tmp_path / "train_val.prototxt"
        path.write_text(text)
        net = caffe.Net(str(path), caffe.TRAIN)
        outputs = net.forward()
        assert outputs and all(np.isfinite(v).all() for v in outputs.values())
        mean = np.array(CFG.input.mean_bgr, np.float32).reshape(3, 1, 1)
        np.testing.assert_allclose(net.blobs["data"].data[0], first[0][1].transpose(2, 0, 1) - mean)
        np.testing.assert_array_equal(net.blobs["detection"].data.ravel(), labels[:2, 0])
