#!/usr/bin/env python3
"""Fixtures for the web demo's browser test, and the Python LiteRT prediction they are compared with.

    .venv/bin/python web_demo/tests/reference.py --out web_demo/test-output/fixtures

writes into OUT:
- `model_fp32.tflite`, `model_int8.tflite`: the tiny untrained mobilenetv2_ksac at 65x65 of
  `android_demo/tiny_model.py` (standard TFLite Metadata included; its labels vary over the image);
- `at_size_<i>.png`: synthetic val images resized to the model's input size (65x65), so that
  neither the browser nor Python resizes: the asserted agreement;
- `nonsquare.png`: a 200x120 image (both sides letterbox and resize it): reported agreement;
- `bench_256.png`: a 256x256 val image for latency measurements (no expected mask);
- `bad.tflite` (text, not a TFLite file), `bad.png` (bytes that are no image) and
  `nometa.tflite` (a valid TFLite model without the metadata MediaPipe needs), for the error checks;
- `expected.json`: per model, its labels (from the file's description) and per image the uint8
  label map of `evaluation.predict.predict_image` (TFLitePredictor, LiteRT on the CPU) at the
  image's own size under THE preprocessing contract (letterbox, top-left, mean padding).

Models that exist already are kept (they take ~30 s each to make); `--fresh` remakes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

INPUT_SIZE = 65
AT_SIZE_IMAGES = 6
NONSQUARE_HW = (120, 200)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_images(out: str) -> dict[str, np.ndarray]:
    """The fixture images (RGB uint8), written as PNG; returns them by file name."""
    import cv2

    from inference.preprocess import resize_bilinear
    from data.datasets import open_dataset

    val = open_dataset("synthetic", "val")
    images: dict[str, np.ndarray] = {}
    for i in range(AT_SIZE_IMAGES):
        image, _ = val.load(i)
        images[f"at_size_{i}.png"] = _to_uint8(resize_bilinear(image, INPUT_SIZE, INPUT_SIZE))
    image, _ = val.load(AT_SIZE_IMAGES)
    images["nonsquare.png"] = _to_uint8(resize_bilinear(image, *NONSQUARE_HW))
    # A val image at its own size (256x256), for the latency of real-size files (`web_test.mjs --bench`).
    bench = val.load(AT_SIZE_IMAGES + 1)[0]
    cv2.imwrite(os.path.join(out, "bench_256.png"), np.ascontiguousarray(bench[..., ::-1]))
    for name, rgb in images.items():
        if not cv2.imwrite(os.path.join(out, name), np.ascontiguousarray(rgb[..., ::-1])):
            raise RuntimeError(f"could not write {name}")
    return images


def make_models(out: str, fresh: bool) -> None:
    from android_demo.tiny_model import export_tiny

    for precision in ("fp32", "int8"):
        path = os.path.join(out, f"model_{precision}.tflite")
        if fresh or not os.path.isfile(path):
            start = time.time()
            used = export_tiny(path, precision, INPUT_SIZE)
            print(f"reference: wrote {path} ({used} exporter, {time.time() - start:.0f} s)", flush=True)


def make_bad_files(out: str) -> None:
    with open(os.path.join(out, "bad.tflite"), "w") as f:
        f.write("this is a text file, not a TFLite model\n")
    with open(os.path.join(out, "bad.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"no image here" * 8)
    path = os.path.join(out, "nometa.tflite")
    if not os.path.isfile(path):
        import tf_keras as keras

        from convert.export import plain_converter

        inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
        with open(path, "wb") as f:
            f.write(plain_converter(model).convert())


def reference(out: str, images: dict[str, np.ndarray]) -> dict:
    from evaluation.predict import predict_image
    from evaluation.predictors import TFLitePredictor

    expected: dict = {}
    for precision in ("fp32", "int8"):
        model = f"model_{precision}.tflite"
        predictor = TFLitePredictor(os.path.join(out, model), threads=1)
        desc = predictor.description
        entry = {"labels": list(desc.label_names), "input_size": list(predictor.input_size), "images": {}}
        for name, rgb in images.items():
            start = time.perf_counter()
            labels = predict_image(predictor, rgb)
            entry["images"][name] = {
                "width": int(rgb.shape[1]),
                "height": int(rgb.shape[0]),
                "mask": labels.astype(int).reshape(-1).tolist(),
                "classes": sorted(int(c) for c in np.unique(labels)),
                "python_ms": (time.perf_counter() - start) * 1000,
            }
        expected[model] = entry
    return expected


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the fixtures (served by the test beside the page)")
    p.add_argument("--fresh", action="store_true", help="remake the models even if they exist")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    make_models(args.out, args.fresh)
    make_bad_files(args.out)
    images = make_images(args.out)
    expected = reference(args.out, images)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f)
    for model, entry in expected.items():
        classes = {name: e["classes"] for name, e in entry["images"].items()}
        print(f"reference: {model}: {len(entry['labels'])} labels; classes per image {classes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
