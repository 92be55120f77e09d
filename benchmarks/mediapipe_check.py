"""Our exports in MediaPipe Tasks' ImageSegmenter, against our own LiteRT prediction.

    python -m benchmarks.mediapipe_check runs/latest/model_int8.tflite [--num-images 8] [--json [FILE]]

runs the file in the REAL MediaPipe (mediapipe 1.2.3 in its own virtualenv, `make mediapipe-venv`:
it cannot share one with tensorflow-model-optimization) and prints the labels it reports and, on
how many pixels its category mask equals ours:
- `agreement_input_size`: images at the model's input size, so that neither side resizes: MediaPipe
  against the arg-max of LiteRT's logits (same file, same pixels);
- `agreement_stretch`: non-square images as each consumer feeds them: MediaPipe STRETCHES the
  image to the input, our tools (`evaluation/predict.py`, `evaluation/evaluate.py`, the Android core)
  LETTERBOX it (the contract in `ksac_runtime/preprocess.py`);
- `agreement_padded`: the same images, padded to a square with the mean colour before MediaPipe and
  its mask cropped back (docs/mediapipe-and-web.md's recipe for the letterbox contract in MediaPipe);
- `agreement_both_stretched`: the same images stretched on both sides (our `--resize stretch`), so
  that only the two resampling implementations differ.
Images come from the data the model was trained on (its description's `data`; synthetic if none).
No TensorFlow here (LiteRT, numpy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Mapping

import numpy as np

from common.cli import USER_ERROR, WORK_FAILED, add_json_flag, check_json_path, fail, json_to_stdout, write_json
from inference.description import ModelDescription

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "benchmarks", "mediapipe_client.py")
DEFAULT_PYTHON = os.path.join(ROOT, ".venv-mediapipe", "bin", "python")
INSTALL_HINT = "run `make mediapipe-venv` (mediapipe 1.2.3 in a virtualenv of its own) or set KSAC_MEDIAPIPE_PYTHON"
# The recipe (docs/mediapipe-and-web.md) pads with this colour: the mean (127.5), rounded, normalises to 0.004.
PAD_COLOUR = 128


class MediaPipeRefused(RuntimeError):
    """MediaPipe's ImageSegmenter would not load the file; the message is MediaPipe's."""


def mediapipe_python() -> str:
    """The Python of MediaPipe's virtualenv (KSAC_MEDIAPIPE_PYTHON, else .venv-mediapipe/bin/python)."""
    path = os.environ.get("KSAC_MEDIAPIPE_PYTHON") or DEFAULT_PYTHON
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MediaPipe's Python not found at {path}: {INSTALL_HINT}")
    return path


