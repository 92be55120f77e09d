"""Flatbuffer inspection of `.tflite` files: op histogram, weight buffers, the KSAC pyramid.

    python -m convert.inspect FILE.tflite [--json]

prints the embedded model description (ours), the standard TFLite Metadata that MediaPipe Tasks and
the TFLite Task Library read (normalisation, labels, output kind, ImageSegmenter options), the op
histogram and weight-buffer statistics.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import numpy as np

import zoo  # noqa: F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from convert.metadata import METADATA_NAME, read_metadata
from convert.tflite_metadata import TFLITE_METADATA_NAME, read_standard_metadata
from inference.description import damaged_model_errors, read_model_bytes

_OP_NAMES = {code: name for name, code in vars(schema_fb.BuiltinOperator).items() if not name.startswith("_")}
_TYPE_NAMES = {code: name for name, code in vars(schema_fb.TensorType).items() if not name.startswith("_")}


def load_model(tflite: bytes | bytearray | str) -> schema_fb.ModelT:
    """Parses a `.tflite` file (path or bytes) into the flatbuffer object API.

    Raises:
        FileNotFoundError: a path that is not a file.
        ValueError: not a TFLite model, or a damaged one (the message names the file).
    """
    data = read_model_bytes(tflite)
    with damaged_model_errors(tflite):
        return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def tensor_type_name(code: int) -> str:
    """The schema's name of a TensorType code, e.g. FLOAT32, INT8."""
    return _TYPE_NAMES.get(code, str(code))


