"""Reading input images robustly: every problem becomes a BadImageError naming the file, and every
conversion (grayscale, alpha, 16-bit, huge) is reported so the CLI can log it.

Whether a file is truncated or corrupt is decided by decoding it (OpenCV, with libjpeg/libpng's own
warnings captured from stderr), never by looking at its last bytes: a JPEG with bytes after its
end-of-image marker (common in camera and web files) is a valid photo."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import BadImageError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
JPEG_SOI, JPEG_EOI, PNG_SIGNATURE = b"\xff\xd8\xff", b"\xff\xd9", b"\x89PNG\r\n\x1a\n"
# libjpeg's warning when the data ends before the image does (the decoder then fills the rest with grey)
TRUNCATION_WARNINGS = ("Premature end of JPEG file",)
_STDERR_LOCK = threading.RLock()


@dataclass
class LoadedImage:
    path: Path
    image: np.ndarray                  # (H, W, 3) uint8 BGR, possibly downscaled
    width: int                         # original size
    height: int
    scale: float = 1.0                 # image = original * scale
    notes: list[str] = field(default_factory=list)  # conversions made, one short phrase each


@contextlib.contextmanager
def captured_stderr(sink: list[str]):
    """Collect what C libraries (libjpeg, libpng) write to file descriptor 2 while the block runs."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2: decode without capturing
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                sink += [line.strip() for line in tmp.read().decode("utf-8", "replace").splitlines() if line.strip()]


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header (PIL, no pixels decoded), or None."""
    from PIL import Image
    with _STDERR_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read
        try:
            with Image.open(io.BytesIO(data)) as im:
                return tuple(im.size)
        except Exception:
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _too_large(data: bytes) -> str:
    limit = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    size = header_size(data)
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "more pixels"
    return f"image too large to decode ({what}, over OpenCV's limit of {limit:,}; a decompression bomb?)"


def _reduced_flag(size: tuple[int, int] | None, max_side: int | None, notes: list[str]) -> int | None:
    """The cv2.IMREAD_REDUCED_COLOR_* flag for an image whose longer side is at least twice max_side
    (JPEG decodes at that scale, so a 20000 x 20000 photo never exists at full size in memory): the
    largest factor of 2, 4, 8 that leaves the longer side >= max_side; None: decode unchanged."""
    if not size or not max_side or max(size) < 2 * max_side:
        return None
    factor = max(f for f in (2, 4, 8) if max(size) / f >= max_side)
    notes.append(f"decoded at 1/{factor} size")
    return {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor] | cv2.IMREAD_IGNORE_ORIENTATION


def decode_image(data: bytes, path, max_side: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode encoded image bytes with OpenCV (unchanged depth and channels; an image whose longer
    side is at least 2 * max_side decoded reduced, see _reduced_flag).

    Returns (image, notes): notes holds decoder warnings of a photo that decoded anyway (e.g.
    "Corrupt JPEG data: ...") and "decoded at 1/k size". BadImageError names `path` and the problem:
    empty, truncated, too many pixels, or not decodable."""
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    messages: list[str] = []
    notes: list[str] = []
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        with captured_stderr(messages):
            image = None
            flag = _reduced_flag(header_size(data) if max_side else None, max_side, notes)
            if flag is not None:
                image = cv2.imdecode(buf, flag)
                if image is None or image.size == 0:
                    notes.clear()
            if image is None or image.size == 0:
                image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(err) or "validateInputImageSize" in str(err):
            raise BadImageError(path, _too_large(data)) from None
        raise BadImageError(path, "not a decodable image (OpenCV: "
                                  f"{str(err).strip().splitlines()[-1][:120]})") from None
    if image is None or image.size == 0:
        if data[:3] == JPEG_SOI and data.rstrip(b"\x00")[-2:] != JPEG_EOI:
            raise BadImageError(path, "truncated JPEG (decoding failed and the file does not end with the "
                                      "end-of-image marker)")
        if data[:8] == PNG_SIGNATURE and b"IEND" not in data[-16:]:
            raise BadImageError(path, "truncated PNG (decoding failed and the file has no IEND chunk)")
        detail = f"; decoder said: {messages[-1][:120]}" if messages else ""
        raise BadImageError(path, f"not a decodable image{detail}")
    cut = [m for m in messages if any(w in m for w in TRUNCATION_WARNINGS)]
    if cut:
        raise BadImageError(path, f"truncated JPEG (decoder: {cut[0]})")
    notes += [f"decoder warning: {m[:120]}" for m in dict.fromkeys(messages)]
    return image, notes


