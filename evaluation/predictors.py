"""One interface over a saved `.keras` model and an exported `.tflite` file.

Both take a float32 NHWC batch already normalised (see `data.transforms`)
at `predictor.input_size` and return per-pixel logits or labels.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from inference.description import ModelDescription


class Predictor:
    """Common base: `description`, `input_size`, `predict_labels`, `predict_logits`."""

    description: ModelDescription
    path: str

    @property
    def input_size(self) -> tuple[int, int]:
        return self.description.input_size

    @property
    def num_classes(self) -> int:
        return self.description.num_classes

    @property
    def has_logits(self) -> bool:
        return True

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 [n, h, w, classes] logits for a float32 [n, h, w, 3] normalised batch."""
        raise NotImplementedError

    def predict_labels(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [n, h, w] labels for a float32 [n, h, w, 3] normalised batch."""
        return np.argmax(self.predict_logits(batch), axis=-1).astype(np.uint8)


class KerasPredictor(Predictor):
    """A `.keras` model saved by training/train.py (or any zoo model)."""

    def __init__(self, path_or_model: Any) -> None:
        from zoo import describe
        from zoo.saving import load_keras_model

        if isinstance(path_or_model, str):
            self.path = path_or_model
            self.model = load_keras_model(path_or_model)
        else:
            self.path = getattr(path_or_model, "name", "model")
            self.model = path_or_model
        try:
            self.description = describe(self.model)
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        return np.asarray(self.model(batch, training=False), np.float32)


class TFLitePredictor(Predictor):
    """A `.tflite` file exported by convert/to_tflite.py (batch 1), run with LiteRT on the CPU."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        """Loads `path` and its embedded description.

        Args:
            path: the `.tflite` file.
            threads: CPU threads for LiteRT (default: every core).
        """
        from inference.description import read_description
        from inference.runtime import TFLiteModel

        self.path = path
        self.description = read_description(path)
        self.model = TFLiteModel(path, threads=threads or os.cpu_count() or 1)

    @property
    def has_logits(self) -> bool:
        return self.description.output != "labels"

    def _run_one(self, image: np.ndarray) -> np.ndarray:
        # The runtime quantises the input and dequantises int8/uint8/int16 logits; a
        # label map (uint8 without a scale) comes back as it is.
        return self.model.run(image[None])[0]

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        if not self.has_logits:
            raise ValueError(
                f"{self.path} outputs labels (argmax inside the model), not logits; "
                "multi-scale/flip inference needs a model exported with logits output"
            )
        return np.stack([self._run_one(image).astype(np.float32) for image in np.asarray(batch)])

    def predict_labels(self, batch: np.ndarray) -> np.ndarray:
        if self.has_logits:
            return super().predict_labels(batch)
        return np.stack([np.asarray(self._run_one(image)).reshape(self.input_size) for image in np.asarray(batch)]).astype(np.uint8)


def load_predictor(path: str) -> Predictor:
    """A Predictor for a `.keras` model or a `.tflite` file (chosen by extension)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".tflite"):
        return TFLitePredictor(path)
    if path.endswith(".keras"):
        return KerasPredictor(path)
    raise ValueError(f"unsupported model file {path}: expected a .keras or .tflite file")
