"""Reading input images robustly: every problem becomes a BadImageError naming the file, and every
conversion (grayscale, alpha, 16-bit, huge) is reported so the CLI can log it."""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import BadImageError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}


@dataclass
class LoadedImage:
    path: Path
    image: np.ndarray                  # (H, W, 3) uint8 BGR, possibly downscaled
    width: int                         # original size
    height: int
    scale: float = 1.0                 # image = original * scale
    notes: list[str] = field(default_factory=list)  # conversions made, one short phrase each


def _truncated(data: bytes) -> str | None:
    """Why an encoded JPEG/PNG is cut short, or None when its end marker is present."""
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-64:]:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        return "truncated PNG (no IEND chunk)"
    return None


def to_bgr8(image: np.ndarray, path, notes: list[str]) -> np.ndarray:
    """Any decoded image (gray, BGRA, 16-bit, float) as uint8 BGR; notes what was converted."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        notes.append("16-bit -> 8-bit")
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        notes.append("float -> 8-bit")
    elif image.dtype != np.uint8:
        raise BadImageError(path, f"unsupported pixel type {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        notes.append("grayscale -> BGR")
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        notes.append("alpha channel dropped")
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise BadImageError(path, f"unsupported image shape {image.shape}")
    return np.ascontiguousarray(image)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header (PIL reads no pixels), None when PIL cannot tell."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read: no decompression-bomb risk here
    try:
        with Image.open(io.BytesIO(data)) as im:
            return tuple(int(v) for v in im.size)
    except Exception:  # noqa: BLE001  (any PIL failure: decode in full as before)
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _decode(data: bytes, max_side: int, notes: list[str]) -> tuple[np.ndarray | None, tuple[int, int] | None]:
    """(decoded image, original (width, height) or None). An image whose longer side is at least twice
    max_side is decoded reduced by 2, 4 or 8 (cv2.IMREAD_REDUCED_COLOR_*: JPEG decodes at that
    scale, so a 20000 x 20000 photo never exists at full size in memory), the largest factor that
    leaves the longer side >= max_side; everything else is decoded unchanged."""
    buf = np.frombuffer(data, dtype=np.uint8)
    size = _header_size(data)
    if size and max(size) >= 2 * max_side:
        factor = max(f for f in (2, 4, 8) if max(size) / f >= max_side)
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        image = cv2.imdecode(buf, flag | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is not None and image.size:
            notes.append(f"decoded at 1/{factor} size")
            return image, size
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), size


def read_image(path: str | Path, max_side: int) -> LoadedImage:
    """Decode `path` to uint8 BGR; images with a side over max_side are downscaled (scale recorded)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except OSError as err:
        raise BadImageError(path, f"unreadable ({err.strerror or err.__class__.__name__})") from None
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    reason = _truncated(data)
    if reason:
        raise BadImageError(path, reason)
    notes: list[str] = []
    image, size = _decode(data, max_side, notes)
    if image is None or image.size == 0:
        raise BadImageError(path, "not a decodable image")
    image = to_bgr8(image, path, notes)
    width, height = size or (image.shape[1], image.shape[0])
    scale = 1.0
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        notes.append(f"{width}x{height} downscaled by {scale:.3f} for detection")
    return LoadedImage(path, image, width, height, scale, notes)


def list_inputs(inputs: list[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder: its image files, sorted; not recursive).
    A file named explicitly is kept whatever its suffix (a bad one is reported when read)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    seen, unique = set(), []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
