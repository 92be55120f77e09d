"""Streaming confusion-matrix mIoU against a hand computation."""

import numpy as np
import pytest

from evaluation.metrics import ConfusionMatrix


def test_miou_matches_hand_computed_confusion_matrix():
    true = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(true[:1], pred[:1])  # streaming: two updates
    cm.update(true[1:], pred[1:])
    expected = np.array([[1, 1, 0], [1, 2, 0], [1, 0, 1]])  # rows truth, columns prediction; 255 skipped
    assert np.array_equal(cm.matrix, expected)
    # IoU = TP / (TP + FP + FN): class 0: 1/(1+2+1)=0.25, class 1: 2/(2+1+1)=0.5, class 2: 1/(1+0+1)=0.5
    assert np.allclose(cm.per_class_iou(), [25.0, 50.0, 50.0])
    assert cm.miou() == pytest.approx(125 / 3)
    assert cm.pixel_accuracy() == pytest.approx(100 * 4 / 7)


def test_absent_classes_do_not_count():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    iou = cm.per_class_iou()
    assert np.isnan(iou[2]) and np.isnan(iou[3]) and cm.miou() == 100.0


def test_out_of_range_labels_raise():
    with pytest.raises(ValueError, match="7"):
        ConfusionMatrix(3).update(np.array([7]), np.array([0]))
