"""`Segmenter`: a `.tflite` file of this project in, an RGB image in, its labels at the image's own size out.

    from ksac_runtime import Segmenter

    segmenter = Segmenter("model_int8.tflite", threads=2)
    labels = segmenter.segment(rgb)          # uint8 H x W class ids, H x W = the image's size
    picture = segmenter.overlay(rgb, labels) # the image in the class colours, with a legend
    segmenter.last_timing.total_ms           # the last call's milliseconds, by stage

What the file's description says (input size, normalisation, the letterbox contract, class names) is read
from its metadata: nothing to configure. The steps are the ones the Android app and the web page follow:
THE letterbox preprocessing (`ksac_runtime.preprocess`), the model in LiteRT (`ksac_runtime.runtime`),
the arg-max over the letterboxed content region, brought back to the image with centre-aligned nearest
neighbour (`labels_for_image`). The toolkit's `evaluation/predict.py` computes the same labels (tested).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ksac_runtime.description import ModelDescription, read_description
from ksac_runtime.images import ImageError
from ksac_runtime.palette import DEFAULT_ALPHA, class_colours
from ksac_runtime.palette import overlay as overlay_labels
from ksac_runtime.preprocess import description_preprocessing, labels_for_image, preprocess
from ksac_runtime.runtime import InvalidModel, TFLiteModel, dequantize, quantize


@dataclass(frozen=True)
class Timing:
    """Milliseconds of one call, by stage.

    Attributes:
        preprocess_ms: the letterbox and the normalisation (numpy).
        inference_ms: the model in LiteRT: writing the input, running it, reading the output.
        postprocess_ms: the arg-max over the content region and the labels brought back to the image's size
            (for `logits`: cutting the content region out and dequantising).
    """

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        """The whole call."""
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms

    def to_dict(self) -> dict[str, float]:
        """The stages and the total, rounded to microseconds (for JSON reports)."""
        return {name: round(value, 3) for name, value in (("preprocess", self.preprocess_ms), ("inference", self.inference_ms),
                                                           ("postprocess", self.postprocess_ms), ("total", self.total_ms))}  # fmt: skip


def check_image(image: object) -> np.ndarray:
    """`image` if it is a uint8 H x W x 3 RGB array; ImageError saying what it is otherwise.

    No conversion on purpose: a float image in 0..1, a BGR image read by OpenCV or an RGBA one would give
    plausible but wrong labels, so the caller converts, knowing what the image is.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected the image as a numpy array (uint8, H x W x 3, RGB), got {type(image).__name__}")
    what = f"{image.dtype.name} array of shape {tuple(image.shape)}"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ImageError(f"expected an RGB image (uint8, H x W x 3), got a single-channel {what}: "
                         "repeat its channel, e.g. np.dstack([gray] * 3)")  # fmt: skip
    if image.ndim == 3 and image.shape[2] == 4:
        raise ImageError(f"expected an RGB image (uint8, H x W x 3), got a 4-channel {what}: drop the alpha channel, image[..., :3]")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ImageError(f"expected an RGB image (uint8, H x W x 3), got a {what}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected an RGB image of uint8 pixels (0..255), got a {what}: convert it, "
                         "e.g. (image * 255).round().astype(np.uint8) for floats in 0..1")  # fmt: skip
    return image


def argmax_labels(scores: np.ndarray) -> np.ndarray:
    """uint8 arg-max over the last axis, the first index winning ties (as the Java core and the toolkit).

    Integer scores (an int8 file's raw output) give the arg-max of their dequantised values: dequantising,
    (q - zero_point) * scale with scale > 0, keeps the order and the ties; skipping it saves about 5 ms at
    513 x 513 x 21 (on top of the arg-max's 9 ms, 2-core AMD EPYC).
    """
    scores = np.asarray(scores)
    if scores.shape[-1] > 256:
        raise ValueError(f"{scores.shape[-1]} classes do not fit a uint8 label map")
    return np.argmax(scores, axis=-1).astype(np.uint8)


