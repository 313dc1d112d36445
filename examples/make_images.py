"""Writes the demo's sample photos (examples/images/*.jpg) from scikit-image's bundled data.

Only images shipped inside the scikit-image wheel are used (no pooch download); see
examples/README.md for each file's source and licence. Run once; the JPEGs are committed:
    .venv/bin/python examples/make_images.py
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
from skimage import data

log = logging.getLogger("examples")
OUT = Path(__file__).resolve().parent / "images"
JPEG_QUALITY = 92
# file name -> skimage.data loader (all bundled in the wheel, public domain / CC0)
SAMPLES = {
    "astronaut.jpg": data.astronaut,   # Eileen Collins (NASA): one frontal face, colour
    "cameraman.jpg": data.camera,      # a man behind a camera: one face, partly occluded, greyscale
    "chelsea.jpg": data.chelsea,       # a cat: a negative (no human face)
}


def write_samples(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, loader in SAMPLES.items():
        image = loader()
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        path = out / name
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{path}: JPEG encoding failed")
        log.info("wrote %s (%dx%d)", path, image.shape[1], image.shape[0])
        written.append(path)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_samples()
