"""ksac-runtime: segment images with a `.tflite` file of the KSAC edge model zoo, without TensorFlow.

    from ksac_runtime import Segmenter

    segmenter = Segmenter("model_int8.tflite", threads=2)
    labels = segmenter.segment(rgb)            # uint8 H x W class ids at the image's own size
    picture = segmenter.overlay(rgb, labels)   # the image in the class colours, a legend below
    print(segmenter.description.label_names, segmenter.last_timing.total_ms)

The command `ksac-segment` (`python -m ksac_runtime`) does the same for image files, a video or a camera.

What it depends on: numpy, ai-edge-litert (LiteRT), flatbuffers (reading the model's description from
its metadata) and opencv-python-headless (image files, video, the legend's text). One import namespace,
`ksac_runtime`. The toolkit that trains and exports the models (ksac-edge-zoo) runs its own inference
through these same modules.

Modules: `segmenter` (Segmenter), `runtime` (TFLiteModel: LiteRT on the CPU or the GPU accelerator),
`preprocess` (THE letterbox preprocessing), `description` (the model description and its JSON schema),
`palette` (class colours, overlay, legend), `segment` (the command), and what the commands share:
`cli` (exit codes, `--json [FILE]`), `files` (atomic output files), `native_log` (LiteRT's stderr).
"""

from ksac_runtime.description import ModelDescription, read_description
from ksac_runtime.palette import class_colours, overlay, voc_palette
from ksac_runtime.runtime import GpuUnavailable, InvalidModel, TFLiteModel
from ksac_runtime.images import ImageError, read_rgb
from ksac_runtime.segmenter import Segmenter, Timing

# The one version of the wheel (ksac-runtime/pyproject.toml reads it from here).
__version__ = "0.1.0"

__all__ = [
    "GpuUnavailable",
    "ImageError",
    "InvalidModel",
    "ModelDescription",
    "Segmenter",
    "TFLiteModel",
    "Timing",
    "class_colours",
    "overlay",
    "read_description",
    "read_rgb",
    "voc_palette",
]
