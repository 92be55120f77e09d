"""Input preprocessing: normalisation, THE evaluation transform, the paper's training augmentation.

`eval_inputs` is shared by evaluation, prediction, int8 calibration and export parity
checks; it is `inference.preprocess` (the app's preprocessing, defined once) plus the mask, so
every consumer sees the same pixels as the phone. `train_augment` is the paper's
augmentation as TensorFlow ops driven by a stateless seed, so that a sample's
augmentation is a function of (run seed, sample position) and a resumed run
sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from inference.preprocess import preprocess, resize_nearest

IGNORE_LABEL = 255
# The paper / DeepLab: random scale 0.5 to 2.0 in steps of 0.25.
TRAIN_SCALES = tuple(0.5 + 0.25 * i for i in range(7))


def _mean_std(normalization: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(normalization["mean"], np.float32).reshape(3)
    std = np.asarray(normalization["std"], np.float32).reshape(3)
    return mean, std


def normalize(image: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """uint8 RGB pixels to the model's float32 input: (pixel - mean) / std."""
    mean, std = _mean_std(normalization)
    return ((np.asarray(image, np.float32) - mean) / std).astype(np.float32)


def eval_inputs(
    image: np.ndarray,
    mask: np.ndarray | None,
    input_size: tuple[int, int],
    normalization: dict[str, Any],
    preprocessing: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The evaluation transform: THE inference preprocessing (`inference.preprocess.preprocess`) on
    the image, so evaluation sees exactly the pixels the app feeds the model.

    The image is letterboxed (aspect kept, half-pixel bilinear without anti-aliasing, top-left,
    padded with the mean pixel, i.e. 0 after normalisation) and normalised; the mask is resized with
    centre-aligned nearest neighbour to the same content size and padded with 255 (ignored). With
    resize "stretch" both fill the whole input instead.

    Args:
        preprocessing: the model description's "preprocessing" (None: the contract); an unknown
            value is a ValueError.
    Returns:
        (float32 HxWx3 normalised image, uint8 HxW mask or None) with HxW = input_size.
    """
    height, width = int(input_size[0]), int(input_size[1])
    x, (h, w) = preprocess(image, (height, width), normalization, preprocessing)
    out_mask = None
    if mask is not None:
        out_mask = np.full((height, width), IGNORE_LABEL, np.uint8)
        out_mask[:h, :w] = resize_nearest(mask, h, w)
    return x[0], out_mask


def train_augment(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    crop_size: int,
    normalization: dict[str, Any],
) -> tuple[tf.Tensor, tf.Tensor]:
    """The paper's training augmentation, deterministic in `seed` (int32/int64 [2]).

    Horizontal flip with p = 0.5, random scale from {0.5, 0.75, ..., 2.0}, pad to at
    least `crop_size` (image with the mean, i.e. 0 after normalisation; mask with
    255), random `crop_size` x `crop_size` crop.

    Args:
        image: uint8 [h, w, 3] RGB.
        mask: uint8 [h, w].
    Returns:
        (float32 [crop, crop, 3] normalised image, int32 [crop, crop] labels).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    mean, std = _mean_std(normalization)
    image = (tf.cast(image, tf.float32) - mean) / std
    mask = tf.cast(mask, tf.int32)[..., None]

    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    mask = tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask)

    scale_index = tf.random.stateless_uniform([], seeds[1], 0, len(TRAIN_SCALES), dtype=tf.int32)
    scale = tf.gather(tf.constant(TRAIN_SCALES, tf.float32), scale_index)
    size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask, size, method="nearest")

    # Pad: the image is already normalised, so 0 is the mean pixel; the mask pads with 255.
    height = tf.maximum(size[0], crop_size)
    width = tf.maximum(size[1], crop_size)
    image = tf.image.pad_to_bounding_box(image, 0, 0, height, width)
    mask = tf.image.pad_to_bounding_box(mask - IGNORE_LABEL, 0, 0, height, width) + IGNORE_LABEL

    top = tf.random.stateless_uniform([], seeds[2], 0, height - crop_size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[3], 0, width - crop_size + 1, dtype=tf.int32)
    image = image[top : top + crop_size, left : left + crop_size]
    mask = mask[top : top + crop_size, left : left + crop_size, 0]
    return tf.ensure_shape(image, [crop_size, crop_size, 3]), tf.ensure_shape(mask, [crop_size, crop_size])