def to_bgr8(image, path, notes: list[str]) -> np.ndarray:
    """Any image array (gray, BGRA, 16-bit, float) as uint8 BGR; notes what was converted.
    Anything that is not an image (None, an empty or 0-sized array, other shapes or pixel types)
    is a BadImageError naming `path` and what was wrong."""
    if image is None:
        raise BadImageError(path, "no image (got None; cv2.imread returns None for a file it cannot read)")
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as err:
            raise BadImageError(path, f"not an image array ({type(image).__name__}: {err.__class__.__name__})") from None
    if image.dtype == object or image.dtype.kind not in "uif":
        raise BadImageError(path, f"unsupported pixel type {image.dtype} (want uint8, uint16 or float)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise BadImageError(path, f"unsupported image shape {image.shape} (want HxW, HxWx1, HxWx3 or HxWx4)")
    if image.size == 0:
        raise BadImageError(path, f"empty image (shape {image.shape})")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        notes.append("16-bit -> 8-bit")
    elif image.dtype.kind == "f":
        image = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        notes.append("float -> 8-bit")
    elif image.dtype != np.uint8:
        raise BadImageError(path, f"unsupported pixel type {image.dtype} (want uint8, uint16 or float)")
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2BGR)
        notes.append("grayscale -> BGR")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
        notes.append("alpha channel dropped")
    return np.ascontiguousarray(image)


def read_image(path: str | Path, max_side: int) -> LoadedImage:
    """Decode `path` to uint8 BGR; images with a side over max_side are downscaled (scale recorded)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a folder, not an image file") from None
    except OSError as err:
        raise BadImageError(path, f"unreadable ({err.strerror or err.__class__.__name__})") from None
    raw, notes = decode_image(data, path, max_side)
    image = to_bgr8(raw, path, notes)
    size = header_size(data) if any(n.startswith("decoded at 1/") for n in notes) else None
    width, height = size or (image.shape[1], image.shape[0])
    scale = 1.0
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        notes.append(f"{width}x{height} downscaled by {scale:.3f} for detection")
    return LoadedImage(path, image, width, height, scale, notes)


@dataclass
class InputScan:
    """What the inputs named: image files to process, and what could not be used, with the reason."""
    paths: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)             # named but not there
    problems: list[tuple[Path, str]] = field(default_factory=list)  # found in a folder but unusable
    folders: list[Path] = field(default_factory=list)             # the folders named (resolved)
    ordered: list[Path] = field(default_factory=list)             # paths and missing, in the order named


def scan_inputs(inputs: list[str | Path]) -> InputScan:
    """Image files from files and folders (a folder: its image files, sorted; not recursive).
    A file named explicitly is kept whatever its suffix (a bad one is reported when read); a path
    that does not exist is `missing`; a broken symbolic link or unreadable folder is a `problem`."""
    scan = InputScan()
    found: list[Path] = []  # in the order named; a missing explicit path keeps its place in `ordered`
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            scan.folders.append(p.resolve())
            try:
                entries = sorted(p.iterdir())
            except OSError as err:
                scan.problems.append((p, f"folder not readable ({err.strerror or err.__class__.__name__})"))
                continue
            for f in entries:
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if f.is_symlink() and not f.exists():
                    scan.problems.append((f, f"broken symbolic link (target {os.readlink(f)} not found)"))
                elif f.is_file():
                    found.append(f)
        elif p.is_symlink() and not p.exists():
            scan.problems.append((p, f"broken symbolic link (target {os.readlink(p)} not found)"))
        elif not p.exists():
            scan.missing.append(p)
            found.append(p)
        else:
            found.append(p)
    seen = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            scan.ordered.append(p)
    missing = set(scan.missing)
    scan.paths = [p for p in scan.ordered if p not in missing]
    return scan


def list_inputs(inputs: list[str | Path]) -> list[Path]:
    """The image files of scan_inputs, missing paths kept in place (reading them reports them)."""
    return scan_inputs(inputs).ordered
