"""Segments one image: writes a colour overlay (with a legend naming each class present) and the raw label PNG beside it.

Example:
    python evaluation/predict.py --model runs/latest/model.keras --image photo.jpg --out overlay.png
    # -> overlay.png and overlay_labels.png (palette PNG whose pixel values are the class indices)

The colours and the legend are the runtime's (`ksac_runtime.palette`: VOC's colour map, a class named for
a colour drawn in it); a `.tflite` file's labels are those `ksac-segment` computes (tests/test_runtime.py).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Sequence

import zoo  # noqa: E402,F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

import numpy as np  # noqa: E402

from inference.preprocess import RESIZES, content_size, description_preprocessing, labels_for_image  # noqa: E402
from data.datasets import DatasetError, read_image  # noqa: E402
from ksac_runtime.images import encode_png  # noqa: E402
from ksac_runtime.palette import class_colours, voc_palette  # noqa: E402,F401  (voc_palette: re-exported)
from ksac_runtime.palette import overlay as overlay_with_legend  # noqa: E402
from evaluation.predictors import Predictor, load_predictor  # noqa: E402
from data.transforms import eval_inputs  # noqa: E402
from common.files import atomic_write_bytes  # noqa: E402
from common.cli import check_output_flag, fail  # noqa: E402


def predict_image(predictor: Predictor, image: np.ndarray, resize: str | None = None) -> np.ndarray:
    """uint8 HxW labels for a uint8 RGB image, at the image's own size.

    The image gets THE inference preprocessing (as on the phone); the model's labels are cropped to
    the letterboxed content and resized back with centre-aligned nearest neighbour, as the Java
    `Postprocessor.labelsForImage` does. `resize="stretch"` stretches instead, as MediaPipe does.
    """
    desc = predictor.description
    preprocessing = dict(description_preprocessing(desc), **({"resize": resize} if resize else {}))
    x, _ = eval_inputs(image, None, predictor.input_size, desc.normalization, preprocessing)
    labels = predictor.predict_labels(x[None])[0]
    return labels_for_image(labels, content_size(image.shape[:2], predictor.input_size, preprocessing), image.shape[:2])


def overlay(image: np.ndarray, labels: np.ndarray, label_names: Sequence[str] | None = None, alpha: float = 0.5) -> np.ndarray:
    """The image with every non-background pixel blended with its class colour, a legend naming each class
    present below it (`ksac_runtime.palette.overlay`, as `ksac-segment` draws it)."""
    return overlay_with_legend(image, labels, label_names, alpha=alpha)


def encode_png_rgb(image: np.ndarray) -> bytes:
    return encode_png(image)


def encode_label_png(labels: np.ndarray, label_names: Sequence[str] | None = None) -> bytes:
    """A palette PNG (the class colours of `label_names`, VOC's for VOC) whose pixel values are the class
    indices, as VOC stores masks."""
    from PIL import Image

    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(class_colours(label_names)[:256].reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def labels_path(out: str) -> str:
    """Where the raw label PNG goes: beside `out`, named `<stem>_labels.png`."""
    stem, _ = os.path.splitext(out)
    return stem + "_labels.png"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python evaluation/predict.py", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a .keras model or a .tflite file")
    p.add_argument("--image", required=True, help="input image (any format OpenCV reads)")
    p.add_argument("--out", required=True, help="overlay PNG to write; the label PNG is written beside it as <stem>_labels.png")
    p.add_argument("--resize", choices=RESIZES, help="letterbox (the model's recorded contract, default; what the "
                   "Android app does) or stretch (to the input size, aspect not kept: what MediaPipe's ImageSegmenter does)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad input: common/cli.py)."""
    args = parse_args(argv)
    try:
        for out in (args.out, labels_path(args.out)):
            check_output_flag("--out", out)  # before the model runs
        image = read_image(args.image)
        predictor = load_predictor(args.model)
        description_preprocessing(predictor.description)  # an unknown preprocessing is refused before running
    except (DatasetError, OSError, ValueError) as err:
        return fail(err)
    labels = predict_image(predictor, image, args.resize)
    names = predictor.description.label_names
    # Encode both first, then write: an error leaves neither file half-written.
    overlay_png, labels_png = encode_png_rgb(overlay(image, labels, names)), encode_label_png(labels, names)
    atomic_write_bytes(args.out, overlay_png)
    atomic_write_bytes(labels_path(args.out), labels_png)
    found = [names[i] if i < len(names) else str(i) for i in np.unique(labels)]
    print(f"wrote {args.out} and {labels_path(args.out)}; classes: {', '.join(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
