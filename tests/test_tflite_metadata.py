"""The standard TFLite Metadata writer and reader (convert/tflite_metadata.py), and the int8 input-scale untie.

The real client (MediaPipe's ImageSegmenter on exported files) is in
tests/test_convert.py::test_metadata_labels_output_other_size_and_mediapipe.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.tflite_file import add_metadata, with_entry
from inference.description import read_description
from convert.tflite_metadata import (
    LABELS_FILE,
    TFLITE_METADATA_NAME,
    append_associated_files,
    associated_files,
    labels_file,
    metadata_refusal,
    model_metadata,
    read_standard_metadata,
)

LABELS = ("background", "road", "tree")


@pytest.fixture(scope="module")
def description(make_description):
    """A 3-class mobilenetv2_ksac logits description at 9x9 (the one-convolution model's input)."""
    return make_description(num_classes=3, label_names=LABELS)


def with_standard_metadata(tflite: bytes, description) -> bytes:
    """What the exporter does: our description, the standard metadata, then labels.txt zipped last."""
    from convert.tflite_file import load_model
    from convert.tflite_file import with_metadata
    from tensorflow.lite.tools import flatbuffer_utils

    model = with_metadata(load_model(tflite), description)
    with_entry(model, TFLITE_METADATA_NAME, model_metadata(description))
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return append_associated_files(data, {LABELS_FILE: labels_file(description)})


def test_written_metadata_reads_back(one_conv_tflite, description):
    data = with_standard_metadata(one_conv_tflite, description)
    standard = read_standard_metadata(data)
    assert standard["name"] == "mobilenetv2_ksac" and standard["min_parser_version"] == "1.5.0"
    (image,) = standard["inputs"]
    assert image["content"] == "image RGB"
    assert image["normalization"] == {"mean": [127.5], "std": [127.5]}
    assert image["stats"] == {"min": [-1.0], "max": [1.0]}
    (logits,) = standard["outputs"]
    assert logits["content"] == "image GRAYSCALE"
    assert logits["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS"}]
    assert standard["custom_metadata"] == {"SEGMENTER_METADATA": {"activation": "SOFTMAX"}}
    assert standard["zipped_files"] == ["labels.txt"] and standard["labels"] == ["background", "road", "tree"]
    assert read_description(data) == description  # ours is still there
    assert read_standard_metadata(one_conv_tflite) is None


def test_the_file_still_runs_and_rewriting_keeps_the_labels(one_conv_tflite, description):
    from inference.runtime import TFLiteModel

    data = with_standard_metadata(one_conv_tflite, description)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 9, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(TFLiteModel(data).run(x), TFLiteModel(one_conv_tflite).run(x))
    # Re-serialising the flatbuffer would drop the zip; add_metadata carries it across.
    rewritten = add_metadata(data, description.replace(precision="int8"))
    assert associated_files(rewritten) == {"labels.txt": b"background\nroad\ntree\n"}
    assert read_standard_metadata(rewritten)["labels"] == ["background", "road", "tree"]
    assert read_description(rewritten).precision == "int8"


def test_replacing_the_description_keeps_one_copy(one_conv_tflite, description):
    """Each rewrite stores the description once: the file does not grow, the old one is gone."""
    exported = with_standard_metadata(one_conv_tflite, description)
    first = add_metadata(exported, description.replace(name="first_model_name"))
    again = add_metadata(first, description.replace(name="first_model_name"))
    assert len(again) == len(first) and first.count(b"first_model_name") == 1
    renamed = add_metadata(again, description.replace(name="other_model_name"))  # a name of the same length
    assert len(renamed) == len(first) and b"first_model_name" not in renamed
    assert read_description(renamed).name == "other_model_name"
    assert associated_files(renamed) == {"labels.txt": b"background\nroad\ntree\n"}  # the zip, once
    assert renamed.count(b"background\nroad\ntree\n") == 1


