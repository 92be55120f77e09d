"""MobileNetV3 models train with train.py: at their own output stride and head width, in float32 and with
mixed precision (`make test-onednn-other` runs this again with TF_ENABLE_ONEDNN_OPTS the other way round)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zoo  # noqa: F401  (TensorFlow without its start-up lines)
from training import train as train_cli
from zoo import describe
from zoo.saving import load_keras_model

pytestmark = [pytest.mark.trains, pytest.mark.xdist_group("mobilenet_v3_training")]

TINY = ["--data", "synthetic", "--steps", "2", "--batch-size", "2", "--crop-size", "97", "--log-every", "1"]


def test_mobilenet_v3_ksac_trains_with_mixed_precision_at_its_own_stride_and_width(tmp_path):
    """float16 (loss-scaled) through hard swish and squeeze-and-excitation; float32 and the other oneDNN setting:
    tests/test_training_every_cpu.py (MobileNetV3-Large KSAC's gradients with and without oneDNN)."""
    out = tmp_path / "run"
    args = ["--model", "mobilenetv3_small_ksac_separable", "--mixed-precision", "float16", "--out", str(out), *TINY]
    assert train_cli.main(args) == 0
    assert np.isfinite(json.loads((out / "summary.json").read_text())["final_loss"])
    description = describe(load_keras_model(str(out / "model.keras")))
    assert (description.output_stride, description.head_filters, description.rates) == (32, 128, (3, 6, 9))
