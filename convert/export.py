"""The KSAC-aware TFLite exporter: fp32, fp16 and int8 post-training quantization.

`export_tflite(model, precision)` turns a zoo model into a `.tflite` flatbuffer:

1. `prepare_for_export` clones the model at batch 1 with static shapes (so the
   converter emits native dilated CONV_2D instead of SPACE_TO_BATCH_ND /
   CONV_2D / BATCH_TO_SPACE_ND, and folds BatchNorm into ordinary convs), and
   swaps the KSAC pyramid for its unrolled export form (`convert/ksac_export.py`)
   so that its shared kernel is not cloned per rate.
2. The stock `tf.lite.TFLiteConverter` converts it (int8: full-integer with
   per-channel weights, calibrated on real preprocessed images, float32 I/O
   unless `int8_io`).
3. For int8, `share_pyramid_buffers` makes every pyramid conv read one buffer;
   the model description goes into the file's metadata.
4. Parity against the Keras model on real preprocessed images, and a report.

`naive=True` converts the original model with the plain TFLiteConverter (what
`from_keras_model` gives; `plain_converter`) (dynamic batch), the comparison baseline of
reports and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from convert import inspect as tflite_inspect
from convert.activation_ranges import apply_ranges, ranges_replaced_after_calibration
from convert.ksac_export import FLOAT_FORM, INT8_FORM, UnrolledSharedAtrousConv2D
from convert.metadata import with_entry, with_metadata
from convert.tflite_metadata import (
    LABELS_FILE,
    TFLITE_METADATA_NAME,
    append_associated_files,
    labels_file,
    metadata_refusal,
    model_metadata,
)
from inference.native_log import native_stderr
from zoo.layers import SharedAtrousConv2D
from zoo.registry import describe

# TensorFlow's quantizer prints its settings on every int8 conversion, whatever the log level.
QUANTIZER_SETTINGS_LINE = re.compile(r"fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+")

PRECISIONS = ("fp32", "fp16", "int8")
OUTPUTS = ("logits", "labels")
# fp32 and fp16 files must agree with Keras on this fraction of arg-max pixels.
PARITY_BAR = 0.999


class ExportError(RuntimeError):
    """An export that cannot be done (bad option, unconvertible model)."""


@dataclass
class ExportResult:
    tflite: bytes
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def parity_ok(self) -> bool:
        """fp32/fp16 meet the arg-max parity bar; int8 only reports its agreement."""
        agreement = self.report.get("argmax_agreement")
        return self.report["precision"] == "int8" or agreement is None or agreement >= PARITY_BAR


@keras.utils.register_keras_serializable(package="ksac_zoo_export")
class LabelMap(keras.layers.Layer):
    """Arg-max over classes as a uint8 label map (`--output labels`), for apps."""

    def call(self, logits: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.uint8)


def _input_shape(model: keras.Model, input_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if input_size is None:
        return tuple(describe(model)["input_size"])
    if isinstance(input_size, int):
        return (input_size, input_size)
    return tuple(input_size)


def prepare_for_export(
    model: keras.Model,
    precision: str,
    input_size: int | tuple[int, int] | None = None,
    output: str = "logits",
) -> keras.Model:
    """A batch-1, static-shape clone of `model` with the KSAC pyramid in its export form."""
    height, width = _input_shape(model, input_size)
    form = INT8_FORM if precision == "int8" else FLOAT_FORM

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, SharedAtrousConv2D):
            return UnrolledSharedAtrousConv2D(layer, form)
        return layer.__class__.from_config(layer.get_config())

    inputs = keras.Input((height, width, 3), batch_size=1, name="image")
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    for layer in clone.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    if output == "labels":
        clone = keras.Model(clone.inputs, LabelMap(name="labels")(clone.outputs[0]), name=clone.name)
    return clone


def negative_scale_channels(model: keras.Model) -> int:
    """Channels of KSAC pyramids whose folded BatchNorm scale is negative (see ksac_export)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, SharedAtrousConv2D):
            for bn in layer.batch_norms:
                total += int(np.sum(bn.gamma.numpy() < 0))
    return total


def share_pyramid_buffers(model: schema_fb.ModelT, rates: list[int]) -> int:
    """Points every KSAC pyramid conv's int8 filter at one buffer; returns how many were merged.

    The int8 form makes the branches' filters identical bytes by construction
    (the converter usually merges them itself); this makes it certain and
    checks the construction: different bytes are an error, not a silent copy.
    """
    graph = model.subgraphs[0]
    ops = tflite_inspect.pyramid_convs(model, rates)
    filters = [graph.tensors[op.inputs[1]] for op in ops]
    if len(filters) < 2:
        return 0
    first = filters[0].buffer
    reference = bytes(model.buffers[first].data)
    merged = 0
    for tensor in filters[1:]:
        if tensor.buffer == first:
            continue
        if bytes(model.buffers[tensor.buffer].data) != reference:
            raise ExportError(
                "KSAC pyramid branches quantized to different int8 kernels; the shared kernel "
                "cannot be stored once (this is a bug in convert/ksac_export.py)"
            )
        model.buffers[tensor.buffer].data = None
        tensor.buffer = first
        merged += 1
    return merged


