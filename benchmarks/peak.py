"""A measured peak of this CPU for dense convolution, to set achieved MACs/s against.

Method: a model made only of CONV_2D layers (3x3, 256 -> 256 channels, on a 32x32
feature map, ReLU fused; 2 layers, 1.21 G multiply-accumulates per run) is converted
to `.tflite` (fp32, and int8 with per-channel weights) and run in LiteRT with XNNPACK
at each thread count, exactly like the benchmark rows; `benchmarks/run.py` times it
in the same round-robin as the rows, so that it sees the same load from other
processes as the models set against it. Its fastest run gives the peak:
dense 3x3 convolutions with many channels are the most efficient work XNNPACK does,
so this is what the machine reaches in practice through the same runtime (not the
datasheet's FMA peak). A segmentation model's achieved MACs/s (its counted MACs over
its median latency) divided by this peak says how far from the hardware it runs.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from benchmarks.latency import measure_interleaved

CHANNELS = 256
SIDE = 32
LAYERS = 2
KERNEL = 3


def conv_only_macs() -> int:
    """Multiply-accumulates of one run of the conv-only peak model."""
    return LAYERS * SIDE * SIDE * KERNEL * KERNEL * CHANNELS * CHANNELS


def conv_only_tflite(precision: str = "fp32") -> bytes:
    """The conv-only peak model as `.tflite` bytes; `precision` is "fp32" or "int8"."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernels = [
        tf.constant(rng.normal(0, 0.05, (KERNEL, KERNEL, CHANNELS, CHANNELS)).astype(np.float32)) for _ in range(LAYERS)
    ]
    biases = [tf.constant(rng.normal(0, 0.05, (CHANNELS,)).astype(np.float32)) for _ in range(LAYERS)]

    @tf.function(input_signature=[tf.TensorSpec([1, SIDE, SIDE, CHANNELS], tf.float32)])
    def convs(x):
        for kernel, bias in zip(kernels, biases):
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)
        return x

    converter = tf.lite.TFLiteConverter.from_concrete_functions([convs.get_concrete_function()], convs)
    if precision == "int8":

        def representative():
            for _ in range(4):
                yield [rng.uniform(-1, 1, (1, SIDE, SIDE, CHANNELS)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    elif precision != "fp32":
        raise ValueError(f"peak precision must be 'fp32' or 'int8', got {precision!r}")
    return converter.convert()


def peak_macs_per_s(min_ms: float) -> float:
    """The peak MACs/s that a fastest run of `min_ms` milliseconds of the conv-only model means."""
    return conv_only_macs() / (min_ms / 1000.0)


def measure_peak(threads: Iterable[int], precisions: Iterable[str] = ("fp32", "int8"), *, runs: int = 8) -> dict:
    """Peak dense-convolution MACs/s of this CPU in LiteRT, per precision and thread count.

    Returns:
        {"method": str, "macs_per_run": int, "peak_macs_per_s": {precision: {threads: MACs/s}}}.
    """
    macs = conv_only_macs()
    files = {precision: conv_only_tflite(precision) for precision in precisions}
    peaks: dict[str, dict[int, float]] = {precision: {} for precision in files}
    for count in threads:
        stats = measure_interleaved(files, count, warmup=2, runs=runs)
        for precision, stat in stats.items():
            peaks[precision][int(count)] = peak_macs_per_s(stat.min_ms)
    return {
        "method": (
            f"fastest of {runs} runs of a CONV_2D-only LiteRT model (XNNPACK; {LAYERS} x 3x3 conv, "
            f"{CHANNELS}->{CHANNELS} channels, {SIDE}x{SIDE} map, {macs / 1e9:.2f} GMAC/run)"
        ),
        "macs_per_run": macs,
        "peak_macs_per_s": peaks,
    }
