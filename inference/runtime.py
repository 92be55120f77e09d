"""The LiteRT runtime, at its earlier import path: it lives in `ksac_runtime.runtime` (the TensorFlow-free
package that apps and boards install, `make runtime-wheel`); these are the same objects, not a copy."""

from ksac_runtime.runtime import (  # noqa: F401
    DEVICES,
    QUANTIZED_DTYPES,
    GpuUnavailable,
    InvalidModel,
    TensorInfo,
    TFLiteModel,
    accelerator_reason,
    check_input,
    dequantize,
    import_runtime,
    peak_rss_kb,
    quantize,
    random_input,
)
