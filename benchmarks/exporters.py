"""Turns a model into `.tflite` bytes for a benchmark row, with the project's exporter or the naive one.

`export(model, precision, naive=...)` calls `convert.export.export_tflite`: the
KSAC-aware exporter (`naive=False`) or the plain TFLiteConverter (what `from_keras_model` gives; `convert.export.plain_converter`)
baseline (`naive=True`), so benchmark files are made exactly as users make them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tf_keras as keras

from inference.description import EXPORTERS, PRECISIONS  # noqa: F401  (EXPORTERS: defined once, there)



class Exported(NamedTuple):
    """A converted model: the file's bytes and the exporter's report (see convert/export.py)."""

    tflite: bytes
    report: dict[str, Any]


def export(
    model: keras.Model,
    precision: str,
    *,
    naive: bool = False,
    calibration_steps: int = 100,
    check_parity: bool = True,
) -> Exported:
    """Converts `model` to TFLite at `precision` ("fp32", "fp16" or "int8").

    Args:
        model: a model built by `zoo.build_model` (BatchNorm statistics randomised for benchmarks)
            or trained by training/train.py.
        precision: "fp32", "fp16" or "int8" (full-integer post-training quantization).
        naive: the plain TFLiteConverter (what `from_keras_model` gives; `convert.export.plain_converter`) instead of the KSAC-aware exporter.
        calibration_steps: calibration images for int8 (the synthetic data, or the data a trained
            model was trained on).
        check_parity: let the exporter compare the file's outputs with the Keras model's.

    Returns:
        `Exported(tflite, report)`; `report["exporter"]` is "ksac-aware" or "naive".
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    from convert.export import export_tflite

    result = export_tflite(
        model,
        precision=precision,
        naive=naive,
        calibration=None,  # the data the model was trained on; "synthetic" for random-weight models
        calibration_steps=calibration_steps,
        output="logits",
        check_parity=check_parity,
    )
    return Exported(bytes(result.tflite), dict(result.report))
