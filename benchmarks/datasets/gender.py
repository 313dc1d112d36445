"""Gender test sets (Section 5.4): CelebA, LFWA and held-out UTKFace. Each loader returns
GenderSample(image_id, path, gender 'm'/'f'). UTKFace is read by data_prep's reader (the one
that picks the training split), so the benchmark scores exactly the chips training left out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.errors import BenchmarkDataError

EXPECTED_CELEBA = ("CelebA: <dir>/list_attr_celeba.txt, <dir>/list_eval_partition.txt and images in "
                   "<dir>/img_align_celeba/ (or <dir>/img_celeba/)")
EXPECTED_LFWA = "LFWA: <dir>/lfw_attributes.txt (Kumar et al.; tab-separated, 'Male' column) and <dir>/lfw/<person>/<person>_NNNN.jpg"
CELEBA_TEST_PARTITION = "2"   # list_eval_partition.txt: 0 train, 1 val, 2 test


@dataclass
class GenderSample:
    image_id: str
    path: Path
    gender: str


def _need(path: Path, expected: str) -> Path:
    if not path.is_file():
        raise BenchmarkDataError(path, f"not found; expected {expected}")
    return path


def load_celeba(celeba_dir: str | Path, partition: str = CELEBA_TEST_PARTITION) -> list[GenderSample]:
    celeba_dir = Path(celeba_dir)
    attr = _need(celeba_dir / "list_attr_celeba.txt", EXPECTED_CELEBA)
    part = _need(celeba_dir / "list_eval_partition.txt", EXPECTED_CELEBA)
    img_dir = celeba_dir / "img_align_celeba"
    if not img_dir.is_dir():
        img_dir = celeba_dir / "img_celeba"
    split = dict(ln.split()[:2] for ln in part.read_text().splitlines() if len(ln.split()) >= 2)
    lines = attr.read_text().splitlines()
    if len(lines) < 2 or "Male" not in lines[1].split():
        raise BenchmarkDataError(attr, "line 2 must be the attribute names, including 'Male'")
    col = lines[1].split().index("Male") + 1          # +1: rows start with the file name
    out = []
    for line_no, ln in enumerate(lines[2:], start=3):
        f = ln.split()
        if not f:
            continue
        if len(f) <= col or f[col] not in ("1", "-1"):
            raise BenchmarkDataError(attr, f"line {line_no}: 'Male' value missing or not 1/-1")
        if split.get(f[0]) == partition:
            out.append(GenderSample(Path(f[0]).stem, img_dir / f[0], "m" if f[col] == "1" else "f"))
    return out


def load_lfwa(lfwa_dir: str | Path) -> list[GenderSample]:
    """lfw_attributes.txt: two '#' header lines, the second naming the tab-separated columns
    (person, imagenum, Male, ...); Male > 0 means male (a classifier score, Kumar et al. 2009)."""
    lfwa_dir = Path(lfwa_dir)
    path = _need(lfwa_dir / "lfw_attributes.txt", EXPECTED_LFWA)
    lines = path.read_text().splitlines()
    header = next((ln.lstrip("#").strip().split("\t") for ln in lines if ln.startswith("#") and "Male" in ln), None)
    if header is None:
        raise BenchmarkDataError(path, "no '#' header line naming the columns (person, imagenum, Male, ...)")
    ip, ii, im = header.index("person"), header.index("imagenum"), header.index("Male")
    out = []
    for line_no, ln in enumerate(lines, start=1):
        if not ln.strip() or ln.startswith("#"):
            continue
        f = ln.split("\t")
        try:
            person, num, male = f[ip], int(f[ii]), float(f[im])
        except (IndexError, ValueError):
            raise BenchmarkDataError(path, f"line {line_no}: malformed row") from None
        stem = f"{person.replace(' ', '_')}_{num:04d}"
        out.append(GenderSample(stem, lfwa_dir / "lfw" / person.replace(" ", "_") / f"{stem}.jpg", "m" if male > 0 else "f"))
    return out


def load_utkface(utk_dir: str | Path, split: str = "test", config=None) -> list[GenderSample]:
    """The held-out `split` of UTKFace (data_prep.readers.utkface, core/splits.py; training reads
    'train'). image_id is the file name without its extensions (`<age>_<gender>_..._<date>`)."""
    from data_prep.readers import read_utkface

    return [GenderSample(r.path.name.split(".")[0], r.path, r.faces[0].gender)
            for r in read_utkface(utk_dir, split=split, config=config)]
