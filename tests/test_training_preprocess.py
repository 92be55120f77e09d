"""The paper's augmentation keeps image and mask aligned and pads masks with 255; the eval transform
is THE inference preprocessing (the app's pixels) plus the mask."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from android_demo import reference
from inference import preprocess as inference_preprocess
from data.transforms import eval_inputs, normalize, train_augment

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
    # Fitted: 65 x floor(32.5 + 0.5) = 65 x 33, at the top-left.
    assert np.allclose(x[:65, :33], normalize(np.full((1, 1, 3), 200, np.uint8), NORM)[0, 0], atol=1e-6)
    assert np.all(x[:, 33:] == 0) and np.all(m[:, 33:] == 255) and np.all(m[:, :33] == 1)
    x, m = eval_inputs(image, None, (129, 129), NORM)
    assert m is None and x.shape == (129, 129, 3)


@pytest.mark.parametrize(
    "image_hw, input_hw",
    [((48, 80), (33, 33)), ((90, 37), (65, 49)), ((21, 34), (65, 65)), ((13, 29), (40, 97)), ((200, 120), (65, 80)), ((33, 20), (33, 40))],
)
def test_eval_inputs_image_is_the_apps_input(image_hw, input_hw):
    """Evaluation sees exactly the pixels the phone feeds the model (shrinking and enlarging, non-square)."""
    rng = np.random.RandomState(sum(image_hw))
    image = rng.randint(0, 256, image_hw + (3,)).astype(np.uint8)
    mask = rng.randint(0, 21, image_hw).astype(np.uint8)
    norm = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
    x, m = eval_inputs(image, mask, input_hw, norm)
    expected, (h, w) = reference.preprocess(image, input_hw, norm)
    assert x.dtype == np.float32 and x.tobytes() == expected[0].tobytes()
    assert (h, w) == reference.letterbox_size(image_hw, input_hw)[:2]
    assert np.all(m[h:] == 255) and np.all(m[:, w:] == 255) and np.all(m[:h, :w] < 21)
    # The mask comes back to the image with the same nearest-neighbour rule the app uses for labels.
    if (h, w) == image_hw:
        assert np.array_equal(inference_preprocess.labels_for_image(m, (h, w), image_hw), mask)


def test_eval_mask_stays_aligned_with_the_image():
    image, mask = coded_sample(h=90, w=60, block=15)
    x, m = eval_inputs(image, mask, (49, 65), NORM)
    valid = m != 255
    assert valid.sum() > 0.5 * m.size
    assert (decode(x)[valid] == m[valid]).mean() > 0.9


def test_preprocessing_contract_is_in_every_description_and_unknown_values_are_refused(make_tiny_model):
    from inference.preprocess import INFERENCE_PREPROCESSING
    from zoo import describe

    assert describe(make_tiny_model("mobilenetv2_ksac")).preprocessing.to_dict() == INFERENCE_PREPROCESSING
    image = np.zeros((20, 30, 3), np.uint8)
    default, _ = eval_inputs(image, None, (16, 16), NORM)
    for ok in (None, {}, dict(INFERENCE_PREPROCESSING), {"pad": "mean"}):
        assert eval_inputs(image, None, (16, 16), NORM, ok)[0].tobytes() == default.tobytes()
    # No description (and version-1 files exported before the key existed, upgraded on reading): the contract.
    assert inference_preprocess.description_preprocessing(None) == INFERENCE_PREPROCESSING
    with pytest.raises(ValueError, match="squash"):
        eval_inputs(image, None, (16, 16), NORM, {**INFERENCE_PREPROCESSING, "resize": "squash"})
    with pytest.raises(ValueError, match="area"):
        inference_preprocess.resolve_preprocessing({"interpolation": "area"})
    with pytest.raises(ValueError, match="crop"):
        inference_preprocess.preprocess(image, (16, 16), NORM, {"crop": "centre"})


def test_stretch_fills_the_input_as_mediapipe_does():
    """resize "stretch" (MediaPipe's way, for measuring it): the image and mask fill the whole input."""
    image, mask = coded_sample(h=90, w=60, block=15)
    stretch = {**inference_preprocess.INFERENCE_PREPROCESSING, "resize": "stretch"}
    x, m = eval_inputs(image, mask, (49, 65), NORM, stretch)
    expected = (inference_preprocess.resize_bilinear(image, 49, 65) - 127.5) / 127.5
    assert x.tobytes() == expected.astype(np.float32).tobytes()
    assert np.all(m != 255) and (decode(x) == m).mean() > 0.9
    assert inference_preprocess.content_size((90, 60), (49, 65), stretch) == (49, 65)
    assert inference_preprocess.content_size((90, 60), (49, 65)) == (49, 33)  # letterbox: aspect kept
    labels = inference_preprocess.labels_for_image(m, (49, 65), (90, 60))
    assert labels.shape == (90, 60) and (labels == mask).mean() > 0.9


def test_inference_preprocess_does_not_import_tensorflow():
    code = "import sys, inference.preprocess; sys.exit('tensorflow' in sys.modules or 'tf_keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