def segment_with_mediapipe(
    model: str, images: Mapping[str, np.ndarray], timeout: float = 300
) -> tuple[dict[str, np.ndarray], list[str]]:
    """MediaPipe ImageSegmenter's category masks (uint8, each image's size) and the labels it reports.

    Raises:
        MediaPipeRefused: MediaPipe did not load `model` (its message).
        FileNotFoundError: no MediaPipe virtualenv.
        RuntimeError: the client failed otherwise.
    """
    python = mediapipe_python()
    with tempfile.TemporaryDirectory(prefix="mediapipe-") as tmp:
        images_path, masks_path = os.path.join(tmp, "images.npz"), os.path.join(tmp, "masks.npz")
        np.savez(images_path, **{key: np.asarray(image, np.uint8) for key, image in images.items()})
        done = subprocess.run([python, CLIENT, os.path.abspath(model), images_path, masks_path],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if done.returncode == 3:
            raise MediaPipeRefused(done.stderr.strip().splitlines()[-1])
        if done.returncode != 0:
            raise RuntimeError(f"the MediaPipe client failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        with np.load(masks_path) as masks:
            return {key: masks[key] for key in masks.files}, list(summary["labels"])


def _val_images(description: ModelDescription, count: int) -> list[np.ndarray]:
    from data.datasets import open_dataset

    dataset = open_dataset(description.data or "synthetic", "val")
    return [dataset.load(i)[0] for i in range(min(count, len(dataset)))]


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """The image at the top-left of a square of the mean colour (the letterbox contract, for MediaPipe)."""
    h, w = image.shape[:2]
    side = max(h, w)
    out = np.full((side, side, 3), PAD_COLOUR, np.uint8)
    out[:h, :w] = image
    return out


def non_square_crops(images: list[np.ndarray]) -> list[np.ndarray]:
    """Crops alternating to landscape (3:5) and portrait (5:3), so that letterbox and stretch differ."""
    crops = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        crops.append(image[: max(1, h * 3 // 5)] if i % 2 == 0 else image[:, : max(1, w * 3 // 5)])
    return crops


def check(model: str, count: int = 6, non_square: bool = True) -> dict[str, Any]:
    """Runs `model` in MediaPipe and in LiteRT (our contract) and reports the agreement (see module doc);
    `non_square=False`: the input-size comparison and the labels only."""
    from inference.preprocess import resize_bilinear
    from evaluation.predict import predict_image
    from evaluation.predictors import TFLitePredictor

    ours = TFLitePredictor(model, threads=1)
    description = ours.description
    in_h, in_w = ours.input_size
    base = _val_images(description, count)
    at_size = {f"size_{i}": np.clip(np.round(resize_bilinear(im, in_h, in_w)), 0, 255).astype(np.uint8) for i, im in enumerate(base)}
    crops = {f"crop_{i}": im for i, im in enumerate(non_square_crops(base))} if non_square else {}
    padded = {f"padded_{i}": pad_to_square(im) for i, im in enumerate(crops.values())}
    masks, labels = segment_with_mediapipe(model, {**at_size, **crops, **padded})

    def agreement(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
        equal = sum(int((a == b).sum()) for a, b in pairs)
        return equal / sum(a.size for a, _ in pairs)

    ours_at_size = [predict_image(ours, im) for im in at_size.values()]  # at the input size: no resize
    result: dict[str, Any] = {
        "file": model,
        "model": description.name,
        "precision": description.precision,
        "input_size": [in_h, in_w],
        "mediapipe_labels": labels,
        "description_labels": list(description.label_names),
        "images": len(base),
        # Classes in our label maps at the input size: a check that varies proves more than one label everywhere.
        "classes_in_masks": len(np.unique(np.concatenate([m.ravel() for m in ours_at_size]))),
        "agreement_input_size": agreement(list(zip(ours_at_size, [masks[k] for k in at_size]))),
        "agreement_stretch": None,
        "agreement_padded": None,
        "agreement_both_stretched": None,
        "crop_sizes": [list(im.shape[:2]) for im in crops.values()],
    }
    if crops:
        ours_crops = [predict_image(ours, im) for im in crops.values()]
        ours_stretched = [predict_image(ours, im, resize="stretch") for im in crops.values()]
        padded_masks = [masks[f"padded_{i}"][: im.shape[0], : im.shape[1]] for i, im in enumerate(crops.values())]
        result["agreement_stretch"] = agreement(list(zip(ours_crops, [masks[k] for k in crops])))
        result["agreement_padded"] = agreement(list(zip(ours_crops, padded_masks)))
        # Both stretched (our `--resize stretch`): what is left is each side's resampling.
        result["agreement_both_stretched"] = agreement(list(zip(ours_stretched, [masks[k] for k in crops])))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mediapipe_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("file", help="a .tflite exported by convert/to_tflite.py")
    parser.add_argument("--num-images", type=int, default=6, metavar="N",
                        help="val images per comparison (default 6; formerly --images N, still accepted)")
    parser.add_argument("--images", type=int, dest="num_images", help=argparse.SUPPRESS)  # the count's earlier name
    add_json_flag(parser, "the result", instead="the text")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num-images must be positive, got {args.num_images}")
    try:
        check_json_path(args.json)
    except ValueError as error:
        parser.error(str(error))
    try:
        result = check(args.file, args.num_images)
    except (MediaPipeRefused, RuntimeError, subprocess.TimeoutExpired) as error:  # the check failed: exit 1
        return fail(error, WORK_FAILED)
    except (FileNotFoundError, ValueError) as error:  # the file, or no MediaPipe virtualenv: exit 2
        return fail(error, USER_ERROR)
    if json_to_stdout(args.json):
        write_json(args.json, result)
        return 0
    print(f"{result['file']}: {result['model']} {result['precision']} at {result['input_size'][0]}x{result['input_size'][1]}")
    print(f"MediaPipe labels ({len(result['mediapipe_labels'])}): {', '.join(result['mediapipe_labels'])}")
    print(f"category mask = LiteRT arg-max, images at input size:           {100 * result['agreement_input_size']:.3f}%")
    print(f"non-square, MediaPipe stretches / we letterbox:                  {100 * result['agreement_stretch']:.3f}%")
    print(f"non-square, MediaPipe on the image padded to a square (docs/mediapipe-and-web.md):  {100 * result['agreement_padded']:.3f}%")
    print(f"non-square, both stretch (our --resize stretch):                 {100 * result['agreement_both_stretched']:.3f}%")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
