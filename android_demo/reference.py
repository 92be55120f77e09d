"""The app's pre- and post-processing in numpy: the reference the Java core is tested against.

The Java core (`core/src/main/java/dev/ksaczoo/core/`) implements the same steps with the same
arithmetic, so `make_golden.py` output and the Java results agree bit for bit on the input tensor
and exactly on labels:

- `letterbox_size`, `resize_bilinear`, `preprocess`: THE inference preprocessing, imported from
  `ksac_runtime/preprocess.py` (scale to fit keeping the aspect ratio, half-pixel-centre bilinear without
  anti-aliasing, image at the top-left, bottom/right padding with the mean colour, then
  x = (pixel - mean) / std on RGB); evaluation uses the same code, so it sees the phone's pixels.
- `labels_from_logits`: arg-max over classes (ties to the lowest index).
- `voc_palette`, `colorize`, `overlay`: the PASCAL VOC colour map and the alpha blend.
"""

from __future__ import annotations

import numpy as np

# The preprocessing is defined once, in inference.preprocess; re-exported here under the app's names.
from inference.preprocess import letterbox_size, preprocess, resize_bilinear  # noqa: F401
from data.palette import voc_palette  # noqa: F401  (the Java core copies this colour map)


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