class Segmenter:
    """A `.tflite` file exported by this project, ready to segment images (see the module's docstring).

    Attributes:
        description: the file's `ModelDescription` (name, input size, classes and label names, precision, ...).
        model: the `TFLiteModel` that runs it.
        input_size: (height, width) of the model input.
        label_names: one name per class id.
        colours: uint8 [classes, 3] RGB of each class in overlays (`ksac_runtime.palette.class_colours`).
        last_timing: the `Timing` of the last `segment` or `logits` call (None before the first).
    """

    def __init__(self, model_path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu") -> None:
        """Loads the file and its description.

        Args:
            model_path: the `.tflite` file (exported by `convert/to_tflite.py`, which stores the description).
            threads: CPU threads for LiteRT (None: every core of the machine, `os.cpu_count()`).
            device: "cpu" (LiteRT's interpreter with XNNPACK) or "gpu" (LiteRT's GPU accelerator, the whole
                model on it or an error; not in a process that has imported TensorFlow).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a TFLite model, or one without this project's description (`InvalidModel` for a
                file LiteRT cannot read); threads < 1; an unknown device.
            GpuUnavailable: device "gpu" where LiteRT's GPU accelerator does not load or does not take every op
                (a RuntimeError, whose `reason` is the accelerator's own words).
        """
        path = os.fspath(model_path)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a whole number of at least 1 (or None: every core), got {threads!r}")
        self.path = path
        # The description first: a file that is no model, or not ours, gets the reader's clear message.
        self.description: ModelDescription = read_description(path)
        self._preprocessing = description_preprocessing(self.description)
        self.model = TFLiteModel(path, device=device, threads=threads or os.cpu_count() or 1)
        source, target = self.model.input, self.model.output
        if len(self.model.inputs) != 1 or len(source.shape) != 4 or source.shape[0] != 1 or source.shape[3] != 3:
            raise InvalidModel(f"{path}: expected one input of shape [1, H, W, 3], got {[list(t.shape) for t in self.model.inputs]}")
        self.input_size: tuple[int, int] = (int(source.shape[1]), int(source.shape[2]))
        self._outputs_labels = self.description.output == "labels" or len(target.shape) == 3
        self.label_names: tuple[str, ...] = tuple(self.description.label_names)
        self.colours = class_colours(self.label_names)
        self.last_timing: Timing | None = None

    @property
    def device(self) -> str:
        """The device LiteRT runs on: "cpu" or "gpu"."""
        return self.model.device

    @property
    def threads(self) -> int:
        """The CPU threads LiteRT was given."""
        return self.model.threads

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int], float, float]:
        """(the raw first output without its batch axis, the content size, preprocess ms, inference ms)."""
        image = check_image(image)
        started = time.perf_counter()
        x, content = preprocess(image, self.input_size, self.description.normalization, self._preprocessing)
        prepared = time.perf_counter()
        # As `TFLiteModel.run`, less the dequantisation of the output: the arg-max does not need it.
        self.model.set_input_raw(0, quantize(x, self.model.input))
        self.model.invoke()
        raw = self.model.get_output_raw(0)[0]
        ran = time.perf_counter()
        return raw, content, 1000 * (prepared - started), 1000 * (ran - prepared)

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The class of every pixel of `image`.

        Args:
            image: uint8 H x W x 3 RGB (OpenCV reads BGR: convert with cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).

        Returns:
            uint8 H x W class ids at the image's own size (index into `label_names`).

        Raises:
            ImageError: the image is not a uint8 H x W x 3 array (a ValueError).
        """
        raw, (ch, cw), pre_ms, run_ms = self._run(image)
        started = time.perf_counter()
        content = raw[:ch, :cw]
        labels = content.astype(np.uint8, copy=False) if self._outputs_labels else argmax_labels(content)
        labels = labels_for_image(labels, (ch, cw), image.shape[:2])
        self.last_timing = Timing(pre_ms, run_ms, 1000 * (time.perf_counter() - started))
        return labels

    def logits(self, image: np.ndarray) -> np.ndarray:
        """The model's scores for `image`, over the letterboxed content region at the model's resolution.

        Args:
            image: uint8 H x W x 3 RGB.

        Returns:
            float32 [h, w, classes], (h, w) the size the image had inside the model input (the padding cut
            off; `letterbox_size`); int8 outputs dequantised. Their arg-max, brought back to the image's size
            with `ksac_runtime.preprocess.labels_for_image`, is `segment(image)`.

        Raises:
            ImageError: the image is not a uint8 H x W x 3 array.
            ValueError: the file outputs labels (arg-max inside the model, `--output labels`), not scores.
        """
        if self._outputs_labels:
            raise ValueError(f"{self.path} outputs labels (arg-max inside the model), not logits; use segment()")
        raw, (ch, cw), pre_ms, run_ms = self._run(image)
        started = time.perf_counter()
        scores = np.asarray(dequantize(raw[:ch, :cw], self.model.output), np.float32)
        self.last_timing = Timing(pre_ms, run_ms, 1000 * (time.perf_counter() - started))
        return scores

    def overlay(self, image: np.ndarray, labels: np.ndarray, *, alpha: float = DEFAULT_ALPHA, legend: str = "below") -> np.ndarray:
        """The image blended with the class colours, with a legend naming each class present.

        Args:
            image: uint8 H x W x 3 RGB.
            labels: its labels (`segment(image)`).
            alpha: the colour's share of a blended pixel (background pixels keep the image).
            legend: "below" (under the image: the result is taller), "inside" (over the top-left corner:
                the image's size, for video) or "none".

        Returns:
            uint8 RGB.
        """
        return overlay_labels(check_image(image), labels, self.label_names, alpha=alpha, legend=legend, colours=self.colours)

    def class_shares(self, labels: np.ndarray) -> dict[str, float]:
        """Percent of the pixels of each class present, largest first, by class name."""
        counts = np.bincount(np.asarray(labels).ravel(), minlength=len(self.label_names))
        total = max(1, int(counts.sum()))
        order = sorted((i for i in range(len(counts)) if counts[i]), key=lambda i: (-counts[i], i))
        return {self.name_of(i): round(100.0 * counts[i] / total, 2) for i in order}

    def name_of(self, label: int) -> str:
        """The name of class id `label` ("class N" past the file's names)."""
        return self.label_names[label] if 0 <= label < len(self.label_names) else f"class {label}"

    def __repr__(self) -> str:
        return f"Segmenter({self.path!r}, threads={self.threads}, device={self.device!r})"
