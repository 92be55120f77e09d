"""Image files in and out: RGB uint8 arrays read with OpenCV, PNGs encoded in memory.

The toolkit reads its images the same way (`data.datasets.read_image` calls `read_rgb`), so the runtime
and `evaluation/predict.py` see the same pixels of the same file. OpenCV is imported when first needed:
`import ksac_runtime` stays light.
"""

from __future__ import annotations

import os

import numpy as np


class ImageError(ValueError):
    """An image of the wrong kind, or a file that is not an image (the message says what it is and what to do)."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether OpenCV recognises the file's format by its first bytes (read before any image is decoded)."""
    import cv2

    return bool(cv2.haveImageReader(os.fspath(path)))


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as uint8 H x W x 3 RGB (any format OpenCV reads; grey and RGBA images become RGB).

    Raises:
        FileNotFoundError: no such file.
        ImageError: the file cannot be decoded (corrupt, or not an image).
    """
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    data = np.fromfile(path, np.uint8)  # not cv2.imread: it cannot open some non-ASCII paths on Windows
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(f"cannot decode image (corrupt or not an image): {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB (H x W x 3) or grey (H x W) image."""
    import cv2

    image = np.asarray(image)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    if not ok:
        raise RuntimeError(f"PNG encoding of a {image.dtype.name} {image.shape} image failed")
    return data.tobytes()


def read_labels_png(path: str | os.PathLike[str]) -> np.ndarray:
    """A label PNG written by `ksac-segment` (8-bit grey, pixel = class id) as uint8 H x W."""
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    labels = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.dtype != np.uint8:
        raise ImageError(f"{path} is not an 8-bit grey PNG of class ids")
    return labels
