"""mIoU of a `.tflite` file on the data its model was trained on, through evaluation/evaluate.py."""

from __future__ import annotations

from pathlib import Path


def measure_miou(tflite_path: str | Path, *, limit: int | None = None) -> tuple[float | None, str | None]:
    """(mIoU, None) from `evaluation.evaluate.evaluate`, or (None, reason) where it cannot be measured.

    The data is the one the model was trained on: `evaluate` reads it from the
    description stored in the file's metadata (data_spec=None).
    """
    try:
        from evaluation.evaluate import evaluate
    except ImportError as error:
        return None, f"evaluation/evaluate.py is not available ({error})"
    try:
        result = evaluate(str(tflite_path), data_spec=None, split="val", limit=limit)
    except Exception as error:  # report, do not abort the benchmark run
        return None, f"evaluate() failed: {type(error).__name__}: {error}"[:400]
    miou = result.get("miou") if isinstance(result, dict) else None
    if miou is None:
        return None, "evaluate() returned no 'miou'"
    return float(miou), None
