"""The real MediaPipe Tasks client for our tests: ImageSegmenter on a `.tflite` file, category masks out.

    .venv-mediapipe/bin/python benchmarks/mediapipe_client.py MODEL IMAGES.npz OUT.npz

IMAGES.npz holds uint8 RGB arrays (any sizes); OUT.npz gets one uint8 category mask per image, under
the same key, at that image's size (MediaPipe stretches the image to the model input and the mask
back). It prints one JSON line: {"labels": [...], "images": N}. A model MediaPipe refuses exits 3
with its message on stderr.

It runs in its own virtualenv (`make mediapipe-venv`: mediapipe 1.2.3 cannot share one with
tensorflow-model-optimization), so it imports nothing of the project: numpy and mediapipe only.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model, images_path, out_path = argv
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python import vision

    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=model),
        running_mode=vision.RunningMode.IMAGE,
        output_category_mask=True,
        output_confidence_masks=False,
    )
    try:
        segmenter = vision.ImageSegmenter.create_from_options(options)
    except Exception as error:  # MediaPipe raises RuntimeError/ValueError with the reason
        print(f"MediaPipe refused {model}: {error}", file=sys.stderr)
        return 3
    masks = {}
    with segmenter, np.load(images_path) as images:
        for key in images.files:
            rgb = np.ascontiguousarray(images[key], dtype=np.uint8)
            result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            masks[key] = np.array(result.category_mask.numpy_view(), dtype=np.uint8).reshape(rgb.shape[:2])
        labels = list(segmenter.labels)
    np.savez(out_path, **masks)
    print(json.dumps({"labels": labels, "images": len(masks)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
