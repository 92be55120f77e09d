"""Structural checks of an int8 `.tflite` file: the rules a QAT int8 KSAC export must meet.

- every CONV_2D (and DEPTHWISE_CONV_2D) filter is int8;
- QUANTIZE / DEQUANTIZE appear only at the graph's ends (reading a graph input or
  writing a graph output), so everything between runs in int8;
- the KSAC 3x3 atrous pyramid reads ONE filter buffer.
"""

from __future__ import annotations

from typing import Any

from tensorflow.lite.python import schema_py_generated as schema_fb

from convert import tflite_file
from inference.description import read_description
from zoo.heads import is_ksac

CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def int8_rules(tflite: bytes | str) -> dict[str, Any]:
    """Checks the rules above on a `.tflite` file (path or bytes).

    Returns:
        {"conv_filters": n, "non_int8_conv_filters": [op names], "quantize_ops": n,
         "inner_quantize_ops": n (QUANTIZE/DEQUANTIZE not at an end), "pyramid_buffers": n or None,
         "ok": bool}
    """
    model = tflite_file.load_model(tflite)
    graph = model.subgraphs[0]
    ends = set(graph.inputs) | set(graph.outputs)
    conv_filters, wrong, quantize_ops, inner = 0, [], 0, 0
    for index, op in enumerate(graph.operators):
        name = tflite_file.op_name(model, op)
        if name in CONVS:
            conv_filters += 1
            if graph.tensors[op.inputs[1]].type != schema_fb.TensorType.INT8:
                wrong.append(f"{name}#{index}")
        elif name in ("QUANTIZE", "DEQUANTIZE"):
            quantize_ops += 1
            if op.inputs[0] not in ends and op.outputs[0] not in ends:
                inner += 1
    try:
        description = read_description(model)
    except ValueError:
        description = None
    pyramid = None
    if description is not None and is_ksac(description.head) and description.rates:
        pyramid = tflite_file.pyramid_buffer_count(model, list(description.rates))
    ok = conv_filters > 0 and not wrong and inner == 0 and pyramid in (None, 1)
    return {
        "conv_filters": conv_filters,
        "non_int8_conv_filters": wrong,
        "quantize_ops": quantize_ops,
        "inner_quantize_ops": inner,
        "pyramid_buffers": pyramid,
        "ok": ok,
    }
