"""Streaming mIoU from a confusion matrix, pure numpy."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes confusion matrix (rows: truth, columns: prediction).

    Pixels whose true label is `ignore_label` are skipped. IoU of class c is
    TP / (TP + FP + FN); classes that never occur in truth nor prediction have no
    IoU (NaN) and do not count towards the mean, as in DeepLab.

    Example:
    >>> cm = ConfusionMatrix(2)
    >>> cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    >>> round(cm.miou(), 2)
    50.0
    """

    def __init__(self, num_classes: int, ignore_label: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, labels_true: np.ndarray, labels_pred: np.ndarray) -> None:
        """Adds a batch of label maps of the same shape (any shape)."""
        true = np.asarray(labels_true).reshape(-1).astype(np.int64)
        pred = np.asarray(labels_pred).reshape(-1).astype(np.int64)
        if true.shape != pred.shape:
            raise ValueError(f"labels_true has {true.size} pixels, labels_pred {pred.size}")
        keep = true != self.ignore_label
        true, pred = true[keep], pred[keep]
        if true.size and (true.max() >= self.num_classes or true.min() < 0):
            raise ValueError(f"true label {int(true.max())} outside [0, {self.num_classes})")
        if pred.size and (pred.max() >= self.num_classes or pred.min() < 0):
            raise ValueError(f"predicted label {int(pred.max())} outside [0, {self.num_classes})")
        self.matrix += np.bincount(true * self.num_classes + pred, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def per_class_iou(self) -> np.ndarray:
        """IoU of every class in percent; NaN for classes absent from truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, 100.0 * tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU in percent over the classes that occur (0.0 when nothing was counted)."""
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(100.0 * np.trace(self.matrix) / total) if total else 0.0
