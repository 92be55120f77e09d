"""THE inference preprocessing: how an image of any size becomes the model input, defined once.

Every consumer follows this module: `evaluation/evaluate.py` and `evaluation/predict.py` (through
`data.transforms.eval_inputs`), int8 calibration and export parity checks, the Android
reference (`android_demo/reference.py`) and so the golden vectors, and the Java core
(`android_demo/core/.../Preprocessor.java`, `Letterbox.java`, `Postprocessor.java`), which repeats
this arithmetic bit for bit. The contract is recorded in every model's description as
`ModelDescription.preprocessing` (`INFERENCE_PREPROCESSING` below):

- resize "letterbox": scale = min(in_h / h, in_w / w); content size floor(side * scale + 0.5),
  clamped to [1, input side]; the aspect ratio is kept.
- interpolation "bilinear_half_pixel": source = (dst + 0.5) * (src / dst) - 0.5, clamped to the
  image, bilinear between the two neighbours, computed in float64, no anti-aliasing when shrinking.
- anchor "top_left": the content sits at the top-left of the input.
- pad "mean": bottom/right padding with the mean colour, i.e. 0 once normalised.
- then x = (pixel - mean) / std per RGB channel (float64 arithmetic, stored as float32).

Labels go back to the image with centre-aligned nearest neighbour from the content region
(`labels_for_image`), as the Java `Postprocessor.labelsForImage` does; masks are brought to the
content size the same way (`resize_nearest`).

No fast path through OpenCV: `cv2.resize(INTER_LINEAR)` on float input is half-pixel bilinear but
computes its coordinates in float32 and differs from this arithmetic by up to ~1e-11 (float64 input)
or ~3e-5 (float32 input) per pixel, which changes float32 bits of the golden vectors. The numpy code
below interpolates separably (columns for the needed rows, then rows), which is the same sequence
of float64 operations per output element as the straightforward 2-D form, so it is exact.

numpy only: this module runs where TensorFlow is not installed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # ksac_runtime.description imports this module (the contract's values)
    from ksac_runtime.description import ModelDescription

# The contract: scale to fit keeping the aspect ratio (content side floor(side * scale + 0.5)),
# half-pixel-centre bilinear without anti-aliasing, image at the top-left, bottom/right padding
# with the mean colour (0 once normalised). zoo.build_model records it in every model's description.
INFERENCE_PREPROCESSING: dict[str, str] = {
    "resize": "letterbox",
    "interpolation": "bilinear_half_pixel",
    "anchor": "top_left",
    "pad": "mean",
}
# The values this module implements, per key. resize "stretch" (to the input size, aspect not kept) is
# what MediaPipe's ImageSegmenter does; our tools use it only when asked (`--resize stretch` of
# evaluate.py and predict.py), to measure what MediaPipe users get. The Android core letterboxes only.
SUPPORTED: dict[str, tuple[str, ...]] = {
    **{key: (value,) for key, value in INFERENCE_PREPROCESSING.items()},
    "resize": ("letterbox", "stretch"),
}
RESIZES = SUPPORTED["resize"]


def resolve_preprocessing(spec: Mapping[str, Any] | None) -> dict[str, str]:
    """The preprocessing a description asks for, checked: None (files exported before the key existed)
    means the contract; a missing field means its default; an unknown field or value is a ValueError."""
    if spec is None:
        return dict(INFERENCE_PREPROCESSING)
    if not isinstance(spec, Mapping):
        raise ValueError(f"preprocessing must be a mapping like {INFERENCE_PREPROCESSING}, got {spec!r}")
    unknown = sorted(set(spec) - set(SUPPORTED))
    if unknown:
        raise ValueError(f"unknown preprocessing field(s) {unknown}; known: {sorted(SUPPORTED)}")
    resolved = {**INFERENCE_PREPROCESSING, **{str(k): v for k, v in spec.items()}}
    for key, value in resolved.items():
        if value not in SUPPORTED[key]:
            raise ValueError(
                f"unsupported preprocessing {key}={value!r}; this version implements {key}="
                + " or ".join(repr(v) for v in SUPPORTED[key])
            )
    return resolved


def description_preprocessing(description: ModelDescription | None) -> dict[str, str]:
    """`resolve_preprocessing` of a model description's preprocessing (None: the contract; a version-1
    description without one was given the contract when read)."""
    return resolve_preprocessing(None if description is None else description.preprocessing)


def letterbox_size(image_hw: Sequence[int], input_hw: Sequence[int]) -> tuple[int, int, float]:
    """(content_height, content_width, scale) of an image fitted into the model input, aspect kept."""
    h, w = int(image_hw[0]), int(image_hw[1])
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    if min(h, w, in_h, in_w) < 1:
        raise ValueError(f"sizes must be positive, got image {h}x{w} and input {in_h}x{in_w}")
    scale = min(in_w / w, in_h / h)
    content_w = min(max(math.floor(w * scale + 0.5), 1), in_w)
    content_h = min(max(math.floor(h * scale + 0.5), 1), in_h)
    return content_h, content_w, scale


def content_size(image_hw: Sequence[int], input_hw: Sequence[int], preprocessing: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """(height, width) of the image inside the model input: the letterbox content, or the whole
    input for resize "stretch"."""
    if resolve_preprocessing(preprocessing)["resize"] == "stretch":
        letterbox_size(image_hw, input_hw)  # the same size checks
        return int(input_hw[0]), int(input_hw[1])
    content_h, content_w, _ = letterbox_size(image_hw, input_hw)
    return content_h, content_w


def _sampling(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    s = np.clip(s, 0.0, src - 1)
    lo = np.floor(s).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    return lo, hi, s - lo


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of an HxWxC array, computed in float64 (no anti-aliasing).

    Per output element: top = (1 - fx) * p[y0, x0] + fx * p[y0, x1], bottom likewise on row y1,
    value = (1 - fy) * top + fy * bottom, exactly as the Java core computes it.
    """
    img = np.asarray(image)
    y0, y1, fy = _sampling(img.shape[0], height)
    x0, x1, fx = _sampling(img.shape[1], width)
    # Interpolate along x only on the source rows that are read, then along y. The pixels are gathered
    # before they are widened to float64 (the same values), and the products and sums are taken in place:
    # the same float64 operations per element (IEEE products and sums commute exactly), with fewer and
    # smaller temporaries (2.3x faster on a 480x640 image into a 513 input).
    rows, inverse = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    src = img[rows]
    fx = fx[None, :, None]
    across = np.take(src, x0, axis=1).astype(np.float64)
    across *= 1.0 - fx
    right = np.take(src, x1, axis=1).astype(np.float64)
    right *= fx
    across += right
    top = np.take(across, inverse[:height], axis=0)
    bottom = np.take(across, inverse[height:], axis=0)
    fy = fy[:, None, None]
    top *= 1.0 - fy
    bottom *= fy
    top += bottom
    return top


