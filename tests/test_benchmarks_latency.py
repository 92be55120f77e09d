"""The latency and memory harness on a tiny model, and the CPU peak's arithmetic."""

import numpy as np
import pytest

# `--dist loadgroup` runs this module on one worker: the converted tiny model is built once
# (a minute of TFLite conversion on a busy 2-core CPU: the tests that use it are slow).
pytestmark = pytest.mark.xdist_group("tiny_tflite")


@pytest.fixture(scope="module")
def tiny_tflite(tiny_ksac) -> bytes:
    """A tiny KSAC model converted with plain TFLiteConverter (the harness is under test, not the exporter)."""
    from convert.export import plain_converter

    return plain_converter(tiny_ksac).convert()


def test_randomize_batchnorm_is_seeded_and_positive(make_tiny_model):
    import tf_keras as keras

    from benchmarks.realistic_weights import randomize_batchnorm
    from zoo import SharedAtrousConv2D

    model = make_tiny_model("mobilenetv2_ksac")
    pyramid = next(layer for layer in model.layers if isinstance(layer, SharedAtrousConv2D))
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    layers += pyramid.batch_norms  # KSAC's per-rate BatchNorms live inside the shared layer

    def gammas(seed):
        assert randomize_batchnorm(model, seed) == len(layers)
        return np.concatenate([layer.gamma.numpy() for layer in layers])

    first, again, other = gammas(3), gammas(3), gammas(4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.min() >= 0.5 and first.max() <= 1.5
    variances = np.concatenate([layer.moving_variance.numpy() for layer in layers])
    assert variances.min() >= 0.5 and variances.max() <= 2.0


@pytest.mark.slow
def test_measure_latency_on_tiny_model(tiny_tflite):
    from benchmarks.latency import measure_latency

    stats = measure_latency(tiny_tflite, threads=1, warmup=1, runs=5)
    assert stats.runs == 5
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms
    assert stats.mean_ms > 0


@pytest.mark.slow
def test_measure_interleaved_times_every_model(tiny_tflite):
    from benchmarks.latency import measure_interleaved

    stats = measure_interleaved({"a": tiny_tflite, "b": tiny_tflite}, threads=2, warmup=0, runs=3)
    assert set(stats) == {"a", "b"}
    assert all(s.runs == 3 for s in stats.values())


@pytest.mark.slow
def test_time_split_cuts_a_file_after_the_backbone_and_before_the_upsampling(tiny_tflite, one_conv_tflite):
    from benchmarks.time_split import cut_at
    from inference.runtime import TFLiteModel

    outputs = {}
    for part in ("backbone", "head"):
        model = TFLiteModel(cut_at(tiny_tflite, part), device="cpu", threads=1)
        model.set_random_inputs(seed=0)
        model.invoke()
        outputs[part] = model.get_output_raw(0)
    assert outputs["backbone"].shape[:3] == (1, 5, 5) and outputs["backbone"].shape[3] > 3  # the 5x5 features of a 65 input
    assert outputs["head"].shape == (1, 5, 5, 21)  # the tiny model's logits, before the upsampling
    with pytest.raises(ValueError, match="no MEAN or AVERAGE_POOL_2D op"):
        cut_at(one_conv_tflite, "backbone")


@pytest.mark.slow
def test_time_split_cuts_mobilenet_v3_after_its_last_conv_not_at_a_squeeze_excite_mean(make_tiny_model):
    from benchmarks.time_split import cut_at
    from convert.export import plain_converter
    from inference.runtime import TFLiteModel

    model = make_tiny_model("mobilenetv3_small_ksac_separable", input_size=97)  # OS 32: 4x4 features, stride 8: 13x13
    tflite = plain_converter(model).convert()
    shapes = {}
    for part in ("backbone", "head"):
        cut = TFLiteModel(cut_at(tflite, part), device="cpu", threads=1)
        cut.set_random_inputs(seed=0)
        cut.invoke()
        shapes[part] = cut.get_output_raw(0).shape
    assert shapes == {"backbone": (1, 4, 4, model.get_layer("Conv_1").filters), "head": (1, 13, 13, 21)}


def test_latency_rejects_bad_counts(one_conv_tflite):
    from benchmarks.latency import measure_latency

    with pytest.raises(ValueError, match="runs"):
        measure_latency(one_conv_tflite, threads=1, runs=0)
    with pytest.raises(ValueError, match="threads"):
        measure_latency(one_conv_tflite, threads=0)


@pytest.mark.slow
def test_memory_in_child_process(tiny_tflite, tmp_path):
    from benchmarks.memory import measure_memory

    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_tflite)
    memory = measure_memory(path, threads=1, runs=1)
    assert memory["peak_rss_mb"] > memory["model_mem_mb"] > 0
    assert memory["peak_rss_mb"] < 1000  # the child's own peak, not the TensorFlow parent's


def test_memory_of_missing_file_is_a_clear_error(tmp_path):
    from benchmarks.memory import measure_memory

    with pytest.raises(RuntimeError, match="missing.tflite"):
        measure_memory(tmp_path / "missing.tflite", threads=1)


def test_conv_only_peak_macs():
    from benchmarks.peak import CHANNELS, KERNEL, LAYERS, SIDE, conv_only_macs

    assert conv_only_macs() == LAYERS * SIDE * SIDE * KERNEL * KERNEL * CHANNELS * CHANNELS


def test_miou_that_cannot_be_measured_gives_a_reason(tmp_path):
    from benchmarks.accuracy import measure_miou

    miou, reason = measure_miou(tmp_path / "missing.tflite")
    assert miou is None and reason
