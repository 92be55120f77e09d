"""Checks of an exported file against its source: arg-max parity with Keras on real preprocessed
images, and the same file on LiteRT's GPU accelerator against LiteRT's CPU.

The images are the evaluation transform of the model's data (`eval_images`), as evaluation sees them;
int8 calibration draws from the same function.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator

import numpy as np
import tf_keras as keras

# fp32 and fp16 files must agree with Keras on this fraction of arg-max pixels.
PARITY_BAR = 0.999


def eval_images(data: str, split: str, size: tuple[int, int], normalization: dict, count: int) -> Iterator[np.ndarray]:
    """Up to `count` images of `data`/`split`, preprocessed exactly as evaluation does."""
    from data.datasets import open_dataset  # training imports convert lazily too
    from data.transforms import eval_inputs

    dataset = open_dataset(data, split)
    for i, (image, _) in enumerate(dataset):
        if i >= count:
            return
        yield eval_inputs(image, None, size, normalization)[0]


def run_tflite(tflite: bytes, images: list[np.ndarray]) -> list[np.ndarray]:
    """Runs a batch-1 `.tflite` on each image with LiteRT on the CPU.

    Returns:
        One output per image, without the batch dimension: float32 logits (dequantised
        when the file has int8 outputs), or the uint8 label map of a `labels` export.
    """
    from inference.runtime import TFLiteModel

    model = TFLiteModel(tflite)
    return [model.run(image[None])[0] for image in images]


def parity(model: keras.Model, tflite: bytes, images: list[np.ndarray], output: str) -> dict[str, Any]:
    """Arg-max agreement (fraction of pixels) and max |logit difference| against Keras."""
    reference = [model(image[None], training=False).numpy()[0] for image in images]
    produced = run_tflite(tflite, images)
    agree = total = 0
    max_diff = 0.0
    for ref, out in zip(reference, produced):
        labels = out if output == "labels" else out.argmax(-1)
        agree += int(np.sum(ref.argmax(-1) == labels))
        total += labels.size
        if output == "logits":
            max_diff = max(max_diff, float(np.max(np.abs(ref - out))))
    return {
        "argmax_agreement": agree / total if total else None,
        "max_abs_diff": max_diff if output == "logits" else None,
        "parity_images": len(images),
    }


def gpu_check(tflite: bytes, images: list[np.ndarray]) -> dict[str, Any]:
    """Whether `tflite` runs fully on LiteRT's GPU accelerator and how far it is from LiteRT CPU on `images`.

    Returns the report fields `gpu_fully_accelerated` (None when no adapter loads, with
    `gpu_reason`), `gpu_argmax_agreement` (percent of pixels), `gpu_max_abs_diff` (logits),
    `gpu_adapter`, `gpu_software` (a CPU-emulated adapter such as llvmpipe) and `gpu_precision`
    (the accelerator's arithmetic, fp16 by default). The GPU runs in a child process
    (`inference.gpu`): it cannot share a process with TensorFlow.
    """
    from inference.gpu import gpu_report

    with tempfile.TemporaryDirectory(prefix="ksac_export_") as folder:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as f:
            f.write(tflite)
        result = gpu_report(path, np.stack(images) if images else None)
    ran = result.get("available") and result.get("fully_accelerated")
    return {
        "gpu_fully_accelerated": result.get("fully_accelerated"),
        "gpu_reason": None if ran else result.get("reason"),
        "gpu_argmax_agreement": result.get("argmax_agreement"),
        "gpu_max_abs_diff": result.get("max_abs_diff"),
        "gpu_adapter": result.get("adapter"),
        "gpu_software": result.get("software"),
        "gpu_precision": result.get("precision"),
    }