def untie_input_scale(model: schema_fb.ModelT, normalization: Mapping[str, Any]) -> float | None:
    """Moves the int8 input scale off the value that puts every pixel on a rounding tie; returns the factor.

    Calibrated on images that reach 0 and 255, the input scale is 2/255: with mean = std = 127.5 a
    pixel p quantizes to (p - 127.5) + zero_point, exactly halfway between two integers for EVERY p.
    Each runtime's float arithmetic then rounds its own way (MediaPipe's normalisation against
    ours: a one-step change of each input value, 29% of labels changed on an untrained model). A
    scale 1/512 larger leaves every pixel at least 0.0009 steps from a tie, so runtimes agree, at an
    input change far below one quantization step. The int32 biases of the ops reading the input
    move with it (`_rescale_biases`), so the file keeps TFLite's rule bias scale = input scale x
    weight scale. None: no int8 input, no ties to remove, or an input read by an op whose output
    must keep the input's scale (then it is left as calibrated).
    """
    graph = model.subgraphs[0]
    index = graph.inputs[0]
    if graph.tensors[index].type not in (schema_fb.TensorType.INT8, schema_fb.TensorType.UINT8):
        quantize = [op for op in graph.operators
                    if index in list(op.inputs) and tflite_inspect.op_name(model, op) == "QUANTIZE"]  # fmt: skip
        if not quantize:
            return None
        index = quantize[0].outputs[0]
    tensor = graph.tensors[index]
    if tensor.quantization is None or tensor.quantization.scale is None or len(tensor.quantization.scale) != 1:
        return None
    readers = [op for op in graph.operators if index in list(op.inputs)]
    # Ops that requantize from whatever scale their input has; anything else (PAD, CONCATENATION, ...)
    # may require its output to keep the input's scale.
    if any(tflite_inspect.op_name(model, op) not in (*tflite_inspect.BIAS_OPS, "QUANTIZE") for op in readers):
        return None
    pixels = np.arange(256, dtype=np.float64)[:, None]
    mean = np.broadcast_to(np.asarray(normalization["mean"], np.float64), (3,))
    std = np.broadcast_to(np.asarray(normalization["std"], np.float64), (3,))

    def distance_to_tie(scale: float) -> float:
        steps = (pixels - mean) / std / scale
        return float(np.min(np.abs(steps - np.floor(steps) - 0.5)))

    scale = float(tensor.quantization.scale[0])
    if distance_to_tie(scale) > 1e-4:
        return None
    factor = 1 + 2**-9
    if distance_to_tie(scale * factor) <= 1e-4:
        return None  # another normalisation; leave it as calibrated
    tensor.quantization.scale = [scale * factor]
    for op in readers:
        if tflite_inspect.op_name(model, op) in tflite_inspect.BIAS_OPS:
            _rescale_biases(model, op, factor)
    return factor


def _rescale_biases(model: schema_fb.ModelT, op: schema_fb.OperatorT, factor: float) -> None:
    """Multiplies the scale of `op`'s int32 bias by `factor` and divides its integers by it, in place.

    The kernel adds the bias integers to an accumulator whose unit grew by `factor` with the input
    scale: unchanged integers would be a bias `factor` times too large. Divided and rounded, each
    bias is within half a (new) step of its calibrated value. A buffer another tensor also reads
    is copied first.
    """
    graph = model.subgraphs[0]
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return
    bias = graph.tensors[op.inputs[2]]
    if bias.type != schema_fb.TensorType.INT32 or bias.quantization is None or bias.quantization.scale is None:
        return
    info = np.iinfo(np.int32)
    values = np.frombuffer(bytes(model.buffers[bias.buffer].data), "<i4")
    rescaled = np.clip(np.round(values / factor), info.min, info.max).astype("<i4")
    shared = sum(t.buffer == bias.buffer for g in model.subgraphs for t in g.tensors) > 1
    if shared:
        model.buffers.append(schema_fb.BufferT())
        bias.buffer = len(model.buffers) - 1
    model.buffers[bias.buffer].data = bytearray(rescaled.tobytes())
    bias.quantization.scale = [float(s) * factor for s in bias.quantization.scale]


