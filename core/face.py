"""`Face`: what the pipeline returns for each detected face, what the JSON output holds and what the
benchmarks score. Every task fills its own fields of the same object (InsightFace's pattern).
Coordinates are 0-based image pixels; angles are degrees in the AFLW convention (core/aflw21.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.aflw21 import NUM_POINTS, POINT_NAMES


@dataclass
class Face:
    box: np.ndarray                      # (4,) x1, y1, x2, y2
    score: float                         # face probability (detection_prob[:, 1])
    landmarks: np.ndarray = field(default_factory=lambda: np.full((NUM_POINTS, 2), np.nan))  # (21, 2)
    visibility: np.ndarray = field(default_factory=lambda: np.zeros(NUM_POINTS))  # (21,) predicted visibility score
    visible: np.ndarray = field(default_factory=lambda: np.zeros(NUM_POINTS, dtype=bool))  # score >= threshold
    pose_deg: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # roll, pitch, yaw
    gender_prob_male: float = float("nan")
    # the region (proposal or IRP box, image pixels) whose net score `score` is: the best of its L-NMS
    # cluster, or the NMS-kept region; what test.flip_rescore scores again mirrored. Not in the JSON.
    region: np.ndarray | None = field(default=None, repr=False, compare=False)
    # (68, 2) iBUG-68 points of a model with that head (prototxt/hyperface_ibug68), else None
    landmarks68: np.ndarray | None = field(default=None, repr=False)

    @property
    def gender(self) -> str:
        """'m' or 'f' by arg-max probability (Section 3.3); '' when unknown."""
        if np.isnan(self.gender_prob_male):
            return ""
        return "m" if self.gender_prob_male >= 0.5 else "f"

    def to_dict(self) -> dict:
        """The JSON form (schema: pipeline/face_schema.json)."""
        roll, pitch, yaw = (float(v) for v in self.pose_deg)
        return {
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "landmarks": [
                {"name": name, "x": float(x), "y": float(y), "visibility": float(v), "visible": bool(vis)}
                for name, (x, y), v, vis in zip(POINT_NAMES, self.landmarks, self.visibility, self.visible)
            ],
            "pose_deg": {"roll": roll, "pitch": pitch, "yaw": yaw},
            "gender": {"label": self.gender, "prob_male": float(self.gender_prob_male)},
            **({} if self.landmarks68 is None else
               {"landmarks68": np.asarray(self.landmarks68, dtype=np.float64).reshape(68, 2).tolist()}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        lms = d["landmarks"]
        return cls(
            box=np.asarray(d["box"], dtype=np.float64),
            score=float(d["score"]),
            landmarks=np.array([[p["x"], p["y"]] for p in lms], dtype=np.float64),
            visibility=np.array([p["visibility"] for p in lms], dtype=np.float64),
            visible=np.array([p["visible"] for p in lms], dtype=bool),
            pose_deg=np.array([d["pose_deg"][k] for k in ("roll", "pitch", "yaw")], dtype=np.float64),
            gender_prob_male=float(d["gender"]["prob_male"]),
            landmarks68=np.asarray(d["landmarks68"], dtype=np.float64).reshape(68, 2) if "landmarks68" in d else None,
        )
