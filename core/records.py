"""The face-record type every dataset reader returns (AFLW sqlite, aflw_crops, 300-W, AFLW2000,
WIDER, UTKFace, AFW, FDDB ...). Unknown values are explicit, so data_prep can mask the matching
losses: NaN landmarks/pose components, `landmarks_labelled` False, `gender` None.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.aflw21 import NUM_POINTS


@dataclass
class FaceRecord:
    """One annotated face in one image. Coordinates are 0-based image pixels."""
    box: np.ndarray                                   # (4,) x1, y1, x2, y2 float
    landmarks: np.ndarray | None = None               # (21, 2) AFLW-21 x, y; NaN where not visible/unknown
    visibility: np.ndarray | None = None              # (21,) 1 visible, 0 invisible
    landmarks_labelled: np.ndarray | None = None      # (21,) bool: visibility of this point is known
    pose_deg: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # roll, pitch, yaw; NaN = unknown
    gender: str | None = None                         # "m", "f" or None (unknown: no gender loss)
    landmarks68: np.ndarray | None = None             # (68, 2) iBUG points when the set has them
    face_id: str = ""                                 # dataset's id of the face, for tracing
    ignore: bool = False                              # kept only so no region overlapping it is a negative
                                                      # (e.g. WIDER faces under sampling.min_face_side): never a positive

    def __post_init__(self):
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(NUM_POINTS, 2)
            if self.visibility is None:
                self.visibility = (~np.isnan(self.landmarks).any(axis=1)).astype(np.float64)
            if self.landmarks_labelled is None:
                self.landmarks_labelled = np.ones(NUM_POINTS, dtype=bool)
        self.pose_deg = np.asarray(self.pose_deg, dtype=np.float64).reshape(3)
        if self.gender not in (None, "m", "f"):
            raise ValueError(f"face {self.face_id!r}: gender must be 'm', 'f' or None, got {self.gender!r}")

    @property
    def has_landmarks(self) -> bool:
        return self.landmarks is not None and bool(np.any(self.landmarks_labelled))


@dataclass
class ImageRecord:
    """One image and its annotated faces."""
    path: Path
    faces: list[FaceRecord]
    width: int = 0
    height: int = 0
    image_id: str = ""
