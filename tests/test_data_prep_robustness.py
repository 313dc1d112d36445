"""Issue 13 items 7, 9, 10 and 12 for data_prep and the benchmarks: bad dataset files end in one line
naming the file (never a traceback), an empty build fails, AFLW2000-3D's 23-point files are skipped
and counted by the benchmark. Real files: the shared sets' own rows and .mat files, edited in a temp dir."""
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from benchmarks.score import score_runs
from core.config import load_config
from data_prep.cli import main as data_prep_main
from data_prep.errors import DataPrepError
from data_prep.readers import read_dataset
from data_prep.readers.aflw import read_aflw
from data_prep.readers.aflw2000 import read_aflw2000
from data_prep.readers.aflw_crops import read_aflw_crops
from test_data_prep_labels import make_aflw  # a tiny aflw.sqlite in AFLW's schema
from core.config import DATA_ROOT  # noqa: E402

DATA = DATA_ROOT
CROPS_CSV = DATA / "aflw_crops" / "annotations.csv"
AFLW2000 = DATA / "aflw2000_sample"


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def crops_csv(folder: Path, rows: int, edit=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = CROPS_CSV.read_text().splitlines()[: rows + 1]
    if edit:
        lines = edit(lines)
    (folder / "annotations.csv").write_text("\n".join(lines) + ("\n" if lines else ""))
    return folder


# ------------------------------------------------------------------ 7. one line instead of a traceback
def test_7_null_in_face_rect_names_table_column_and_face(tmp_path):
    path = make_aflw(tmp_path)
    con = sqlite3.connect(path)
    con.execute("UPDATE FaceRect SET x = NULL WHERE face_id = 20")
    con.commit()
    con.close()
    with pytest.raises(DataPrepError) as err:
        read_aflw(path, split="all")
    assert str(err.value) == f"{path}: table FaceRect: NULL x for face 20"


def test_7_header_only_and_empty_annotations_csv(tmp_path, capsys):
    header_only = crops_csv(tmp_path / "h", 0)
    with pytest.raises(DataPrepError) as err:
        read_aflw_crops(header_only, split="all")
    assert str(err.value) == f"{header_only / 'annotations.csv'}: has a header but no rows"
    empty = crops_csv(tmp_path / "e", 0, edit=lambda lines: [])
    assert data_prep_main(["build", "--dataset", "aflw_crops", "--root", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert one_line(capsys.readouterr().err) == f"error: {empty / 'annotations.csv'}: empty file (no header line)"


def test_7_data_prep_out_on_a_file(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    args = ["build", "--dataset", "aflw_crops", "--root", str(DATA / "aflw_crops"), "--limit", "2"]
    assert data_prep_main([*args, "--out", str(a_file)]) == 2
    assert one_line(capsys.readouterr().err) == f"error: {a_file}: --out is an existing file, not a folder"
    assert data_prep_main([*args, "--out", str(a_file / "lmdb")]) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {a_file / 'lmdb'}: --out cannot be created: {a_file} is a "
                                                 "file, not a folder")


# ------------------------------------------------------------------ 9. messages name the file, line and column
def test_9_non_number_in_annotations_names_file_line_and_column(tmp_path, capsys):
    def abc_in_x3(lines):
        cells = lines[2].split(",")
        cells[6] = "abc"                                   # image, yaw_deg, x1, y1, x2, y2, x3
        return lines[:2] + [",".join(cells)] + lines[3:]
    root = crops_csv(tmp_path / "abc", 3, abc_in_x3)
    assert data_prep_main(["build", "--dataset", "aflw_crops", "--root", str(root), "--split", "all",
                           "--out", str(tmp_path / "o")]) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {root / 'annotations.csv'}: line 3, column x3: 'abc' is not "
                                                 "a number")


# ------------------------------------------------------------------ 10. an empty build fails
def test_10_aflw_build_that_would_be_empty_fails(tmp_path, capsys):
    path = make_aflw(tmp_path)                           # 2 images; the default config holds out 1000
    out = tmp_path / "lmdb"
    assert data_prep_main(["build", "--dataset", "aflw", "--root", str(path), "--out", str(out)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"error: {path}: split 'train' has no images: the database has 2 images with faces and "
        "sampling.aflw_test_images = 1000 of them are held out for testing; lower it in a --config YAML or use "
        "--split all")
    assert not (out / "manifest.json").exists()
    crops = crops_csv(tmp_path / "c", 2)                 # both rows fall in the held-out test split
    assert data_prep_main(["build", "--dataset", "aflw_crops", "--root", str(crops), "--out", str(out)]) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {crops}: split 'train' of aflw_crops has no images: "
                                                 "nothing to build")


# ------------------------------------------------------------------ 12. AFLW2000-3D files with 23 points
@pytest.fixture
def aflw2000_with_23_points(tmp_path):
    folder = tmp_path / "aflw2000"
    shutil.copytree(AFLW2000, folder)
    mat_path = folder / "image00050.mat"
    mat = scipy.io.loadmat(str(mat_path))
    mat["pt2d"] = np.concatenate([mat["pt2d"], mat["pt2d"][:, :2]], axis=1)   # (2, 23), as 3 real files
    scipy.io.savemat(str(mat_path), {k: v for k, v in mat.items() if not k.startswith("__")})
    return folder


def test_12_aflw2000_reader_fails_loudly_or_skips_and_counts(aflw2000_with_23_points):
    folder = aflw2000_with_23_points
    with pytest.raises(DataPrepError) as err:
        read_aflw2000(folder)                            # training: an error naming the file
    assert str(err.value) == f"{folder / 'image00050.mat'}: pt2d has shape (2, 23), expected (2, 21)"
    skipped = []
    records = read_dataset("aflw2000", folder, skipped=skipped)
    assert len(records) == 15 and "image00050" not in {r.image_id for r in records}
    assert skipped == [(folder / "image00050.mat", "pt2d has shape (2, 23), expected (2, 21)")]


def test_12_aflw2000_benchmark_skips_with_a_counted_note(aflw2000_with_23_points, tmp_path):
    folder = aflw2000_with_23_points
    results = tmp_path / "results"
    (results / "json").mkdir(parents=True)               # no detections: every face is a miss
    out = tmp_path / "bench"
    metrics = score_runs("aflw2000", folder, {"none": results}, out, load_config())
    assert metrics["none"]["faces"] == 15 and metrics["none"]["detected"] == 0
    assert ("- Skipped 1 annotation file(s) that do not fit the protocol: image00050.mat: pt2d has shape (2, 23), "
            "expected (2, 21).") in (out / "report.md").read_text().splitlines()