def test_what_mediapipe_would_misread_gets_no_metadata(description):
    assert metadata_refusal(description, "float32") is None
    assert "describes float32" in metadata_refusal(description, "uint8")
    assert "--output labels" in metadata_refusal(description.replace(output="labels"), "float32")
    assert "uint8 or float32 input only" in metadata_refusal(description, "int8")
    per_channel = description.replace(normalization={"mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4]})
    assert "one mean and one std" in metadata_refusal(per_channel, "float32")


def test_label_names_file(description):
    assert labels_file(description.replace(label_names=["a", "", ""])) == b"a\nclass_1\nclass_2\n"  # empty names
    with pytest.raises(ValueError, match="line breaks"):
        labels_file(description.replace(label_names=["a", "b\nc", "d"]))


def test_not_a_metadata_flatbuffer_is_an_error(one_conv_tflite):
    from convert.tflite_file import load_model
    from tensorflow.lite.tools import flatbuffer_utils

    model = with_entry(load_model(one_conv_tflite), TFLITE_METADATA_NAME, b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="M001"):
        read_standard_metadata(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def _int8_tie_model(padded: bool = False):
    """A 1x1 conv (with a bias) on a 9x9 input, full-integer int8, calibrated on images reaching pixel 0 and
    255: the input scale is 2/255, every pixel on a rounding tie. `padded`: a PAD reads the input first."""
    import tensorflow as tf
    import tf_keras as keras

    from convert.export import plain_converter
    from convert.tflite_file import load_model

    inputs = keras.Input((9, 9, 3), batch_size=1)
    conv = keras.layers.Conv2D(2, 1)
    model = keras.Model(inputs, conv(keras.layers.ZeroPadding2D(1)(inputs) if padded else inputs))
    conv.bias.assign([3.0, -5.0])  # biases far from 0, so that a bias left at its old scale is visible
    converter = plain_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.full((1, 9, 9, 3), v, np.float32)] for v in (-1.0, 1.0))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return load_model(converter.convert()), conv.bias.numpy()


def test_int8_input_scale_is_moved_off_rounding_ties_with_its_biases(description):
    from convert.tflite_file import untie_input_scale
    from convert.tflite_file import bias_scale_errors

    flatbuffer, bias = _int8_tie_model()
    graph = flatbuffer.subgraphs[0]
    quantize, conv = graph.operators[:2]  # QUANTIZE, CONV_2D (then DEQUANTIZE)
    quantized_input = graph.tensors[quantize.outputs[0]]
    bias_tensor = graph.tensors[conv.inputs[2]]
    assert quantized_input.quantization.scale[0] == pytest.approx(2 / 255)
    assert bias_scale_errors(flatbuffer) == (1, [])  # as the converter wrote it
    normalization = description.normalization
    assert untie_input_scale(flatbuffer, normalization) == 1 + 2**-9
    steps = (np.arange(256) - 127.5) / 127.5 / quantized_input.quantization.scale[0]
    assert np.min(np.abs(steps - np.floor(steps) - 0.5)) > 5e-4  # no pixel near a rounding tie
    # TFLite's rule holds again (bias scale = input scale x weight scale), and each bias's integers were
    # rescaled with it: the bias the kernel adds is the model's to one step (left as they were, 3 and
    # -5 would be off by 2^-9 of themselves, hundreds of steps).
    assert bias_scale_errors(flatbuffer) == (1, [])
    step = np.asarray(bias_tensor.quantization.scale, np.float64)
    integers = np.frombuffer(bytes(flatbuffer.buffers[bias_tensor.buffer].data), "<i4")
    np.testing.assert_array_less(np.abs(integers * step - bias), step)
    assert untie_input_scale(flatbuffer, normalization) is None  # once is enough


def test_the_input_scale_stays_where_an_op_must_keep_it(description):
    """A PAD copies int8 values, so its output's scale must stay the input's: no untie there."""
    from convert.tflite_file import untie_input_scale
    from convert.tflite_file import bias_scale_errors, op_name

    flatbuffer, _ = _int8_tie_model(padded=True)
    graph = flatbuffer.subgraphs[0]
    assert [op_name(flatbuffer, op) for op in graph.operators][:2] == ["QUANTIZE", "PAD"]
    assert untie_input_scale(flatbuffer, description.normalization) is None
    assert graph.tensors[graph.operators[0].outputs[0]].quantization.scale[0] == pytest.approx(2 / 255)
    assert bias_scale_errors(flatbuffer) == (1, [])


def test_the_bias_scale_check_names_the_op_that_breaks_the_rule():
    from convert.tflite_file import bias_scale_errors

    flatbuffer, _ = _int8_tie_model()
    graph = flatbuffer.subgraphs[0]
    bias = graph.tensors[graph.operators[1].inputs[2]]
    bias.quantization.scale = [s * (1 + 2**-9) for s in bias.quantization.scale]
    checked, errors = bias_scale_errors(flatbuffer)
    assert checked == 1 and len(errors) == 1 and errors[0].startswith("CONV_2D #1") and "1.00195" in errors[0]
