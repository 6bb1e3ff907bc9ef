"""Instance metrics against hand-computed cases (the arithmetic is in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.training import InstanceMatch, match_instances, mean_average_precision
from napari_unet_stack.training.metrics import object_ious

# true: object 1 (4 px), 2 (2 px), 3 (2 px); pred: 5 (3 px), 6 (3 px), 7 (2 px)
TRUE = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3, 0, 0]])
PRED = np.array([[5, 5, 5, 0, 0, 6, 6, 6, 0, 0, 7, 7]])


def test_pair_ious_by_hand():
    t, p, v, n_true, n_pred = object_ious(PRED, TRUE)
    # (1, 5): 3 shared / (4 + 3 - 3) = 0.75; (2, 6): 2 / (2 + 3 - 2) = 2/3; 3 and 7 overlap nothing
    assert (t.tolist(), p.tolist()) == ([1, 2], [5, 6])
    np.testing.assert_allclose(v, [0.75, 2 / 3])
    assert (n_true, n_pred) == (3, 3)


def test_scores_at_half_by_hand():
    m = match_instances(PRED, TRUE, threshold=0.5)
    # both pairs reach 0.5: tp 2, fp 3 - 2 = 1 (id 7), fn 3 - 2 = 1 (id 3)
    assert (m.tp, m.fp, m.fn) == (2, 1, 1)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 * 2 / (3 + 3))  # 4/6
    assert m.mean_iou == pytest.approx((0.75 + 2 / 3) / 2)  # 17/24 = 0.7083
    # PQ = (0.75 + 2/3) / (2 + 1/2 + 1/2) = (17/12) / 3 = 17/36 = 0.4722 = mean IoU x F1
    assert m.panoptic_quality == pytest.approx(17 / 36)
    assert m.panoptic_quality == pytest.approx(m.mean_iou * m.f1)
    assert m.accuracy == pytest.approx(2 / (2 + 1 + 1))


def test_scores_at_070_by_hand():
    m = match_instances(PRED, TRUE, threshold=0.7)
    # only (1, 5) (0.75) reaches 0.7: tp 1, fp 2, fn 2
    assert (m.tp, m.fp, m.fn) == (1, 2, 2)
    assert m.f1 == pytest.approx(2 / 6) and m.mean_iou == pytest.approx(0.75)
    assert m.accuracy == pytest.approx(1 / 5)


def test_mean_average_precision_by_hand():
    # thresholds 0.50 0.55 0.60 0.65: both pairs match, tp/(tp+fp+fn) = 2/4 = 0.5 (4 of them)
    # 0.70 0.75: only the 0.75 pair, 1/5 = 0.2 (2 of them); 0.80 .. 0.95: 0/6 (4 of them)
    # mean = (4 x 0.5 + 2 x 0.2 + 4 x 0) / 10 = 0.24
    assert mean_average_precision(PRED, TRUE) == pytest.approx(0.24)
    assert mean_average_precision(PRED, TRUE, thresholds=[0.5]) == pytest.approx(0.5)


def test_one_to_one_when_two_predictions_tie():
    true = np.array([[1, 1, 1, 1]])
    pred = np.array([[4, 4, 9, 9]])
    # each half: 2 / (4 + 2 - 2) = 0.5; only one of them may match object 1
    m = match_instances(pred, true, threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.mean_iou == pytest.approx(0.5)


def test_3d_arbitrary_ids_and_sums_over_images():
    true = np.zeros((2, 4, 4), int)
    true[:, :2, :2] = 7  # 8 voxels
    pred = np.zeros((2, 4, 4), int)
    pred[0, :2, :2] = 1000  # 4 voxels inside: IoU 4 / 8 = 0.5
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn, m.sum_iou) == (1, 0, 0, 0.5)
    total = sum([m, match_instances(PRED, TRUE)], start=InstanceMatch.empty(0.5))
    # tp 1 + 2, objects 1 + 3 true and 1 + 3 predicted: F1 = 2 x 3 / 8
    assert (total.tp, total.n_true, total.n_pred) == (3, 4, 4)
    assert total.f1 == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same IoU threshold"):
        m + match_instances(PRED, TRUE, threshold=0.7)


def test_empty_cases():
    empty = np.zeros((3, 3), int)
    one = empty.copy()
    one[1, 1] = 1
    both = match_instances(empty, empty)
    assert both.f1 == 1.0 and both.panoptic_quality == 1.0 and np.isnan(both.mean_iou)
    missed = match_instances(empty, one)
    assert (missed.precision, missed.recall, missed.f1, missed.panoptic_quality) == (0.0, 0.0, 0.0, 0.0)
    extra = match_instances(one, empty)
    assert (extra.fp, extra.precision, extra.f1) == (1, 0.0, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        match_instances(one, one, threshold=0)
    with pytest.raises(ValueError, match="same shape"):
        match_instances(one, one[:2])


def test_top_level_names():
    assert nus.match_instances is match_instances
    assert nus.mean_average_precision is mean_average_precision