def op_name(model: schema_fb.ModelT, op: schema_fb.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return _OP_NAMES.get(builtin, f"OP_{builtin}") if builtin != schema_fb.BuiltinOperator.CUSTOM else code.customCode


def op_histogram(model: schema_fb.ModelT) -> dict[str, int]:
    """Op name -> count over every subgraph."""
    counts = Counter(op_name(model, op) for graph in model.subgraphs for op in graph.operators)
    return dict(sorted(counts.items()))


def _metadata_buffers(model: schema_fb.ModelT) -> set[int]:
    return {entry.buffer for entry in model.metadata or []}


def weight_buffers(model: schema_fb.ModelT) -> dict[str, Any]:
    """Buffers holding constant tensor data (weights, biases): count, bytes, and bytes per type."""
    skip = _metadata_buffers(model)
    by_type: Counter = Counter()
    used = set()
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data if tensor.buffer else None
            if tensor.buffer in skip or data is None or len(data) == 0 or tensor.buffer in used:
                continue
            used.add(tensor.buffer)
            by_type[_TYPE_NAMES.get(tensor.type, str(tensor.type))] += len(data)
    return {"count": len(used), "bytes": int(sum(by_type.values())), "bytes_by_type": dict(by_type)}


def filter_buffer(model: schema_fb.ModelT, graph: schema_fb.SubGraphT, tensor_index: int) -> int:
    """The buffer behind a conv's filter input, looking through a DEQUANTIZE (fp16 weights)."""
    producers = {out: op for op in graph.operators for out in op.outputs}
    op = producers.get(tensor_index)
    if op is not None and op_name(model, op) == "DEQUANTIZE":
        tensor_index = op.inputs[0]
    return graph.tensors[tensor_index].buffer


def pyramid_convs(model: schema_fb.ModelT, rates: list[int]) -> list[schema_fb.OperatorT]:
    """The 3x3 CONV_2D ops of an atrous pyramid: those reading one input at the given rates.

    Branches of a pyramid all read the backbone features, so the convs are grouped
    by input tensor; the group whose dilations are exactly `rates` is the pyramid.
    """
    graph = model.subgraphs[0]
    groups: dict[int, list] = {}
    for op in graph.operators:
        if op_name(model, op) != "CONV_2D":
            continue
        shape = list(graph.tensors[op.inputs[1]].shape)
        if len(shape) == 4 and shape[1:3] == [3, 3]:
            groups.setdefault(op.inputs[0], []).append(op)
    for ops in groups.values():
        if sorted(op.builtinOptions.dilationHFactor for op in ops) == sorted(rates):
            return ops
    return []


def pyramid_buffers(model: schema_fb.ModelT, rates: list[int]) -> list[int]:
    """Distinct buffers read as filters by the pyramid convs (1 when the kernel is shared)."""
    graph = model.subgraphs[0]
    return sorted({filter_buffer(model, graph, op.inputs[1]) for op in pyramid_convs(model, rates)})


# Ops whose integer kernels add an int32 bias to the input x weight accumulator: inputs (data, filter, bias).
BIAS_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def bias_scale_errors(model: schema_fb.ModelT, rtol: float = 1e-6) -> tuple[int, list[str]]:
    """Checks TFLite's quantization rule bias scale = input scale x weight scale on every integer bias.

    Every BIAS_OPS op with an int32 (or int64) bias is checked, per output channel, to `rtol` (TFLite's
    own tolerance where its kernels check the rule: 1e-6 of the smaller scale). Kernels add the
    bias's integers to the accumulator as they are, so a bias of another scale is a different bias;
    strict delegates refuse such a file.

    Returns:
        (ops checked, one line per op that breaks the rule, e.g. "CONV_2D #0 'name': bias/(input x weight) 0.99805").
    """
    checked, errors = 0, []
    for graph in model.subgraphs:
        for index, op in enumerate(graph.operators):
            name = op_name(model, op)
            if name not in BIAS_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            data, weight, bias = (graph.tensors[i] for i in op.inputs[:3])
            if bias.type not in (schema_fb.TensorType.INT32, schema_fb.TensorType.INT64):
                continue  # a float bias (float, fp16 or dynamic-range files): no rule
            checked += 1
            scales = [t.quantization.scale if t.quantization is not None else None for t in (data, weight, bias)]
            if any(s is None or len(s) == 0 for s in scales):
                errors.append(f"{name} #{index} {bias.name.decode(errors='replace')!r}: integer bias without quantization scales")
                continue
            expected = float(scales[0][0]) * np.asarray(scales[1], np.float64)
            actual = np.asarray(scales[2], np.float64)
            if actual.shape != expected.shape and actual.size != 1 and expected.size != 1:
                errors.append(f"{name} #{index}: {actual.size} bias scales for {expected.size} weight scales")
                continue
            if np.any(np.abs(actual - expected) > rtol * np.minimum(np.abs(actual), np.abs(expected))):
                ratio = actual / expected
                errors.append(f"{name} #{index} {bias.name.decode(errors='replace')!r}: bias/(input x weight) scale "
                              f"{float(np.min(ratio)):.5f}..{float(np.max(ratio)):.5f}")  # fmt: skip
    return checked, errors


def summarize(tflite: bytes | str) -> dict[str, Any]:
    """Description, standard metadata, op histogram and buffer statistics of a `.tflite` file (path or bytes).

    Raises:
        FileNotFoundError: a path that is not a file.
        ValueError: not a TFLite model, or a damaged one (the message names the file).
    """
    data = read_model_bytes(tflite)
    # A flatbuffer that unpacks may still hold indices that lead nowhere: any failure below is damage too.
    with damaged_model_errors(tflite):
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
        try:
            description = read_metadata(model)
        except ValueError:
            description = None
        summary = {
            "bytes": len(data),
            "description": description,
            "standard_metadata": read_standard_metadata(data),
            "ops": op_histogram(model),
            "weight_buffers": weight_buffers(model),
        }
        if description and description.get("rates"):
            summary["pyramid_kernel_buffers"] = len(pyramid_buffers(model, description["rates"]))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help=".tflite file to inspect")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.file)
    except (OSError, ValueError) as error:  # each names the file
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.file}: {summary['bytes']:,} bytes")
    print(f"description ({METADATA_NAME}):")
    print(json.dumps(summary["description"], indent=2) if summary["description"] else "  none")
    standard = summary["standard_metadata"]
    print(f"standard metadata ({TFLITE_METADATA_NAME}):")
    if standard is None:
        print("  none (MediaPipe Tasks and the TFLite Task Library cannot load this file)")
    else:
        print(f"  name {standard['name']!r}, min_parser_version {standard['min_parser_version']}")
        for kind in ("inputs", "outputs"):
            for tensor in standard.get(kind, []):
                details = {k: v for k, v in tensor.items() if k not in ("name", "description")}
                print(f"  {kind[:-1]} {tensor['name']!r}: {json.dumps(details)}")
        for name, value in standard.get("custom_metadata", {}).items():
            print(f"  custom metadata {name}: {json.dumps(value)}")
        print(f"  zipped files: {', '.join(standard['zipped_files']) or 'none'}")
        if "labels" in standard:
            print(f"  labels ({len(standard['labels'])}): {', '.join(standard['labels'])}")
    print("ops:")
    for name, count in summary["ops"].items():
        print(f"  {name:<24} {count}")
    buffers = summary["weight_buffers"]
    print(f"weight buffers: {buffers['count']} holding {buffers['bytes']:,} bytes {buffers['bytes_by_type']}")
    if "pyramid_kernel_buffers" in summary:
        print(f"atrous pyramid kernel buffers: {summary['pyramid_kernel_buffers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
