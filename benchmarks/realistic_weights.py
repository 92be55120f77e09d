"""Models as benchmarks build them: random weights with realistic BatchNorm statistics.

A freshly built model has BatchNorm moving means of 0, variances of 1, gammas of 1
and betas of 0. Folded into the convolutions that is an identity, which makes int8
calibration and per-channel scales unrealistically uniform. `randomize_batchnorm`
spreads them (with a fixed seed) so conversion and quantisation see numbers shaped
like a trained model's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tf_keras as keras

from zoo import build_model


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> int:
    """Gives every BatchNormalization layer of `model` random statistics, in place.

    gamma ~ U(0.5, 1.5) (positive, so KSAC's shared int8 kernel survives folding),
    beta ~ U(-0.2, 0.2), moving_mean ~ U(-0.2, 0.2), moving_variance ~ U(0.5, 2).

    Args:
        model: a tf_keras model (nested models and layers are visited too).
        seed: seed of the generator; the same seed gives the same statistics.

    Returns:
        The number of BatchNormalization layers changed.
    """
    rng = np.random.default_rng(seed)
    changed = 0
    for layer in _all_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        new = []
        for weight in layer.weights:
            name = weight.name.split("/")[-1].split(":")[0]
            shape = tuple(weight.shape)
            if name.startswith("gamma"):
                value = rng.uniform(0.5, 1.5, shape)
            elif name.startswith("beta"):
                value = rng.uniform(-0.2, 0.2, shape)
            elif name.startswith("moving_mean"):
                value = rng.uniform(-0.2, 0.2, shape)
            elif name.startswith("moving_variance"):
                value = rng.uniform(0.5, 2.0, shape)
            else:
                value = weight.numpy()
            new.append(np.asarray(value, dtype=weight.dtype.as_numpy_dtype))
        layer.set_weights(new)
        changed += 1
    return changed


def batchnorm_from_batch(model: keras.Model, batch: np.ndarray) -> int:
    """Sets every BatchNormalization's moving statistics to those of `batch` (a float32 NHWC input), in place.

    An untrained network with fresh statistics (mean 0, variance 1) passes almost nothing of the
    image through (logits nearly constant over it: one label everywhere). With the statistics of a
    real batch, the logits vary over the image, so a label map has several classes, as tests that
    compare label maps need. Returns the number of layers set.
    """
    norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics := this batch's statistics
    model(np.asarray(batch, np.float32), training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum
    return len(norms)


def _all_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer inside `model`, nested ones included (each once)."""
    seen: dict[int, keras.layers.Layer] = {}
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen[id(layer)] = layer
        stack.extend(getattr(layer, "layers", []) or [])
        stack.extend(getattr(layer, "_self_tracked_trackables", []) or [])
    return [layer for layer in seen.values() if isinstance(layer, keras.layers.Layer)]


def benchmark_model(
    name: str,
    input_size: int,
    output_stride: int | None = None,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> keras.Model:
    """Builds `name` for benchmarking: random weights, randomised BatchNorm, fixed seed.

    Args:
        name: a model name of `zoo.list_models()`.
        input_size: side of the square input.
        output_stride: 8, 16 or 32; None: the model's own.
        seed: seed of the weights and of the BatchNorm statistics.
        overrides: extra keyword arguments for `zoo.build_model` (e.g. `width`, used by tests).
    """
    keras.utils.set_random_seed(seed)
    model = build_model(name, input_size=input_size, output_stride=output_stride, **(overrides or {}))
    randomize_batchnorm(model, seed)
    return model
