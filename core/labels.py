"""The label vector of one region sample: written by data_prep into the label LMDB (a float Datum
of shape (LABEL_LENGTH, 1, 1)) and cut apart by the Slice layer of every train_val.prototxt.

Masks implement the IoU rules of Section 3.2 and the visibility weighting of equation 2 with stock
layers: a masked Euclidean loss is EuclideanLoss(pred * mask, target * mask), where data_prep has
already multiplied the target by its mask, so a masked-out entry contributes neither loss nor
gradient. Class labels use IGNORE_LABEL with SoftmaxWithLoss's ignore_label.

Layout version 1 (offsets in floats):
  detection        1   1 face / 0 non-face / -1 ignore
  landmarks       42   a_1, b_1, ..., a_21, b_21 (eq. 2: (x_i - x_c) / w, (y_i - y_c) / h)
  landmarks_mask  42   visibility of point i (for both its coordinates) if IoU > 0.35, else 0
  visibility      21   1 visible / 0 invisible (target)
  visibility_mask 21   1 where the point's visibility is known and IoU > 0.35
  pose             3   roll, pitch, yaw in RADIANS (AFLW sign convention, core/aflw21.py)
  pose_mask        3   per component: 1 where known and IoU > 0.5
  gender           1   1 male / 0 female / -1 ignore (unknown or IoU <= 0.5)
  bbox_targets     4   R-CNN box regression targets (dx, dy, dw, dh) to the matched face
  bbox_mask        4   1 for positives (IoU > 0.5)
  landmarks68    136   iBUG 68 points, same normalisation as landmarks (300-W sets only)
  landmarks68_mask 136
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

LABEL_LAYOUT_VERSION = 1
IGNORE_LABEL = -1

SEGMENTS = OrderedDict([
    ("detection", 1),
    ("landmarks", 42),
    ("landmarks_mask", 42),
    ("visibility", 21),
    ("visibility_mask", 21),
    ("pose", 3),
    ("pose_mask", 3),
    ("gender", 1),
    ("bbox_targets", 4),
    ("bbox_mask", 4),
    ("landmarks68", 136),
    ("landmarks68_mask", 136),
])

OFFSETS: dict[str, slice] = {}
_start = 0
for _name, _length in SEGMENTS.items():
    OFFSETS[_name] = slice(_start, _start + _length)
    _start += _length
LABEL_LENGTH = _start

# slice_point list for a Caffe Slice layer (axis 1) whose tops are SEGMENTS in order.
SLICE_POINTS = [OFFSETS[name].start for name in list(SEGMENTS)[1:]]


def empty_label() -> np.ndarray:
    """A label vector where every task is masked out and class labels are ignored."""
    label = np.zeros(LABEL_LENGTH, dtype=np.float32)
    label[OFFSETS["detection"]] = IGNORE_LABEL
    label[OFFSETS["gender"]] = IGNORE_LABEL
    return label


def segment(label: np.ndarray, name: str) -> np.ndarray:
    """View of one named segment of a label vector (or of the last axis of a batch of them)."""
    return label[..., OFFSETS[name]]
