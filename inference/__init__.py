"""Running exported `.tflite` files: the LiteRT runtime (CPU and GPU), the one inference preprocessing and
the model description (runtime.py, preprocess.py, description.py: the same objects as `ksac_runtime`'s,
where they live), the GPU report (gpu.py) and LiteRT's ARM64 build under emulation (arm.py)."""
