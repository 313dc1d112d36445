"""The AFLW 21-point scheme, in AFLW's own 1-based order (index 0 here is point 1).

Left/right are IMAGE (viewer) sides, as in aflw_crops and AFLW2000-3D `pt2d`: "Left" is the
subject's right. Pose convention used everywhere in this project (AFLW's, degrees in records and
JSON, radians in label vectors): yaw > 0 = face turned toward the image LEFT; roll and pitch as AFLW
stores them. A horizontal flip negates roll and yaw and swaps left/right points.
"""
import numpy as np

NUM_POINTS = 21

POINT_NAMES = (
    "LeftBrowLeftCorner", "LeftBrowCenter", "LeftBrowRightCorner",
    "RightBrowLeftCorner", "RightBrowCenter", "RightBrowRightCorner",
    "LeftEyeLeftCorner", "LeftEyeCenter", "LeftEyeRightCorner",
    "RightEyeLeftCorner", "RightEyeCenter", "RightEyeRightCorner",
    "LeftEar", "NoseLeft", "NoseCenter", "NoseRight", "RightEar",
    "MouthLeftCorner", "MouthCenter", "MouthRightCorner", "ChinCenter",
)

# FLIP_PERMUTATION[i] = index of the point that point i becomes after a horizontal flip.
_PAIRS_1BASED = [(1, 6), (2, 5), (3, 4), (7, 12), (8, 11), (9, 10), (13, 17), (14, 16), (18, 20)]
FLIP_PERMUTATION = np.arange(NUM_POINTS)
for _a, _b in _PAIRS_1BASED:
    FLIP_PERMUTATION[_a - 1], FLIP_PERMUTATION[_b - 1] = _b - 1, _a - 1
FLIP_PERMUTATION.setflags(write=False)

# Eye centres, used by normalisers and IRP.
LEFT_EYE_CENTER = 7    # 0-based index of LeftEyeCenter
RIGHT_EYE_CENTER = 10  # 0-based index of RightEyeCenter
