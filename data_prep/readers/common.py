"""Helpers shared by the dataset readers: checked image loading and coordinate validation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from data_prep.errors import DataPrepError


def load_image(path: str | Path) -> np.ndarray:
    """BGR uint8 image, or DataPrepError naming the file when it is missing or not decodable."""
    path = Path(path)
    if not path.is_file():
        raise DataPrepError(path, "image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataPrepError(path, "corrupt or unreadable image (OpenCV could not decode it)")
    return image


def check_finite(values: np.ndarray, path: str | Path, what: str) -> np.ndarray:
    """Return `values` as float64, or DataPrepError when any entry is NaN/inf."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise DataPrepError(path, f"NaN or infinite {what}")
    return values


def read_csv_checked(path: Path, **kwargs):
    """pandas.read_csv, with an empty or malformed file reported as DataPrepError naming it."""
    import pandas as pd
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataPrepError(path, "empty file (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataPrepError(path, f"not a readable CSV file ({str(err).splitlines()[0][:120]})") from None


def numeric_columns(frame, columns: list[str], path: Path) -> np.ndarray:
    """frame[columns] as a float64 array; DataPrepError naming the row (file line) and column of the
    first value that is not a number."""
    import pandas as pd
    block = frame[columns]
    converted = block.apply(pd.to_numeric, errors="coerce")
    bad = converted.isna().to_numpy() & block.notna().to_numpy()
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataPrepError(path, f"line {row + 2}, column {columns[col]}: {block.iat[row, col]!r} is not a number")
    return converted.to_numpy(dtype=np.float64)


def apply_limit(records: list, limit: int | None) -> list:
    """The first `limit` records (all when limit is None or <= 0)."""
    return records if not limit or limit <= 0 else records[:limit]


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header; (0, 0) when the file is missing or not an image
    (the builder then reports it by name when it loads the pixels)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return 0, 0
