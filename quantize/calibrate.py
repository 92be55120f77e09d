"""Initial activation ranges of a tfmot QAT model, measured instead of tfmot's [-6, 6].

tfmot's activation quantizers start at [-6, 6] and follow the batch ranges with an
exponential moving average of decay 0.999: after 300 steps the initial guess
still weighs 0.74. A short fine-tune would then train against ranges far from the
ones the int8 converter calibrates (min/max over real images). `calibrate_ranges`
runs a few batches with the moving average switched off, keeps the min of every
range minimum and the max of every maximum, and stores them: fine-tuning starts
from the ranges the exported file will use.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable, Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

RANGE_VARIABLE = re.compile(r"_(min|max):\d+$")


@contextlib.contextmanager
def instant_ranges() -> Iterator[None]:
    """Within this context, newly traced moving-average quantizers take each batch's range as is."""
    original = quant_ops.MovingAvgQuantize

    def moving_avg_quantize(*args, **kwargs):
        kwargs["ema_decay"] = 0.0
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = moving_avg_quantize
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


@contextlib.contextmanager
def inference_layers(qat_model: keras.Model) -> Iterator[None]:
    """Within this context, BatchNorms use moving statistics and Dropout passes everything.

    Lets a forward pass run in training mode for the quantizers only: what they
    record is then the inference network's ranges, as the converter will see them.
    """
    from quantize.annotate import float_layers
    from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

    saved = []
    for layer in float_layers(qat_model):
        for sub in layer.batch_norms if isinstance(layer, (SharedAtrousConv2D, SharedSeparableAtrousConv2D)) else [layer]:
            if isinstance(sub, keras.layers.BatchNormalization):
                saved.append((sub, "trainable", sub.trainable))
                sub.trainable = False
            elif isinstance(sub, keras.layers.Dropout):
                saved.append((sub, "rate", sub.rate))
                sub.rate = 0.0
    try:
        yield
    finally:
        for layer, attribute, value in saved:
            setattr(layer, attribute, value)


def range_variables(qat_model: keras.Model) -> list[tf.Variable]:
    """The quantizer range variables (`..._min`, `..._max`) of a tfmot model."""
    return [v for v in qat_model.non_trainable_variables if RANGE_VARIABLE.search(v.name)]


def calibrate_ranges(qat_model: keras.Model, batches: Iterable[np.ndarray]) -> int:
    """Sets every quantizer range to the min/max observed over `batches`; returns the batches used.

    The forward passes run in training mode (so that the quantizers record) with
    BatchNorm and Dropout in inference mode (`inference_layers`).
    """
    variables = range_variables(qat_model)
    observed = {id(v): None for v in variables}
    count = 0
    with instant_ranges(), inference_layers(qat_model):
        forward = tf.function(lambda x: qat_model(x, training=True), autograph=False)
        for batch in batches:
            forward(tf.convert_to_tensor(batch, tf.float32))
            count += 1
            for v in variables:
                value, previous = v.numpy(), observed[id(v)]
                if previous is not None:
                    keep = np.minimum if RANGE_VARIABLE.search(v.name).group(1) == "min" else np.maximum
                    value = keep(previous, value)
                observed[id(v)] = value
    if count:
        for v in variables:
            v.assign(observed[id(v)])
    return count


def qat_activation_ranges(qat_model: keras.Model) -> dict[str, tuple[float, float]]:
    """The activation ranges of a tfmot model's quantizers, keyed as `convert.activation_ranges` reads them.

    `quantize_layer/quantize_layer_min` becomes "input", `quant_<layer>/output_min` and
    `quant_<layer>/post_activation_min` become "<layer>", and the KSAC pyramid's
    `quant_<layer>/<part>_post_activation_min` becomes "<layer>/<part>" (e.g.
    "head_ksac/rate6_relu", "head_ksac/partial_sum2"). Weight ranges are left out:
    the exporter quantizes weights itself (the shared kernel on the same grid).

    The output ranges of MobileNetV3's `HardSigmoid` and `HardSwish` are left out too: the file runs each
    as several ops (a conv or ADD with fused RELU6, range [0, 6], then MULs; `convert.graph.Int8HardSwish`),
    and the converter names all their tensors after the layer, so its key would set the output's QAT range
    on the RELU6 output as well (a gate's [0, 1] would clip every gate at 1/6). Those tensors keep their
    calibrated ranges.
    """
    from quantize.annotate import _inner
    from zoo.layers import HardSigmoid, HardSwish

    several_ops = {layer.name for layer in qat_model.layers if isinstance(_inner(layer), (HardSigmoid, HardSwish))}
    bounds: dict[str, dict[str, float]] = {}
    for variable in range_variables(qat_model):
        wrapper, _, name = variable.name.split(":")[0].rpartition("/")
        name, _, bound = name.rpartition("_")  # "..._min" -> ("...", "min")
        if "kernel" in name:
            continue
        if not wrapper.startswith("quant_"):
            key = "input"  # tfmot's QuantizeLayer on the model input
        else:
            layer = wrapper[len("quant_"):]
            part = name[: -len("_post_activation")] if name.endswith("_post_activation") else ""
            key = f"{layer}/{part}" if part else layer
            if f"quant_{layer}" in several_ops:
                continue
        bounds.setdefault(key, {})[bound] = float(np.asarray(variable.numpy()).reshape(-1)[0])
    return {key: (b["min"], b["max"]) for key, b in bounds.items() if "min" in b and "max" in b}
