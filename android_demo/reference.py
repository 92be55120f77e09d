"""The app's pre- and post-processing in numpy: the reference the Java core is tested against.

The Java core (`core/src/main/java/dev/ksaczoo/core/`) implements the same steps with the same
arithmetic, so `make_golden.py` output and the Java results agree bit for bit on the input tensor
and exactly on labels:

- `letterbox_size`: scale the image to fit the model input keeping its aspect ratio.
- `preprocess`: half-pixel-centre bilinear resize (OpenCV INTER_LINEAR on float input), image at the
  top-left, bottom/right padding with the mean colour, then x = (pixel - mean) / std on RGB.
- `labels_from_logits`: arg-max over classes (ties to the lowest index).
- `voc_palette`, `colorize`, `overlay`: the PASCAL VOC colour map and the alpha blend.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from training.palette import voc_palette  # noqa: F401  (the Java core copies this colour map)


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


def _sampling(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    s = np.clip(s, 0.0, src - 1)
    lo = np.floor(s).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    return lo, hi, s - lo


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of an HxWxC array, computed in float64 (no anti-aliasing)."""
    img = np.asarray(image, dtype=np.float64)
    y0, y1, fy = _sampling(img.shape[0], height)
    x0, x1, fx = _sampling(img.shape[1], width)
    fx = fx[None, :, None]
    fy = fy[:, None, None]
    top = (1.0 - fx) * img[y0][:, x0] + fx * img[y0][:, x1]
    bottom = (1.0 - fx) * img[y1][:, x0] + fx * img[y1][:, x1]
    return (1.0 - fy) * top + fy * bottom


def preprocess(image_rgb: np.ndarray, input_hw: Sequence[int], normalization: dict[str, Any]) -> tuple[np.ndarray, tuple[int, int]]:
    """The model input for an RGB uint8 image: float32 [1, H, W, 3] and the (height, width) of the image inside it."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    mean = np.broadcast_to(np.asarray(normalization["mean"], dtype=np.float64), (3,))
    std = np.broadcast_to(np.asarray(normalization["std"], dtype=np.float64), (3,))
    in_h, in_w = int(input_hw[0]), int(input_hw[1])
    content_h, content_w, _ = letterbox_size(image.shape[:2], (in_h, in_w))
    resized = resize_bilinear(image, content_h, content_w)
    out = np.zeros((1, in_h, in_w, 3), dtype=np.float32)  # padding: the mean colour, 0 once normalised
    out[0, :content_h, :content_w] = ((resized - mean) / std).astype(np.float32)
    return out, (content_h, content_w)


def labels_from_logits(logits: np.ndarray) -> np.ndarray:
    """Arg-max over the last axis as uint8 (first index wins ties, as in the Java core)."""
    logits = np.asarray(logits)
    if logits.shape[-1] > 256:
        raise ValueError(f"{logits.shape[-1]} classes do not fit a uint8 label map")
    return np.argmax(logits, axis=-1).astype(np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """RGB image of a label map."""
    labels = np.asarray(labels)
    palette = voc_palette(max(256, int(labels.max(initial=0)) + 1)) if palette is None else palette
    return palette[labels]


def overlay(image_rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5, transparent_label: int = 0) -> np.ndarray:
    """round(alpha * colour + (1 - alpha) * pixel), round half up; `transparent_label` pixels keep the image."""
    colours = colorize(labels).astype(np.float64)
    blended = np.floor(alpha * colours + (1.0 - alpha) * np.asarray(image_rgb, dtype=np.float64) + 0.5)
    out = np.clip(blended, 0, 255).astype(np.uint8)
    keep = np.asarray(labels) == transparent_label
    out[keep] = np.asarray(image_rgb)[keep]
    return out