def plain_converter(keras_model: keras.Model) -> tf.lite.TFLiteConverter:
    """TFLiteConverter for the model's inference function, as `from_keras_model` makes it, about 4x faster.

    `from_keras_model` first saves a tf_keras model as a Keras SavedModel, which traces
    every layer's call for serialisation (most of the 31 s a full-width MobileNetV2 fp32
    conversion took here; 7 s this way). The converter only needs the model's forward
    pass: this saves just that function (with the model's variables) and converts it
    through the same SavedModel path. Measured on tiny and full-width models in fp32,
    fp16, int8, int8 I/O and labels output: the files are byte-identical but for one
    byte of the converter's own CONVERSION_METADATA (the source's model type).
    """
    spec = keras_model.inputs[0]
    names = keras_model.output_names

    @tf.function
    def serve(image):
        outputs = keras_model(image, training=False)
        return dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))

    function = serve.get_concrete_function(tf.TensorSpec(spec.shape, spec.dtype, name=spec.name.split(":")[0]))
    holder = tf.Module()
    holder.model_variables = list(keras_model.variables)  # what the saved function reads
    return tf.lite.TFLiteConverter.from_concrete_functions([function], holder)


def _converter(keras_model: keras.Model, precision: str, representative: Callable | None, int8_io: bool):
    converter = plain_converter(keras_model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


def eval_images(data: str, split: str, size: tuple[int, int], normalization: dict, count: int) -> Iterator[np.ndarray]:
    """Up to `count` images of `data`/`split`, preprocessed exactly as evaluation does."""
    from training.datasets import open_dataset  # training imports convert lazily too
    from training.preprocess import eval_inputs

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


def export_tflite(
    model: keras.Model,
    precision: str = "fp32",
    *,
    naive: bool = False,
    calibration: str | None = None,
    calibration_steps: int = 100,
    input_size: int | tuple[int, int] | None = None,
    output: str = "logits",
    int8_io: bool = False,
    check_parity: bool = True,
    parity_images: int = 8,
    activation_ranges: Mapping[str, tuple[float, float]] | None = None,
    check_gpu: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    """Converts a zoo model to a `.tflite` flatbuffer and reports on it.

    Args:
        model: a model from `zoo.build_model` or `training/train.py` (it must carry a description).
        precision: "fp32", "fp16" or "int8" (full-integer post-training quantization).
        naive: convert with the plain TFLiteConverter (`plain_converter`) instead (baseline).
        calibration: data spec for int8 calibration and parity images; default the
            data the model was trained on (its description's `data`), else "synthetic".
        calibration_steps: calibration images for int8.
        input_size: export at this input size instead of the model's.
        output: "logits" (float class scores at the input resolution) or "labels"
            (uint8 arg-max label map).
        int8_io: int8 input and output tensors (default float32 I/O, also in int8).
        check_parity: run the file and the Keras model on real images and compare.
        parity_images: images used for that comparison.
        activation_ranges: int8 only: (min, max) per activation, keyed as in
            `convert.activation_ranges` (e.g. from `quantize.calibrate.qat_activation_ranges`);
            they replace the calibrated ranges of the tensors they name, the others keep theirs.
        check_gpu: also run the file on LiteRT's GPU accelerator and compare it with LiteRT's
            CPU on the parity images (report fields `gpu_*`, see `gpu_check`).
        log: called with progress messages.

    Returns:
        ExportResult with the file's bytes and the report (precision, bytes, params,
        ops, weight_buffers, shared_kernel_buffers, argmax_agreement, max_abs_diff, ...).
    """
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if output not in OUTPUTS:
        raise ExportError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
    description = describe(model)
    size = _input_shape(model, input_size)
    data = calibration or description.get("data") or "synthetic"
    normalization = description["normalization"]
    started = time.perf_counter()

    if naive:
        if output != "logits" or size != tuple(description["input_size"]):
            raise ExportError("the naive baseline converts the model as it is: logits output at its own input size")
        export_model = model
    else:
        export_model = prepare_for_export(model, precision, size, output)

    representative = None
    if precision == "int8":

        def representative() -> Iterator[list[np.ndarray]]:
            for i, image in enumerate(eval_images(data, "train", size, normalization, calibration_steps)):
                log(f"calibrating {i + 1}/{calibration_steps}")
                yield [image[None].astype(np.float32)]

    log(f"converting {description['name']} to {precision} ({'naive' if naive else 'ksac-aware'})")
    converter = _converter(export_model, precision, representative, int8_io)
    ranges_used: list[str] = []
    ranges_hook: Any = contextlib.nullcontext([])
    if activation_ranges:
        if precision != "int8" or naive:
            raise ExportError("activation_ranges apply to the KSAC-aware int8 export only")
        ksac_rates = {layer.name: list(layer.rates) for layer in export_model.layers
                      if isinstance(layer, UnrolledSharedAtrousConv2D)}  # fmt: skip

        def replace(calibrated: bytes) -> bytes:
            replaced, used = apply_ranges(calibrated, activation_ranges, ksac_rates)
            ranges_used.extend(used)
            return replaced

        ranges_hook = ranges_replaced_after_calibration(replace)
    try:
        with ranges_hook as calibrations, native_stderr(drop=QUANTIZER_SETTINGS_LINE):
            converted = converter.convert()
    except Exception as error:  # the converter raises many types; name the step that failed
        raise ExportError(f"TFLite conversion of {description['name']} to {precision} failed: {error}") from error
    if activation_ranges and not calibrations:
        raise ExportError("the TFLite converter did not call its calibration step, so the given activation ranges were not applied")

    flatbuffer = flatbuffer_utils.read_model_from_bytearray(bytearray(converted))
    rates = description.get("rates") or []
    if precision == "int8" and description["head"] == "ksac" and not naive:
        share_pyramid_buffers(flatbuffer, rates)
    untied = untie_input_scale(flatbuffer, normalization) if precision == "int8" and not naive else None
    bias_ops, bias_errors = tflite_inspect.bias_scale_errors(flatbuffer)
    if bias_errors:  # the converter keeps the rule; a rewrite above broke it
        raise ExportError(f"the {precision} file breaks TFLite's rule bias scale = input scale x weight scale "
                          f"(a bug in convert/export.py): {'; '.join(bias_errors[:3])}")  # fmt: skip
    file_description = dict(description, precision=precision, output=output, input_size=list(size),
                            exporter="naive" if naive else "ksac-aware", data=data)  # fmt: skip
    with_metadata(flatbuffer, file_description)
    graph = flatbuffer.subgraphs[0]
    input_dtype = tflite_inspect.tensor_type_name(graph.tensors[graph.inputs[0]].type).lower()
    refusal = metadata_refusal(file_description, input_dtype)
    if refusal is None:
        # MediaPipe's ImageSegmenter / the Task Library read this; the zip with labels.txt goes last,
        # after every rewrite of the flatbuffer (re-serialising would drop it).
        with_entry(flatbuffer, TFLITE_METADATA_NAME, model_metadata(file_description))
    tflite = bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))
    if refusal is None:
        tflite = append_associated_files(tflite, {LABELS_FILE: labels_file(file_description)})

    report: dict[str, Any] = {
        "model": description["name"],
        "exporter": "naive" if naive else "ksac-aware",
        "precision": precision,
        "output": output,
        "input_size": list(size),
        "bytes": len(tflite),
        "params": int(model.count_params()),
        "ops": tflite_inspect.op_histogram(flatbuffer),
        "weight_buffers": tflite_inspect.weight_buffers(flatbuffer)["count"],
        "weight_bytes": tflite_inspect.weight_buffers(flatbuffer)["bytes"],
        # The standard TFLite Metadata (MediaPipe Tasks, the Task Library) or why the file has none.
        "standard_metadata": refusal is None,
        "standard_metadata_reason": refusal,
    }
    if precision == "int8":
        # How many activation tensors took a given (e.g. QAT) range instead of the calibrated one.
        report["given_activation_ranges"] = len(ranges_used)
        report["input_scale_untied"] = untied is not None  # see untie_input_scale
        report["bias_scale_ops"] = bias_ops  # int32 biases checked against TFLite's scale rule, all kept it
    if description["head"] == "ksac":
        report["shared_kernel_buffers"] = len(tflite_inspect.pyramid_buffers(flatbuffer, rates))
        report["negative_scale_channels"] = negative_scale_channels(model)
    report["convert_seconds"] = round(time.perf_counter() - started, 2)
    images = list(eval_images(data, "val", size, normalization, parity_images)) if check_parity or check_gpu else []
    if check_parity:
        log(f"checking parity on {parity_images} {data} val images")
        if naive or size != tuple(description["input_size"]):
            reference = prepare_for_export(model, "fp32", size) if not naive else model
        else:
            reference = model
        report.update(parity(reference, tflite, images, output))
    else:
        report.update(argmax_agreement=None, max_abs_diff=None)
    if check_gpu:
        log(f"checking the file on the GPU accelerator against LiteRT CPU on {len(images)} {data} val images")
        report.update(gpu_check(tflite, images))
    report["seconds"] = round(time.perf_counter() - started, 2)
    return ExportResult(tflite=tflite, report=report)
