"""Reading and editing `.tflite` flatbuffers, through TFLite's own schema objects (`schema_py_generated`).

Reading: `load_model`, op names and histogram, weight buffers, the KSAC pyramid's convs and kernel
buffers, TFLite's bias-scale rule (`bias_scale_errors`).
Editing (in place, on a `ModelT`): one kernel buffer for the KSAC pyramid (`share_pyramid_buffers`),
the int8 input scale moved off rounding ties (`untie_input_scale`), metadata entries (`with_entry`;
the model description: `with_metadata`, `add_metadata`).

The model description itself (its fields, JSON, versions) is `inference.description`'s; the standard
TFLite Metadata that MediaPipe reads (`TFLITE_METADATA`, labels.txt) is `convert.tflite_metadata`'s.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from convert.tflite_metadata import append_associated_files, associated_files
from inference.description import METADATA_NAME, ModelDescription, damaged_model_errors, read_model_bytes

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
    return _dilated_group(model, "CONV_2D", rates)


def _dilated_group(model: schema_fb.ModelT, kind: str, rates: list[int]) -> list[schema_fb.OperatorT]:
    graph = model.subgraphs[0]
    groups: dict[int, list] = {}
    for op in graph.operators:
        if op_name(model, op) != kind:
            continue
        shape = list(graph.tensors[op.inputs[1]].shape)
        if len(shape) == 4 and shape[1:3] == [3, 3]:
            groups.setdefault(op.inputs[0], []).append(op)
    for ops in groups.values():
        if sorted(op.builtinOptions.dilationHFactor for op in ops) == sorted(rates):
            return ops
    return []


def pyramid_kernel_ops(model: schema_fb.ModelT, rates: list[int]) -> dict[str, list[schema_fb.OperatorT]]:
    """The ops of a KSAC (or ASPP) pyramid by the kernel they apply, one op per rate each:

    {"kernel": the 3x3 CONV_2D ops} for the regular pyramid; {"depthwise": the dilated 3x3
    DEPTHWISE_CONV_2D ops, "pointwise": the 1x1 CONV_2D each of them feeds (through the branch's
    elementwise ops)} for the separable one; {} when the file has neither.
    """
    regular = pyramid_convs(model, rates)
    if regular:
        return {"kernel": regular}
    depthwise = _dilated_group(model, "DEPTHWISE_CONV_2D", rates)
    if not depthwise:
        return {}
    graph = model.subgraphs[0]
    consumers: dict[int, list] = {}
    for op in graph.operators:
        for index in op.inputs:
            consumers.setdefault(index, []).append(op)
    pointwise = []
    for op in depthwise:
        frontier, found = list(op.outputs), None
        while frontier and found is None:  # breadth-first through the branch's RELU / MUL / SUB ops
            next_frontier = []
            for tensor in frontier:
                for consumer in consumers.get(tensor, []):
                    if op_name(model, consumer) == "CONV_2D":
                        found = consumer
                        break
                    if op_name(model, consumer) in ("RELU", "MUL", "SUB", "ADD", "QUANTIZE", "DEQUANTIZE"):
                        next_frontier += list(consumer.outputs)
                if found is not None:
                    break
            frontier = next_frontier
        if found is not None:
            pointwise.append(found)
    return {"depthwise": depthwise, "pointwise": pointwise}


def pyramid_buffers(model: schema_fb.ModelT, rates: list[int]) -> dict[str, list[int]]:
    """Distinct buffers read as filters by the pyramid's ops, per kernel (one each when the kernels are shared)."""
    graph = model.subgraphs[0]
    return {kind: sorted({filter_buffer(model, graph, op.inputs[1]) for op in ops})
            for kind, ops in pyramid_kernel_ops(model, rates).items()}  # fmt: skip


def pyramid_buffer_count(model: schema_fb.ModelT, rates: list[int]) -> int:
    """How many buffers hold each of the pyramid's kernels: the most over its kernels (1 when every shared
    kernel, the regular one or the separable depthwise and pointwise, is stored once; 0 without a pyramid)."""
    return max((len(buffers) for buffers in pyramid_buffers(model, rates).values()), default=0)


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


def share_pyramid_buffers(model: schema_fb.ModelT, rates: list[int]) -> int:
    """Points every KSAC pyramid op's int8 filter at one buffer per shared kernel; returns how many were merged.

    The int8 form makes the branches' filters identical bytes by construction
    (the converter usually merges them itself); this makes it certain and
    checks the construction: different bytes are an error, not a silent copy.
    """
    graph = model.subgraphs[0]
    merged = 0
    for kind, ops in pyramid_kernel_ops(model, rates).items():
        filters = [graph.tensors[op.inputs[1]] for op in ops]
        if len(filters) < 2:
            continue
        first = filters[0].buffer
        reference = bytes(model.buffers[first].data)
        for tensor in filters[1:]:
            if tensor.buffer == first:
                continue
            if bytes(model.buffers[tensor.buffer].data) != reference:
                raise ValueError(
                    f"KSAC pyramid branches quantized to different int8 {kind} kernels; the shared kernel "
                    "cannot be stored once (this is a bug in convert/graph.py)"
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
                    if index in list(op.inputs) and op_name(model, op) == "QUANTIZE"]  # fmt: skip
        if not quantize:
            return None
        index = quantize[0].outputs[0]
    tensor = graph.tensors[index]
    if tensor.quantization is None or tensor.quantization.scale is None or len(tensor.quantization.scale) != 1:
        return None
    readers = [op for op in graph.operators if index in list(op.inputs)]
    # Ops that requantize from whatever scale their input has; anything else (PAD, CONCATENATION, ...)
    # may require its output to keep the input's scale.
    if any(op_name(model, op) not in (*BIAS_OPS, "QUANTIZE") for op in readers):
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
        if op_name(model, op) in BIAS_OPS:
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


def with_entry(model: schema_fb.ModelT, name: str, payload: bytes) -> schema_fb.ModelT:
    """Stores `payload` as the metadata entry `name` (replacing an earlier one), in place; returns `model`.

    An earlier entry keeps its buffer, which takes the new payload: a new buffer would leave the old
    payload in the file, unreferenced but still written, so that each rewrite grew the file.
    """
    earlier = [m for m in (model.metadata or []) if _name(m) == name]
    if earlier:
        for repeated in earlier[1:]:  # a name given twice (by another tool): one entry remains
            model.buffers[repeated.buffer].data = None
            model.metadata.remove(repeated)
        model.buffers[earlier[0].buffer].data = bytearray(payload)
        return model
    model.metadata = list(model.metadata or [])
    buffer = schema_fb.BufferT()
    buffer.data = bytearray(payload)
    model.buffers.append(buffer)
    entry = schema_fb.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return model


def with_metadata(model: schema_fb.ModelT, description: ModelDescription) -> schema_fb.ModelT:
    """Stores `description` (its `to_json()`) in `model` (replacing an earlier one), in place; returns `model`."""
    return with_entry(model, METADATA_NAME, description.to_json().encode("utf-8"))


def add_metadata(tflite: bytes, description: ModelDescription) -> bytes:
    """Returns `tflite` with `description` stored in its metadata (files zipped after it are kept)."""
    zipped = associated_files(bytes(tflite))
    model = with_metadata(load_model(tflite), description)
    rewritten = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    # Re-serialising drops whatever followed the flatbuffer (the standard metadata's labels.txt).
    return append_associated_files(rewritten, zipped) if zipped else rewritten


def _name(entry: schema_fb.MetadataT) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)
