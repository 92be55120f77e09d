#!/usr/bin/env python3
"""Writes golden vectors for the Java core tests and the app's on-device test.

    python -m android_demo.make_golden --model runs/latest/model_int8.tflite [--out DIR]

For a synthetic test image (landscape, so the letterbox both resizes and pads) it writes into
`--out` (default `android_demo/core/src/test/resources/golden/`):

- `image.png` and `image_rgb.bin`: the image (PNG, and raw uint8 RGB rows);
- `input_f32.bin`: the preprocessed model input, raw little-endian float32 [1, H, W, 3]
  (see `android_demo/reference.py` for the exact recipe the Java core repeats);
- `labels.png` (class indices as 8-bit grey), `labels_u8.bin` (raw uint8 [1, H, W]) and
  `labels_color.png` (VOC colours): the label map that LiteRT in Python produced;
- `logits_f32.bin`: raw little-endian float32 [1, H, W, C], when the model outputs logits;
- `golden.json`: the manifest (file names, shapes, the model's metadata and SHA-256, the palette).

Everything is at the model's input size, so the folder stays small for small models.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from android_demo import reference
from android_demo.model_files import parser_with_model_flag, resolve_model
from inference.description import read_description  # no TensorFlow needed to read it

DEFAULT_OUT = Path(__file__).resolve().parent / "core" / "src" / "test" / "resources" / "golden"
LARGE_BYTES = 4 * 1024 * 1024


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 test image: gradients, a disc, a bar and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack(
        [255.0 * xx / max(width - 1, 1), 255.0 * yy / max(height - 1, 1), 128.0 + 100.0 * np.sin(xx / 5.0 + yy / 7.0)],
        axis=-1,
    )
    disc = (yy - 0.55 * height) ** 2 + (xx - 0.35 * width) ** 2 < (0.25 * min(height, width)) ** 2
    image[disc] = (220.0, 40.0, 60.0)
    bar = (xx > 0.65 * width) & (xx < 0.8 * width) & (yy > 0.1 * height)
    image[bar] = (30.0, 60.0, 200.0)
    image += rng.normal(0.0, 6.0, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def run_litert(model_path: Path, inputs: np.ndarray) -> np.ndarray:
    """The model's single output for `inputs`, run on the CPU with one thread by `inference.runtime`.

    The app feeds float32, so the file must have a float32 input; int8 logits come back
    dequantised to float32, a uint8 label map as it is.
    """
    from inference.runtime import TFLiteModel

    # One thread: the golden vectors are the reference the Java core must reproduce exactly.
    model = TFLiteModel(model_path, device="cpu", threads=1)
    if len(model.inputs) != 1:
        raise ValueError(f"{model_path}: expected one input tensor, found {len(model.inputs)}")
    if len(model.outputs) != 1:
        raise ValueError(f"{model_path}: expected one output tensor, found {len(model.outputs)}")
    if model.input.dtype != np.float32:
        raise ValueError(f"{model_path}: input is {model.input.dtype.name}; the app feeds float32 (export with float I/O)")
    if model.input.shape != inputs.shape:
        raise ValueError(f"{model_path}: input shape {model.input.shape} does not match its metadata {inputs.shape}")
    return model.run(inputs)


def _png(image: np.ndarray) -> bytes:
    import cv2

    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def make_golden(model: str | None, out_dir: str | Path = DEFAULT_OUT) -> dict[str, Any]:
    """Writes the golden files for `model` (default: newest int8 export) into `out_dir`; returns the manifest."""
    from common.files import atomic_write_bytes, atomic_write_json, check_output_path

    check_output_path(str(out_dir), folder=True)
    model_path = resolve_model(model)
    description = read_description(model_path)  # its errors name the file
    in_h, in_w = description.input_size
    output_kind = description.output or "logits"
    num_classes = description.num_classes

    image = synthetic_image(in_h, in_w * 3 // 2)
    inputs, (content_h, content_w) = reference.preprocess(image, (in_h, in_w), description.normalization)
    output = run_litert(model_path, inputs)
    if output_kind == "logits":
        if output.shape != (1, in_h, in_w, num_classes) or output.dtype != np.float32:
            raise ValueError(f"{model_path}: logits output {output.dtype}{list(output.shape)}, expected float32[1,{in_h},{in_w},{num_classes}]")
        labels = reference.labels_from_logits(output)
    else:
        if output.shape != (1, in_h, in_w) or output.dtype != np.uint8:
            raise ValueError(f"{model_path}: labels output {output.dtype}{list(output.shape)}, expected uint8[1,{in_h},{in_w}]")
        labels = output

    out = Path(out_dir)
    files: dict[str, bytes] = {
        "image.png": _png(image),
        "image_rgb.bin": image.tobytes(),
        "input_f32.bin": inputs.astype("<f4").tobytes(),
        "labels.png": _png(labels[0]),
        "labels_u8.bin": labels.astype(np.uint8).tobytes(),
        "labels_color.png": _png(reference.colorize(labels[0])),
    }
    if output_kind == "logits":
        files["logits_f32.bin"] = output.astype("<f4").tobytes()
    stale = out / "logits_f32.bin"
    if output_kind != "logits" and stale.exists():
        stale.unlink()
    for name, data in files.items():
        atomic_write_bytes(str(out / name), data)

    manifest = {
        "format": 1,
        "model": {
            "file": model_path.name,
            "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
            "bytes": model_path.stat().st_size,
        },
        "metadata": description.to_dict(),
        "image": {"png": "image.png", "rgb_u8": "image_rgb.bin", "height": int(image.shape[0]), "width": int(image.shape[1])},
        "input": {"f32": "input_f32.bin", "shape": [1, in_h, in_w, 3], "content_size": [content_h, content_w]},
        "labels": {"png": "labels.png", "u8": "labels_u8.bin", "color_png": "labels_color.png", "shape": [1, in_h, in_w]},
        "logits": {"f32": "logits_f32.bin", "shape": [1, in_h, in_w, num_classes]} if output_kind == "logits" else None,
        "palette": reference.voc_palette(num_classes).tolist(),
        "classes_present": sorted(int(c) for c in np.unique(labels)),
        "producer": "ai_edge_litert.interpreter.Interpreter (Python), num_threads=1",
    }
    atomic_write_json(str(out / "golden.json"), manifest)
    total = sum(len(d) for d in files.values())
    if total > LARGE_BYTES:
        print(f"warning: the golden files take {total / 1e6:.1f} MB; commit goldens of small models only", file=sys.stderr)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = parser_with_model_flag(__doc__)
    parser.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT), help="golden folder to write (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from common.cli import fail

    args = build_parser().parse_args(argv)
    try:
        manifest = make_golden(args.model, args.out)
    except (FileNotFoundError, ValueError) as err:  # exit 2 (common/cli.py): a missing or unreadable file, a bad output
        return fail(err)
    print(
        f"wrote golden vectors for {manifest['model']['file']} into {args.out}: "
        f"input {manifest['input']['shape']}, classes present {manifest['classes_present']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
