"""Evaluates a `.keras` model or a `.tflite` file: per-class IoU and mIoU, optionally multi-scale + flip.

Example:
    python evaluation/evaluate.py --model runs/latest/model.keras --json
    python evaluation/evaluate.py --model model_int8.tflite --data voc:/data/VOC2012 --multi-scale --flip
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Iterable, Sequence

import zoo  # noqa: E402,F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from inference.preprocess import RESIZES, description_preprocessing, resolve_preprocessing  # noqa: E402
from data.datasets import DatasetError, open_dataset  # noqa: E402
from evaluation.metrics import ConfusionMatrix  # noqa: E402
from evaluation.predictors import Predictor, load_predictor  # noqa: E402
from data.transforms import eval_inputs  # noqa: E402
from common.cli import add_json_flag, check_json_path, fail, json_to_stdout, write_json  # noqa: E402

# DeepLab's multi-scale inference scales.
MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
BATCH = 4


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an HxWxC float array with any C (cv2 handles at most 512 channels at once)."""
    if array.shape[:2] == (height, width):
        return array
    parts = [cv2.resize(array[..., i : i + 512], (width, height), interpolation=cv2.INTER_LINEAR) for i in range(0, array.shape[-1], 512)]
    parts = [p[..., None] if p.ndim == 2 else p for p in parts]
    return np.concatenate(parts, -1)


