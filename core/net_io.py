"""Blob names and input preprocessing shared by the deploy prototxts (prototxt/) and the pipeline.

Input: blob `data`, shape (N, 3, 227, 227), BGR float = uint8 crop warped to 227x227 minus
InputConfig.mean_bgr (no scaling), the same transform as the train_val Data layer's
`transform_param { mean_value: 104 mean_value: 117 mean_value: 123 }`.
"""
INPUT_BLOB = "data"

# Deploy outputs of HyperFace / Multitask (R-CNN nets give the subset of their task).
DETECTION_PROB = "detection_prob"   # (N, 2) softmax, column 1 = face
LANDMARKS = "landmarks"             # (N, 42) a_1, b_1, ... (eq. 2 normalisation, see core/labels.py)
VISIBILITY = "visibility"           # (N, 21) raw regression output, >= threshold -> visible
POSE = "pose"                       # (N, 3) roll, pitch, yaw in radians (AFLW convention)
GENDER_PROB = "gender_prob"         # (N, 2) softmax, column 1 = male
BBOX_DELTAS = "bbox_deltas"         # (N, 4) R-CNN Face box regression (dx, dy, dw, dh)
LANDMARKS68 = "landmarks68"         # (N, 136) the IBUG head

HYPERFACE_OUTPUTS = (DETECTION_PROB, LANDMARKS, VISIBILITY, POSE, GENDER_PROB)
