"""Large photos are decoded reduced (cv2.IMREAD_REDUCED_COLOR_*), never at full size (issue 12 peak
memory target): the reduction factor, the recorded original size and scale, and the pixels against a
full decode + INTER_AREA resize of the same real photo."""
from pathlib import Path

import cv2
import numpy as np

from pipeline.images import read_image
from core.config import DATA_ROOT  # noqa: E402

PHOTO = DATA_ROOT / "afw_sample" / "111076519.jpg"  # 2402 x 1824


def test_large_photo_decoded_reduced_with_its_original_size(tmp_path):
    big = read_image(PHOTO, 600)            # 2402 / 4 = 600.5 >= 600: decoded at 1/4, then resized to 600
    assert (big.width, big.height) == (2402, 1824)
    assert big.scale == 600 / 2402
    assert big.image.shape == (round(1824 * 600 / 2402), 600, 3)
    assert "decoded at 1/4 size" in big.notes
    full = cv2.resize(cv2.imread(str(PHOTO)), (600, big.image.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(big.image.astype(int) - full.astype(int)).mean() < 3.0   # same picture, another decoder path

    small = read_image(PHOTO, 1300)         # 2402 < 2 * 1300: decoded in full, as before
    assert not any("decoded at" in n for n in small.notes) and small.scale == 1300 / 2402
    assert small.image.shape == (round(1824 * 1300 / 2402), 1300, 3)

    png = tmp_path / "big.png"              # not a JPEG: OpenCV reduces after decoding, same result type
    cv2.imwrite(str(png), cv2.imread(str(PHOTO)))
    p = read_image(png, 1000)
    assert (p.width, p.height, p.image.shape[1]) == (2402, 1824, 1000) and "decoded at 1/2 size" in p.notes
