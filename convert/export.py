"""The KSAC-aware TFLite exporter: fp32, fp16 and int8 post-training quantization.

`export_tflite(model, precision)` turns a zoo model into a `.tflite` flatbuffer:

1. `prepare_for_export` clones the model at batch 1 with static shapes (so the
   converter emits native dilated CONV_2D instead of SPACE_TO_BATCH_ND /
   CONV_2D / BATCH_TO_SPACE_ND, and folds BatchNorm into ordinary convs), and
   swaps the KSAC pyramid for its unrolled export form (`convert/graph.py`)
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
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.lite.tools import flatbuffer_utils

from common.native_log import native_stderr
from convert.activation_ranges import apply_ranges, ranges_replaced_after_calibration
from convert.graph import UnrolledSharedAtrousConv2D, input_shape, negative_scale_channels, prepare_for_export
from convert.parity import PARITY_BAR, eval_images, gpu_check, parity
from convert.tflite_file import (
    bias_scale_errors,
    op_histogram,
    pyramid_buffer_count,
    pyramid_buffers,
    share_pyramid_buffers,
    tensor_type_name,
    untie_input_scale,
    weight_buffers,
    with_entry,
    with_metadata,
)
from convert.tflite_metadata import (
    LABELS_FILE,
    TFLITE_METADATA_NAME,
    append_associated_files,
    labels_file,
    metadata_refusal,
    model_metadata,
)
from inference.arm import CPUS as ARM_CPUS
from inference.arm import ArmEnvironment, ArmEnvironmentMissing, ArmRunError, check_files
from inference.description import PRECISIONS
from zoo import atrous
from zoo.heads import is_ksac
from zoo.registry import describe

# TensorFlow's quantizer prints its settings on every int8 conversion, whatever the log level.
QUANTIZER_SETTINGS_LINE = re.compile(r"fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+")

OUTPUTS = ("logits", "labels")


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
    check_arm: bool = False,
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
        check_arm: also run the file in LiteRT's ARM64 build under emulation (`inference.arm`, every CPU
            model) on the parity images against x86 LiteRT (report fields `arm_*`); ExportError before
            converting when the environment is missing (`make arm-env`).
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
    arm_env = None
    if check_arm:
        try:
            arm_env = ArmEnvironment.find()
        except ArmEnvironmentMissing as error:
            raise ExportError(f"--check-arm: {error}") from None
    size = input_shape(model, input_size)
    data = calibration or description.data or "synthetic"
    normalization = description.normalization
    started = time.perf_counter()

    if naive:
        if output != "logits" or size != description.input_size:
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

    log(f"converting {description.name} to {precision} ({'naive' if naive else 'ksac-aware'})")
    # The naive baseline is the model as Keras alone computes it (no zoo.atrous shortcut in its graph).
    with atrous.as_written() if naive else contextlib.nullcontext():
        converter = _converter(export_model, precision, representative, int8_io)
    ranges_used: list[str] = []
    ranges_hook: Any = contextlib.nullcontext([])
    if activation_ranges:
        if precision != "int8" or naive:
            raise ExportError("activation_ranges apply to the KSAC-aware int8 export only")
        pyramids = [layer for layer in export_model.layers if isinstance(layer, UnrolledSharedAtrousConv2D)]
        ksac_rates = {layer.name: list(layer.rates) for layer in pyramids}
        separable = {layer.name for layer in pyramids if len(layer.kernels) > 1}

        def replace(calibrated: bytes) -> bytes:
            replaced, used = apply_ranges(calibrated, activation_ranges, ksac_rates, separable)
            ranges_used.extend(used)
            return replaced

        ranges_hook = ranges_replaced_after_calibration(replace)
    try:
        # Lines pass on as they are written: calibration progress (`log`) shows while the converter runs, and
        # if the process dies in it (out of memory, a failed CHECK) its last lines are out (ksac_runtime/native_log.py).
        with ranges_hook as calibrations, native_stderr(drop=QUANTIZER_SETTINGS_LINE):
            converted = converter.convert()
    except Exception as error:  # the converter raises many types; name the step that failed
        raise ExportError(f"TFLite conversion of {description.name} to {precision} failed: {error}") from error
    if activation_ranges and not calibrations:
        raise ExportError("the TFLite converter did not call its calibration step, so the given activation ranges were not applied")

    flatbuffer = flatbuffer_utils.read_model_from_bytearray(bytearray(converted))
    rates = list(description.rates)
    if precision == "int8" and is_ksac(description.head) and not naive:
        try:
            share_pyramid_buffers(flatbuffer, rates)
        except ValueError as error:
            raise ExportError(str(error)) from None
    untied = untie_input_scale(flatbuffer, normalization) if precision == "int8" and not naive else None
    bias_ops, bias_errors = bias_scale_errors(flatbuffer)
    if bias_errors:  # the converter keeps the rule; a rewrite above broke it
        raise ExportError(f"the {precision} file breaks TFLite's rule bias scale = input scale x weight scale "
                          f"(a bug in convert/export.py): {'; '.join(bias_errors[:3])}")  # fmt: skip
    file_description = description.replace(precision=precision, output=output, input_size=size,
                                           exporter="naive" if naive else "ksac-aware", data=data)  # fmt: skip
    with_metadata(flatbuffer, file_description)
    graph = flatbuffer.subgraphs[0]
    input_dtype = tensor_type_name(graph.tensors[graph.inputs[0]].type).lower()
    refusal = metadata_refusal(file_description, input_dtype)
    if refusal is None:
        # MediaPipe's ImageSegmenter / the Task Library read this; the zip with labels.txt goes last,
        # after every rewrite of the flatbuffer (re-serialising would drop it).
        with_entry(flatbuffer, TFLITE_METADATA_NAME, model_metadata(file_description))
    tflite = bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))
    if refusal is None:
        tflite = append_associated_files(tflite, {LABELS_FILE: labels_file(file_description)})

    report: dict[str, Any] = {
        "model": description.name,
        "exporter": "naive" if naive else "ksac-aware",
        "precision": precision,
        "output": output,
        "input_size": list(size),
        "bytes": len(tflite),
        "params": int(model.count_params()),
        "ops": op_histogram(flatbuffer),
        "weight_buffers": weight_buffers(flatbuffer)["count"],
        "weight_bytes": weight_buffers(flatbuffer)["bytes"],
        # The standard TFLite Metadata (MediaPipe Tasks, the Task Library) or why the file has none.
        "standard_metadata": refusal is None,
        "standard_metadata_reason": refusal,
    }
    if precision == "int8":
        # How many activation tensors took a given (e.g. QAT) range instead of the calibrated one.
        report["given_activation_ranges"] = len(ranges_used)
        report["input_scale_untied"] = untied is not None  # see untie_input_scale
        report["bias_scale_ops"] = bias_ops  # int32 biases checked against TFLite's scale rule, all kept it
    if is_ksac(description.head):
        # Buffers per shared kernel (1: each stored once), and per kernel (separable: depthwise and pointwise).
        report["shared_kernel_buffers"] = pyramid_buffer_count(flatbuffer, rates)
        report["shared_kernel_buffers_per_kernel"] = {kind: len(b) for kind, b in pyramid_buffers(flatbuffer, rates).items()}
        report["negative_scale_channels"] = negative_scale_channels(model)
    report["convert_seconds"] = round(time.perf_counter() - started, 2)
    images = list(eval_images(data, "val", size, normalization, parity_images)) if check_parity or check_gpu or check_arm else []
    if check_parity:
        log(f"checking parity on {parity_images} {data} val images")
        if naive or size != description.input_size:
            reference = prepare_for_export(model, "fp32", size) if not naive else model
        else:
            reference = model
        report.update(parity(reference, tflite, images, output))
    else:
        report.update(argmax_agreement=None, max_abs_diff=None)
    if check_gpu:
        log(f"checking the file on the GPU accelerator against LiteRT CPU on {len(images)} {data} val images")
        report.update(gpu_check(tflite, images))
    if check_arm:
        log(f"checking the file on LiteRT's ARM64 kernels (emulated {', '.join(ARM_CPUS)}) against x86 LiteRT on {len(images)} {data} val images")
        report.update(arm_check(tflite, images, arm_env, log))
    report["seconds"] = round(time.perf_counter() - started, 2)
    return ExportResult(tflite=tflite, report=report)


def arm_check(tflite: bytes, images: list[np.ndarray], env: ArmEnvironment, log: Callable[[str], None]) -> dict[str, Any]:
    """The report fields of `--check-arm`: `arm_argmax_agreement` (percent, the minimum over the CPU models),
    `arm_max_abs_diff` (the maximum), `arm_cpus`, `arm_litert` and `arm_by_cpu` (each CPU model's figures)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ksac-export-arm-") as folder:
        path = f"{folder}/model.tflite"
        with open(path, "wb") as f:
            f.write(tflite)
        try:
            result = check_files([path], ARM_CPUS, env=env, log=log, inputs=np.stack(images))[0]
        except ArmRunError as error:
            raise ExportError(f"--check-arm: {error}") from None
    return {"arm_argmax_agreement": result["argmax_agreement"], "arm_max_abs_diff": result["max_abs_diff"],
            "arm_cpus": list(result["cpus"]), "arm_litert": result["litert_arm64"], "arm_by_cpu": result["cpus"]}  # fmt: skip
