"""The paper's augmentation keeps image and mask aligned and pads masks with 255; the eval transform."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training.preprocess import eval_inputs, normalize, train_augment

NORM = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.float32)


def coded_sample(h=48, w=40, block=12, seed=0):
    """An image whose colour encodes its label: the mask can be read back from the pixels."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, len(COLOURS), (-(-h // block), -(-w // block)))
    mask = np.kron(coarse, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
    mask[:, : w // 4] = 1  # the left quarter is always red: a flip is visible
    image = COLOURS[mask].astype(np.uint8)
    return image, mask


def decode(image_norm):
    pixels = image_norm * 127.5 + 127.5
    dist = ((pixels[..., None, :] - COLOURS) ** 2).sum(-1)
    return dist.argmin(-1)


@pytest.mark.parametrize("seed", range(8))
def test_augmentation_keeps_image_and_mask_aligned(seed):
    image, mask = coded_sample()
    crop = 65
    x, y = train_augment(tf.constant(image), tf.constant(mask), tf.constant([7, seed]), crop, NORM)
    x, y = x.numpy(), y.numpy()
    assert x.shape == (crop, crop, 3) and y.shape == (crop, crop) and y.dtype == np.int32
    valid = y != 255
    assert valid.any()
    # Nearest (mask) vs bilinear (image) differ only on block edges.
    agreement = (decode(x)[valid] == y[valid]).mean()
    assert agreement > 0.9, agreement
    # Padding: the 48x40 image is smaller than the crop at most scales; padded pixels are
    # 255 in the mask and the mean pixel (0 after normalisation) in the image.
    assert np.allclose(x[~valid], 0.0)


def test_augmentation_is_deterministic_and_varied():
    image, mask = coded_sample(h=200, w=200)
    outs = [train_augment(tf.constant(image), tf.constant(mask), tf.constant([1, s]), 65, NORM)[1].numpy() for s in (0, 0, 1, 2)]
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2]) or not np.array_equal(outs[0], outs[3])


def test_flip_happens_about_half_the_time():
    image, mask = coded_sample(h=64, w=64, block=64, seed=3)
    mask[:] = 0
    mask[:, :16] = 1
    image = COLOURS[mask].astype(np.uint8)
    flips = 0
    for s in range(40):
        x, y = train_augment(tf.constant(image), tf.constant(mask), tf.constant([0, s]), 64, NORM)
        y = y.numpy()
        cols = np.nonzero((y == 1).any(0))[0]
        rows_valid = (y != 255).any(0)
        flips += int(cols.size > 0 and cols.mean() > np.nonzero(rows_valid)[0].mean())
    assert 8 < flips < 32


def test_eval_inputs_fit_pad_and_normalise():
    image = np.full((100, 50, 3), 200, np.uint8)
    mask = np.ones((100, 50), np.uint8)
    x, m = eval_inputs(image, mask, (65, 65), NORM)
    assert x.shape == (65, 65, 3) and x.dtype == np.float32 and m.shape == (65, 65)
    assert np.allclose(x[:65, :32], normalize(np.full((1, 1, 3), 200, np.uint8), NORM)[0, 0], atol=1e-5)  # fitted: 65 x 32.5
    assert np.all(x[:, 34:] == 0) and np.all(m[:, 34:] == 255) and np.all(m[:, :32] == 1)
    x, m = eval_inputs(image, None, (129, 129), NORM)
    assert m is None and x.shape == (129, 129, 3)
