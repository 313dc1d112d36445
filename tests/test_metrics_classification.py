"""Region-classification metrics (benchmarks/metrics/classification.py) on hand-computed cases."""
import numpy as np
import pytest

from benchmarks.metrics.classification import average_precision, balanced_accuracy


def test_average_precision_hand_computed():
    # ranked: + - + -  -> precision at the two positives 1/1 and 2/3 -> envelope AP = 0.5*1 + 0.5*2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0.9, 0.8], [1, 1]) == pytest.approx(1.0)
    assert average_precision([0.1, 0.9], [1, 0]) == pytest.approx(0.5)  # - + : precision 1/2 at recall 1
    assert np.isnan(average_precision([0.5], [0]))


def test_balanced_accuracy_hand_computed():
    # always "female" on 3 male / 1 female: recall(male)=0, recall(female)=1 -> 0.5 (plain accuracy would be 0.25)
    assert balanced_accuracy([0, 0, 0, 0], [1, 1, 1, 0]) == pytest.approx(0.5)
    # 2 of 3 males right, the female right -> (2/3 + 1) / 2
    assert balanced_accuracy([1, 1, 0, 0], [1, 1, 1, 0]) == pytest.approx((2 / 3 + 1) / 2)


def test_fp_per_image_at_recall_hand_computed():
    from benchmarks.metrics.detection import APResult, fp_per_image_at_recall
    # 2 faces over 2 images; ranked detections TP, FP, TP -> 90 % recall first reached at rank 3 with 1 FP
    r = APResult(ap=0.0, recall=np.array([0.5, 0.5, 1.0]), precision=np.array([1.0, 0.5, 2 / 3]),
                 scores=np.array([0.9, 0.8, 0.7]), n_positives=2, n_tp=2, n_fp=1)
    assert fp_per_image_at_recall(r, 2, 0.9) == pytest.approx(0.5)
    assert fp_per_image_at_recall(r, 2, 0.5) == pytest.approx(0.0)
    assert fp_per_image_at_recall(APResult(0.0, np.array([0.5]), np.array([1.0]), np.array([0.9]), 2, 1, 0), 2, 0.9) == float("inf")


def test_best_f1_threshold_hand_computed():
    from benchmarks.metrics.detection import APResult, best_f1_threshold
    # 3 faces; ranked TP(0.9) FP(0.8) TP(0.7) FP(0.6): F1 after each = 2/4, 2/5, 4/6, 4/7 -> cut at 0.7
    r = APResult(ap=0.0, recall=np.array([1, 1, 2, 2]) / 3, precision=np.array([1, 0.5, 2 / 3, 0.5]),
                 scores=np.array([0.9, 0.8, 0.7, 0.6]), n_positives=3, n_tp=2, n_fp=2)
    thr, p, rec, f1 = best_f1_threshold(r)
    assert (thr, p, rec, f1) == pytest.approx((0.7, 2 / 3, 2 / 3, 2 / 3))
    # equal scores cannot be split: TP(0.9) FP(0.5) TP(0.5) with 2 faces -> best is all three (F1 0.8)
    r2 = APResult(0.0, np.array([0.5, 0.5, 1.0]), np.array([1, 0.5, 2 / 3]), np.array([0.9, 0.5, 0.5]), 2, 2, 1)
    assert best_f1_threshold(r2)[0] == pytest.approx(0.5)
