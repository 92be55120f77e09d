"""Where a file's CPU time goes: the backbone alone vs the whole model, timed round-robin in one run.

    python benchmarks/time_split.py --models mobilenetv2_ksac,mobilenetv2_ksac_separable --precisions fp32,int8

Every model is exported with the project's exporter; two files are cut from it (`cut_at`: the same
ops, weights and quantization, later ops dropped): one stops at the backbone's features, one at the
logits before the final upsampling. So the whole time splits into backbone, head (pyramid, pooling,
projection; decoder; logits) and upsampling to the input size (with int8's output DEQUANTIZE). All files of one thread count are timed together,
round-robin (benchmarks/latency.py), so the ratios compare runs under the same load. It answers
"why is the int8 speed-up of a cheaper pyramid smaller than the fp32 one": the part each precision
spends outside the head, which no change of the head touches.

LiteRT's Python interpreter has no per-op profiler (that is the C++ benchmark_model's
`--enable_op_profiling`), hence this split of the graph.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import zoo  # noqa: F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)


def cut_at(tflite: bytes, part: str) -> bytes:
    """`tflite` cut after one part: "backbone" (its output is the input of the head's image pooling, the
    last MEAN or AVERAGE_POOL_2D of the file (MobileNetV3's squeeze-and-excitation MEANs come before it):
    the backbone's features) or "head" (the input of the last RESIZE_BILINEAR: the logits at the output
    stride, before the upsampling to the input size and, in int8 files, the output DEQUANTIZE). The cut
    file keeps the ops that tensor depends on, with their weights and quantization, and makes it the
    only output. ValueError if the file has no such op (not a zoo segmentation model)."""
    from tensorflow.lite.tools import flatbuffer_utils

    from convert.tflite_file import op_name

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    kinds = {"backbone": ("MEAN", "AVERAGE_POOL_2D"), "head": ("RESIZE_BILINEAR",)}[part]
    ops = [op for op in graph.operators if op_name(model, op) in kinds]
    if not ops:
        raise ValueError(f"the file has no {' or '.join(kinds)} op: not a zoo segmentation model")
    output = int(ops[-1].inputs[0])
    producers = {int(out): op for op in graph.operators for out in op.outputs}
    needed, stack = set(), [output]
    while stack:
        op = producers.get(stack.pop())
        if op is not None and id(op) not in needed:
            needed.add(id(op))
            stack.extend(int(i) for i in op.inputs if i >= 0)
    graph.operators = [op for op in graph.operators if id(op) in needed]
    graph.outputs = [output]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def measure(models: Sequence[str], precisions: Sequence[str], threads: Sequence[int], input_size: int,
            runs: int, calibration_steps: int) -> list[dict[str, Any]]:  # fmt: skip
    """One row per (model, precision, threads): p50 (ms) of the whole file, of the backbone, of the head
    (and decoder: the cut after the logits minus the backbone), of the upsampling (whole minus that cut)."""
    import tf_keras as keras

    from benchmarks.exporters import export
    from benchmarks.latency import measure_interleaved
    from benchmarks.realistic_weights import benchmark_model

    files: dict[tuple[str, str, str], bytes] = {}
    for name in models:
        model = benchmark_model(name, input_size)  # at the model's own output stride
        for precision in precisions:
            print(f"exporting {name} {precision} at {input_size} ...", flush=True)
            tflite = export(model, precision, calibration_steps=calibration_steps, check_parity=False).tflite
            files[name, precision, "whole"] = tflite
            files[name, precision, "backbone"] = cut_at(tflite, "backbone")
            files[name, precision, "head"] = cut_at(tflite, "head")
        del model
        keras.backend.clear_session()
    rows = []
    for count in threads:
        print(f"timing {len(files)} files at {count} thread(s), round-robin ({runs} timed runs each)", flush=True)
        stats = measure_interleaved(files, count, warmup=3, runs=runs, progress=True)
        for name in models:
            for precision in precisions:
                whole, backbone, head = (stats[name, precision, part].p50_ms for part in ("whole", "backbone", "head"))
                rows.append(dict(model=name, precision=precision, threads=count, input_size=input_size,
                                 whole_ms=whole, backbone_ms=backbone, head_ms=head - backbone,
                                 upsampling_ms=whole - head, head_share=(head - backbone) / whole))  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as Markdown, then the ratios of every model over the first one at the same precision and threads."""
    lines = ["| model | prec | threads | whole p50 (ms) | backbone (ms) | head + decoder (ms) | upsampling + output (ms) | "
             "head share |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['model']} | {r['precision']} | {r['threads']} | {r['whole_ms']:.1f} | {r['backbone_ms']:.1f} | "
              f"{r['head_ms']:.1f} | {r['upsampling_ms']:.1f} | {r['head_share']:.0%} |" for r in rows]  # fmt: skip
    base = rows[0]["model"]
    lines += ["", f"Speed-ups over {base} (same precision and threads): whole file, head + decoder part", ""]
    lines += ["| model | prec | threads | whole | head + decoder |", "|---|---|---|---|---|"]
    for r in rows:
        ref = next(x for x in rows if x["model"] == base and x["precision"] == r["precision"] and x["threads"] == r["threads"])
        if r["model"] != base:
            lines.append(f"| {r['model']} | {r['precision']} | {r['threads']} | {ref['whole_ms'] / r['whole_ms']:.2f}x | "
                         f"{ref['head_ms'] / r['head_ms']:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from common.cli import add_json_flag, check_json_path, json_to_stdout, stdout_kept_for_json, write_json
    from inference.description import PRECISIONS
    from zoo.registry import DEFAULT_INPUT_SIZE, list_models

    parser = argparse.ArgumentParser(prog="python benchmarks/time_split.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mobilenetv2_ksac,mobilenetv2_ksac_separable,mobilenetv2_aspp_separable",
                        help="comma-separated models; the first is the reference of the ratios")  # fmt: skip
    parser.add_argument("--precisions", default="fp32,int8", help="comma-separated among fp32,fp16,int8")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE,
                        help=f"side of the square input (default {DEFAULT_INPUT_SIZE})")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per file and thread count (default 20)")
    parser.add_argument("--calibration-steps", type=int, default=16, help="int8 calibration images (default 16)")
    add_json_flag(parser, "the rows")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = [m for m in models if m not in list_models()] + [p for p in precisions if p not in PRECISIONS]
    if unknown or not models or not precisions:
        parser.error(f"unknown or missing models/precisions: {', '.join(unknown) or '(none given)'}")
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not threads or min(threads) < 1 or args.runs < 1 or args.input_size < 33:
        parser.error("--threads and --runs must be at least 1, --input-size at least 33")
    try:
        check_json_path(args.json)
    except ValueError as error:
        parser.error(str(error))
    with stdout_kept_for_json(args.json) as stdout:
        rows = measure(models, precisions, threads, args.input_size, args.runs, args.calibration_steps)
        if not json_to_stdout(args.json):
            print(table(rows))
        write_json(args.json, rows, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
