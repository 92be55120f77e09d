"""What a `.tflite` file holds: description, metadata, op histogram, weight buffers, the KSAC pyramid.

    python -m convert.inspect FILE.tflite [--json [FILE]]     (this module; also python -m convert.summary)

prints the embedded model description (ours), the standard TFLite Metadata that MediaPipe Tasks and
the TFLite Task Library read (normalisation, labels, output kind, ImageSegmenter options), the op
histogram and weight-buffer statistics.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import zoo  # noqa: F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)
from tensorflow.lite.tools import flatbuffer_utils

from common.cli import add_json_flag, check_json_path, fail, json_to_stdout, write_json
from convert.tflite_file import op_histogram, pyramid_buffer_count, weight_buffers
from convert.tflite_metadata import TFLITE_METADATA_NAME, read_standard_metadata
from inference.description import METADATA_NAME, ModelDescription, damaged_model_errors, read_metadata, read_model_bytes


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
            description = read_metadata(model)  # shown as stored, whatever its version or state
        except ValueError:
            description = None
        summary = {
            "bytes": len(data),
            "description": description,
            "standard_metadata": read_standard_metadata(data),
            "ops": op_histogram(model),
            "weight_buffers": weight_buffers(model),
        }
        rates = _rates(description)
        if rates:
            summary["pyramid_kernel_buffers"] = pyramid_buffer_count(model, rates)
    return summary


def _rates(description: dict[str, Any] | None) -> list[int]:
    """The atrous rates of a stored description, [] when it has none or is not one this code reads."""
    try:
        return list(ModelDescription.from_dict(description).rates) if description is not None else []
    except ValueError:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help=".tflite file to inspect")
    add_json_flag(parser, "the summary", instead="the text")
    args = parser.parse_args(argv)
    try:
        check_json_path(args.json)
        summary = summarize(args.file)
    except (OSError, ValueError) as error:  # each names the file: exit 2 (common/cli.py)
        return fail(error)
    write_json(args.json, summary)
    if json_to_stdout(args.json):
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
