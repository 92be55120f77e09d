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
    from zoo.layers import SharedAtrousConv2D

    saved = []
    for layer in float_layers(qat_model):
        for sub in layer.batch_norms if isinstance(layer, SharedAtrousConv2D) else [layer]:
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
