#!/usr/bin/env python3
"""A tiny `mobilenetv2_ksac` `.tflite` with embedded metadata, for tests and for trying the app.

    python android_demo/tiny_model.py --out runs/tiny/model_int8.tflite --precision int8

Uses the project's exporter (`convert/export.py`, `export_tflite`) when it is present, otherwise the
plain TFLiteConverter (int8: float32 input and output, synthetic calibration) plus
`convert.tflite_file.add_metadata`. Either way the file carries the description the app reads. The
model is untrained: its labels are meaningless but deterministic, which is all a golden test needs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from inference.description import PRECISIONS


def build_tiny_model(input_size: int = 65, seed: int = 0) -> Any:
    """An untrained mobilenetv2_ksac at width 0.35 with 16 head filters (weights seeded).

    Fresh BatchNorm statistics (mean 0, variance 1) make the activations of an untrained network
    vanish (logits ~1e-10, one label everywhere), so the statistics are set to those of a synthetic
    batch: then the logits vary over the image and a golden label map has several classes.
    """
    import numpy as np

    import zoo  # first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

    import tensorflow as tf
    from benchmarks.realistic_weights import batchnorm_from_batch

    tf.keras.utils.set_random_seed(seed)
    model = zoo.build_model("mobilenetv2_ksac", input_size=input_size, width=0.35, head_filters=16)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:input_size, 0:input_size] / input_size
    batch = np.stack([np.sin(6 * xx + 4 * k * yy) for k in range(3)], axis=-1)[None] + rng.normal(0, 0.3, (4, input_size, input_size, 3))
    batchnorm_from_batch(model, batch.astype(np.float32))
    return model


def _plain_export(model: Any, precision: str, calibration_steps: int = 8) -> bytes:
    import numpy as np
    import tensorflow as tf

    import zoo
    from convert.export import plain_converter
    from convert.tflite_file import add_metadata

    converter = plain_converter(model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        shape = (1, *model.input_shape[1:])
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(calibration_steps):
                yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    description = zoo.describe(model).replace(output="logits", precision=precision, exporter="naive")
    return add_metadata(converter.convert(), description)


def export_tiny(path: str | Path, precision: str = "int8", input_size: int = 65, use_project_exporter: bool = True) -> str:
    """Writes a tiny model to `path`; returns which exporter made it ("project" or "plain")."""
    from common.files import atomic_write_bytes

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = build_tiny_model(input_size)
    if use_project_exporter and importlib.util.find_spec("convert.export") is not None:
        from convert.export import export_tflite

        import inspect

        kwargs: dict[str, Any] = {"calibration": "synthetic", "calibration_steps": 8} if precision == "int8" else {}
        if "check_parity" in inspect.signature(export_tflite).parameters:
            kwargs["check_parity"] = False  # the exporter's own tests cover parity; keep this fast
        data, used = export_tflite(model, precision, **kwargs).tflite, "project"
    else:
        data, used = _plain_export(model, precision), "plain"
    atomic_write_bytes(str(path), bytes(data))
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="FILE.tflite", help="where to write the model")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8", help="weights precision (default: %(default)s)")
    parser.add_argument("--input-size", type=int, default=65, metavar="N", help="side of the square input (default: %(default)s)")
    parser.add_argument(
        "--plain", action="store_true", help="use the plain TFLiteConverter even if convert/export.py exists"
    )
    args = parser.parse_args(argv)
    from common.cli import fail
    from common.files import check_output_path

    try:
        check_output_path(args.out)  # before the model is built and converted
        used = export_tiny(args.out, args.precision, args.input_size, use_project_exporter=not args.plain)
    except ValueError as error:  # the output path, or an input size the model cannot take
        return fail(error)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes) with the {used} exporter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