def nearest_indices(dst: int, src: int) -> np.ndarray:
    """For each of `dst` pixels the nearest of `src` (centre alignment): min(floor((d + 0.5) * src / dst), src - 1)."""
    return np.minimum(np.floor((np.arange(dst, dtype=np.float64) + 0.5) * src / dst).astype(np.int64), src - 1)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-aligned nearest-neighbour resize of an HxW[xC] array (label maps, masks)."""
    array = np.asarray(array)
    if array.shape[:2] == (height, width):
        return array
    return array[nearest_indices(height, array.shape[0])][:, nearest_indices(width, array.shape[1])]


def labels_for_image(labels: np.ndarray, content_hw: Sequence[int], image_hw: Sequence[int]) -> np.ndarray:
    """Un-letterboxes a model-resolution HxW label map: the content region, nearest-resized to the image size."""
    ch, cw = int(content_hw[0]), int(content_hw[1])
    return resize_nearest(np.asarray(labels)[:ch, :cw], int(image_hw[0]), int(image_hw[1]))


def preprocess(
    image_rgb: np.ndarray,
    input_hw: Sequence[int],
    normalization: Mapping[str, Any],
    preprocessing: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The model input for an RGB uint8 image: float32 [1, H, W, 3] and the (height, width) of the image inside it.

    `preprocessing`: the description's "preprocessing" (None: the contract); anything else is a ValueError.
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    mean = np.broadcast_to(np.asarray(normalization["mean"], dtype=np.float64), (3,))
    std = np.broadcast_to(np.asarray(normalization["std"], dtype=np.float64), (3,))
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    content_h, content_w = content_size(image.shape[:2], (in_h, in_w), preprocessing)
    resized = resize_bilinear(image, content_h, content_w)  # a new float64 array: normalised in place
    resized -= mean
    resized /= std
    out = np.zeros((1, in_h, in_w, 3), dtype=np.float32)  # padding: the mean colour, 0 once normalised
    out[0, :content_h, :content_w] = resized  # rounded to float32 as astype would
    return out, (content_h, content_w)