def tiled_logits(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """Logits of a normalised HxWx3 image of any size: zero-padded (= mean pixel) tiles of the model's input size."""
    th, tw = predictor.input_size
    h, w = image.shape[:2]
    rows, cols = -(-h // th), -(-w // tw)
    canvas = np.zeros((rows * th, cols * tw, 3), np.float32)
    canvas[:h, :w] = image
    tiles = [canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] for r in range(rows) for c in range(cols)]
    outputs = np.concatenate([predictor.predict_logits(np.stack(tiles[i : i + BATCH])) for i in range(0, len(tiles), BATCH)])
    full = np.zeros((rows * th, cols * tw, outputs.shape[-1]), np.float32)
    for k, out in enumerate(outputs):
        r, c = divmod(k, cols)
        full[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = out
    return full[:h, :w]


def multi_scale_labels(predictor: Predictor, image: np.ndarray, scales: Sequence[float], flip: bool) -> np.ndarray:
    """Labels from class probabilities averaged over `scales` (and horizontal flips), at the image's size."""
    if not predictor.has_logits:
        raise ValueError(f"{predictor.path} outputs labels only; --multi-scale/--flip need a model with logits output")
    h, w = image.shape[:2]
    total = None
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = image if scale == 1 else cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        variants = [scaled] + ([scaled[:, ::-1].copy()] if flip else [])
        for i, variant in enumerate(variants):
            logits = tiled_logits(predictor, variant)
            if i == 1:
                logits = logits[:, ::-1]
            probs = _softmax(_resize(np.ascontiguousarray(logits), h, w))
            total = probs if total is None else total + probs
    return np.argmax(total, -1).astype(np.uint8)


def _batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(
    predictor_or_path: Predictor | str,
    data_spec: str | None,
    split: str = "val",
    multi_scale: bool = False,
    flip: bool = False,
    limit: int | None = None,
    resize: str | None = None,
) -> dict[str, Any]:
    """mIoU of a model on a dataset split.

    Args:
        predictor_or_path: a Predictor or a `.keras`/`.tflite` path.
        data_spec: a `--data` spec; None: the data recorded in the model (`data`), else synthetic.
        split: "train" or "val".
        multi_scale: average probabilities over scales 0.5 to 1.75 (step 0.25).
        flip: also average over horizontally flipped inputs.
        limit: evaluate only the first `limit` images.
        resize: "stretch" to measure what MediaPipe's ImageSegmenter gets (the image stretched to the
            input size); None or "letterbox": the model's recorded contract.

    Returns:
        {"miou": percent, "per_class": {name: percent or None}, "pixel_accuracy": percent,
         "images": n, "model": path, "data": spec, "split": split, "multi_scale": bool, "flip": bool, "seconds": s}
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    predictor = load_predictor(predictor_or_path) if isinstance(predictor_or_path, str) else predictor_or_path
    desc = predictor.description
    spec = data_spec or desc.data or "synthetic"
    dataset = open_dataset(spec, split)
    num_classes = desc.num_classes
    if dataset.num_classes > num_classes:
        raise DatasetError(f"--data {spec} has {dataset.num_classes} classes but the model predicts {num_classes}")
    normalization = desc.normalization
    preprocessing = description_preprocessing(desc)  # THE inference preprocessing; unknown values refused here
    if resize:
        preprocessing = resolve_preprocessing(dict(preprocessing, resize=resize))
    size = predictor.input_size
    count = len(dataset) if limit is None else min(limit, len(dataset))
    cm = ConfusionMatrix(num_classes)
    start = time.time()
    samples = (dataset.load(i) for i in range(count))
    prepared = (eval_inputs(image, mask, size, normalization, preprocessing) for image, mask in samples)
    for batch in _batches(prepared, BATCH):
        images = np.stack([x for x, _ in batch])
        masks = np.stack([m for _, m in batch])
        if multi_scale or flip:
            scales = MULTI_SCALES if multi_scale else (1.0,)
            labels = np.stack([multi_scale_labels(predictor, x, scales, flip) for x in images])
        else:
            labels = predictor.predict_labels(images)
        cm.update(masks, labels)
    iou = cm.per_class_iou()
    names = list(desc.label_names)
    return {
        "miou": cm.miou(),
        "per_class": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
        "pixel_accuracy": cm.pixel_accuracy(),
        "images": count,
        "model": getattr(predictor, "path", None),
        "data": spec,
        "split": split,
        "multi_scale": multi_scale,
        "flip": flip,
        "resize": preprocessing["resize"],
        "seconds": round(time.time() - start, 2),
    }


def format_report(result: dict[str, Any]) -> str:
    """A human-readable per-class table and the mIoU."""
    width = max(len(n) for n in result["per_class"])
    lines = [f"{result['model']} on {result['data']} ({result['split']}, {result['images']} images"
             f"{', multi-scale' if result['multi_scale'] else ''}{', flip' if result['flip'] else ''})"]
    for name, iou in result["per_class"].items():
        lines.append(f"  {name:<{width}}  {'   n/a' if iou is None else f'{iou:6.2f}'}")
    lines.append(f"mIoU {result['miou']:.2f}%  (pixel accuracy {result['pixel_accuracy']:.2f}%)")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python evaluation/evaluate.py",
        description="Per-class IoU and mIoU of a .keras model or .tflite file. Images get the app's preprocessing "
        "(ksac_runtime/preprocess.py: letterboxed into the model's input size, half-pixel bilinear, padded with the "
        "mean), so the mIoU is the one the phone computes; masks are resized nearest and padded with 255.",
    )
    p.add_argument("--model", required=True, help="a .keras model (training/train.py) or a .tflite file (convert/to_tflite.py)")
    p.add_argument("--data", help="dataset spec as in train.py; default: --config's data.train, else the data the model was trained on, else synthetic")
    p.add_argument("--config", metavar="FILE", help="an experiment config (e.g. the run's config.yaml, or a recipe by name: paper/mobilenetv2_ksac): evaluate on its data.train spec's --split")
    p.add_argument("--split", default="val", choices=("train", "val"), help="split to evaluate")
    p.add_argument("--multi-scale", action="store_true", help="average over scales 0.5, 0.75, ..., 1.75 (DeepLab); needs logits output")
    p.add_argument("--flip", action="store_true", help="also average over horizontally flipped inputs; needs logits output")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--resize", choices=RESIZES, help="letterbox (the model's recorded contract, default; what the app and "
                   "predict.py do) or stretch (to the input size, aspect not kept: what MediaPipe's ImageSegmenter does)")
    add_json_flag(p, "the result (one object: miou, per_class, ...)")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be at least 1, got {args.limit}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad input: common/cli.py)."""
    args = parse_args(argv)
    from configs import ConfigError, find_config, read_file

    try:
        check_json_path(args.json)
        data = args.data or (((read_file(find_config(args.config)).get("data") or {}).get("train")) if args.config else None)
        result = evaluate(args.model, data, args.split, args.multi_scale, args.flip, args.limit, resize=args.resize)
    except (ConfigError, DatasetError, OSError, ValueError) as err:
        return fail(err)
    if not json_to_stdout(args.json):
        print(format_report(result))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
