"""THE inference preprocessing, at its earlier import path: it lives in `ksac_runtime.preprocess` (the
TensorFlow-free package that apps and boards install, `make runtime-wheel`); these are the same objects."""

from ksac_runtime.preprocess import (  # noqa: F401
    INFERENCE_PREPROCESSING,
    RESIZES,
    SUPPORTED,
    content_size,
    description_preprocessing,
    labels_for_image,
    letterbox_size,
    nearest_indices,
    preprocess,
    resize_bilinear,
    resize_nearest,
    resolve_preprocessing,
)
