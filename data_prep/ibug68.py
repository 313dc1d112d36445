"""The iBUG 68-point scheme (300-W) as data_prep needs it: its mirror permutation, the map to the
AFLW-21 points and a head-pose estimate from the 68 points.

iBUG indices below are 1-based in comments, 0-based in code. iBUG points 37-42 are the eye on the
IMAGE left (the subject's right eye), which is AFLW's "LeftEye" (AFLW left/right = image sides).
"""
from __future__ import annotations

import cv2
import numpy as np

from core.aflw21 import NUM_POINTS

NUM_POINTS_68 = 68

# Mirror pairs (1-based): jaw, brows, nose base, eyes, outer and inner lips.
_PAIRS_68 = ([(i, 18 - i) for i in range(1, 9)] + [(18 + i, 27 - i) for i in range(5)] + [(32, 36), (33, 35)]
             + [(37, 46), (38, 45), (39, 44), (40, 43), (41, 48), (42, 47)]
             + [(49, 55), (50, 54), (51, 53), (56, 60), (57, 59), (61, 65), (62, 64), (66, 68)])
FLIP_PERMUTATION_68 = np.arange(NUM_POINTS_68)
for _a, _b in _PAIRS_68:
    FLIP_PERMUTATION_68[_a - 1], FLIP_PERMUTATION_68[_b - 1] = _b - 1, _a - 1
FLIP_PERMUTATION_68.setflags(write=False)

# AFLW-21 point (0-based) -> the iBUG points (1-based) whose mean gives it; None = not derivable.
AFLW_FROM_IBUG = (
    (18,), (20,), (22,),               # 1-3 LeftBrow left corner, centre, right corner (image-left brow)
    (23,), (25,), (27,),               # 4-6 RightBrow
    (37,), (37, 38, 39, 40, 41, 42), (40,),   # 7-9 LeftEye left corner, centre (mean of the eye), right corner
    (43,), (43, 44, 45, 46, 47, 48), (46,),   # 10-12 RightEye
    None,                              # 13 LeftEar: 68-point data has no ear lobes
    (32,), (31,), (36,),               # 14-16 NoseLeft, NoseCenter (tip), NoseRight
    None,                              # 17 RightEar
    (49,), (52, 58, 63, 67), (55,),    # 18-20 MouthLeftCorner, MouthCenter (mean of the lip mid-points), MouthRightCorner
    (9,),                              # 21 ChinCenter
)
assert len(AFLW_FROM_IBUG) == NUM_POINTS


def aflw21_from_68(points68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks (21, 2) with NaN for the ears, labelled (21,) bool) from (68, 2) iBUG points."""
    points68 = np.asarray(points68, dtype=np.float64).reshape(NUM_POINTS_68, 2)
    out = np.full((NUM_POINTS, 2), np.nan)
    labelled = np.zeros(NUM_POINTS, dtype=bool)
    for k, idx in enumerate(AFLW_FROM_IBUG):
        if idx is not None:
            out[k] = points68[[i - 1 for i in idx]].mean(axis=0)
            labelled[k] = True
    return out, labelled


# Generic 3-D head model (millimetre-like units; x to the image right, y up, z toward the camera),
# the widely used 6-point model of S. Mallick, "Head Pose Estimation using OpenCV and Dlib"
# (LearnOpenCV, 2016), written out here: nose tip, chin, outer eye corners, mouth corners.
MODEL_3D = np.array([
    [0.0, 0.0, 0.0],          # iBUG 31 nose tip
    [0.0, -330.0, -65.0],     # iBUG 9 chin
    [-225.0, 170.0, -135.0],  # iBUG 37 image-left eye, outer corner
    [225.0, 170.0, -135.0],   # iBUG 46 image-right eye, outer corner
    [-150.0, -150.0, -125.0],  # iBUG 49 image-left mouth corner
    [150.0, -150.0, -125.0],  # iBUG 55 image-right mouth corner
])
MODEL_IBUG_1BASED = (31, 9, 37, 46, 49, 55)
# Model frame (y up, z to camera) -> OpenCV camera frame (y down, z away): a frontal face has R = FLIP_YZ.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def pose_from_68(points68: np.ndarray, width: int, height: int) -> np.ndarray:
    """(roll, pitch, yaw) in degrees, AFLW convention (yaw > 0: face turned toward the image left,
    pitch > 0: face up, roll > 0: as AFLW2000-3D Pose_Para), from 2-D iBUG points by cv2.solvePnP
    with MODEL_3D and a pinhole camera (focal = image width, principal point = image centre)."""
    image_points = np.asarray(points68, dtype=np.float64)[[i - 1 for i in MODEL_IBUG_1BASED]]
    camera = np.array([[width, 0, width / 2.0], [0, width, height / 2.0], [0, 0, 1]], dtype=np.float64)
    # Start from a frontal face at the distance its eye-to-chin size implies (avoids the mirrored
    # local minimum plain SOLVEPNP_ITERATIVE falls into on profile faces).
    span = max(np.ptp(image_points[:, 0]), np.ptp(image_points[:, 1]), 1.0)
    centre = image_points.mean(axis=0)
    depth = width * np.ptp(MODEL_3D[:, 1]) / span
    rvec0 = np.array([[np.pi], [0.0], [0.0]])
    tvec0 = np.array([[(centre[0] - width / 2.0) * depth / width], [(centre[1] - height / 2.0) * depth / width], [depth]])
    ok, rvec, _ = cv2.solvePnP(MODEL_3D, image_points, camera, np.zeros(4), rvec0, tvec0,
                               useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan)
    rotation, _ = cv2.Rodrigues(rvec)
    head = rotation @ _FLIP_YZ  # head rotation in the camera frame (identity = frontal)
    # head = Rz(roll) @ Ry(yaw') @ Rx(pitch'), angles read off in the camera frame.
    yaw_cam = np.arcsin(np.clip(-head[2, 0], -1.0, 1.0))
    pitch_cam = np.arctan2(head[2, 1], head[2, 2])
    roll_cam = np.arctan2(head[1, 0], head[0, 0])
    return np.degrees(np.array([roll_cam, pitch_cam, yaw_cam])) * POSE_SIGNS


# Sign of each camera-frame angle in the AFLW convention (roll, pitch, yaw); fixed by
# tests/test_data_prep_readers.py against AFLW2000-3D Pose_Para on its 68 fitted points.
POSE_SIGNS = np.array([1.0, -1.0, 1.0])
