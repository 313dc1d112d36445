"""Overlays, separate from computing: the same Face objects feed the JSON and these drawings."""
from __future__ import annotations

import cv2
import numpy as np

from core.face import Face

BOX_COLOUR = (0, 255, 0)
POINT_COLOUR = (0, 255, 255)
AXIS_COLOURS = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # x red, y green, facing direction blue


def pose_axes(pose_deg: np.ndarray, length: float) -> np.ndarray:
    """(3, 2) image-plane offsets of the head's x (image right), y (down) and facing axes.

    AFLW convention (core/aflw21.py): yaw > 0 turns the face toward the image left, so the facing
    axis tilts left; pitch > 0 lifts it upward; roll rotates in the image plane.
    """
    roll, pitch, yaw = np.radians(np.nan_to_num(np.asarray(pose_deg, dtype=np.float64)))
    ry = np.array([[np.cos(yaw), 0, -np.sin(yaw)], [0, 1, 0], [np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), np.sin(pitch)], [0, -np.sin(pitch), np.cos(pitch)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    axes = rz @ rx @ ry @ np.diag([1.0, 1.0, -1.0])  # columns: head axes in camera coordinates (z toward camera)
    return axes[:2].T * length


def draw_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of the BGR image with each face's box, visible landmarks, pose axes and gender/score text."""
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thick)
        for (x, y), vis in zip(face.landmarks, face.visible):
            if vis and np.isfinite(x) and np.isfinite(y):
                cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, POINT_COLOUR, -1)
        if np.isfinite(face.pose_deg).all():
            centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
            for offset, colour in zip(pose_axes(face.pose_deg, (x2 - x1) / 2), AXIS_COLOURS):
                tip = centre + offset
                cv2.line(out, tuple(int(round(v)) for v in centre), tuple(int(round(v)) for v in tip), colour, thick)
        label = f"{face.score:.2f}"
        if face.gender:
            label += f" {face.gender.upper()} {face.gender_prob_male:.2f}"
        cv2.putText(out, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, BOX_COLOUR, thick)
    return out
