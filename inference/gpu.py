"""A `.tflite` file on the LiteRT GPU accelerator, checked against LiteRT's CPU result and timed.

    python -m inference.gpu model_int8.tflite                 # does it run fully on the GPU? how close to CPU?
    python -m inference.gpu model_int8.tflite --runs 30       # ... and its latency there
    python -m inference.gpu model_fp32.tflite --enforce-f32   # fp32 compute instead of the default fp16

It prints one JSON object (see `gpu_report`), exit status 0, whether or not a GPU
accelerator loads: finding out is its job. A file that is not a model, or `--images`
(uint8 RGB images, preprocessed here as the model's description says) or `--inputs`
(float model inputs) that are not a .npy array fitting the model, is bad input, not
"no GPU": one `error:` line and exit status 2, nothing on stdout. This module needs only numpy and
ai-edge-litert: on a machine with a GPU, copy the `.tflite` files over, `pip install
ai-edge-litert numpy`, and run it from a checkout (or with `inference/` on the path);
no TensorFlow is involved.

Why a child process: the GPU accelerator (WebGPU over Vulkan in the pip wheel) and
TensorFlow do not share a process (loading it beside TensorFlow crashed with a
segmentation fault here), and a driver that crashes or hangs must take down the
child, not the export or the benchmark run. `gpu_report(path)` runs
`python -m inference.gpu` for the caller and parses its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from common.cli import USER_ERROR, fail

# Exit status of `python -m inference.gpu` for bad input (a file that is no model, --images that do not fit).
EXIT_BAD_INPUT = USER_ERROR
# "Selected adapter: llvmpipe (LLVM 15.0.6, 256 bits), arch=software, vendor=mesa, backend=Vulkan, adapterType=CPU / Software"
_ADAPTER_LINE = re.compile(r"Selected adapter: (?P<name>.*?), arch=.*?adapterType=(?P<type>[^\n]*)")
# The adapter's own type as LiteRT's WebGPU accelerator writes Dawn's wgpu::AdapterType: "Discrete GPU",
# "Integrated GPU", "CPU / Software" or "Other". On Vulkan, Dawn takes it from the device's
# VkPhysicalDeviceType, so "CPU / Software" is VK_PHYSICAL_DEVICE_TYPE_CPU: a CPU emulating a GPU
# (Mesa's llvmpipe, SwiftShader), whose timings say nothing about a GPU.
SOFTWARE_ADAPTER_TYPE = "CPU / Software"


class ImagesMismatch(ValueError):
    """Images to compare on that are not a [n, H, W, C] array fitting the model's input."""


def adapter_from_log(log: str) -> dict[str, Any]:
    """The adapter the WebGPU accelerator selected, from its log (all None when the log does not say).

    Returns:
        {"adapter": its name (Vulkan's deviceName, e.g. "NVIDIA H100 80GB HBM3"), "adapter_type": its
         own type ("Discrete GPU", "Integrated GPU", "CPU / Software", "Other"), "software": whether that
         type is a CPU, from the type alone (never from the name)}.
    """
    match = _ADAPTER_LINE.search(log)
    if not match:
        return {"adapter": None, "adapter_type": None, "software": None}
    adapter_type = match.group("type").strip()
    return {"adapter": match.group("name").strip(), "adapter_type": adapter_type,
            "software": adapter_type == SOFTWARE_ADAPTER_TYPE}  # fmt: skip


def smooth_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth float image in [-1, 1] of `shape` (NHWC): low-frequency waves, like a photo's large regions.

    A model's arg-max on white noise flips on tiny differences everywhere; on smooth
    input, as on real images, GPU and CPU differ only where two classes nearly tie.
    """
    rng = np.random.default_rng(seed)
    _, height, width, channels = shape
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (3, channels))
    freq = rng.uniform(1.0, 3.0, (2, channels))
    image = np.sin(2 * np.pi * freq[0] * x + phase[0]) * np.cos(2 * np.pi * freq[1] * y + phase[1])
    return image[None].astype(np.float32)


def _labels(output: np.ndarray) -> np.ndarray:
    """The label map of one output: arg-max over classes for logits, the map itself for a label output."""
    return np.argmax(output, axis=-1) if output.ndim == 4 else output


def compare(cpu_outputs: list[np.ndarray], gpu_outputs: list[np.ndarray]) -> dict[str, float | None]:
    """Arg-max agreement (percent of pixels) and, for float outputs, the max |difference|, GPU vs CPU."""
    same = total = 0
    max_diff = 0.0
    float_output = all(np.issubdtype(out.dtype, np.floating) and out.ndim == 4 for out in cpu_outputs)
    for cpu, gpu in zip(cpu_outputs, gpu_outputs):
        a, b = _labels(cpu), _labels(gpu)
        same += int((a == b).sum())
        total += a.size
        if float_output:
            max_diff = max(max_diff, float(np.abs(cpu.astype(np.float64) - gpu.astype(np.float64)).max()))
    return {
        "argmax_agreement": 100.0 * same / total if total else None,
        "max_abs_diff": max_diff if float_output else None,
    }


def check(
    path: str, images: np.ndarray | None = None, *, enforce_f32: bool = False, warmup: int = 0, runs: int = 0,
    rgb_images: np.ndarray | None = None,
) -> dict[str, Any]:
    """Loads `path` on the GPU accelerator (no CPU fallback), compares it with LiteRT CPU, times it (in-process).

    Args:
        path: the `.tflite` file.
        images: float inputs, [n, H, W, 3] at the model's input size (quantised at the
            edge as the model needs); default one smooth image.
        enforce_f32: fp32 arithmetic on the GPU instead of the accelerator's fp16 default.
        warmup, runs: untimed and timed runs on the GPU after the comparison (0: no timing).
        rgb_images: instead of `images`, uint8 RGB images [n, h, w, 3] of any size, given the
            preprocessing the file's description records (see `preprocessed`).

    Returns:
        See `gpu_report`.

    Raises:
        InvalidModel: LiteRT cannot read `path` (a ValueError; never reported as "no GPU").
        ImagesMismatch: `images` do not fit the model's input (a ValueError).
    """
    from inference.runtime import GpuUnavailable, TFLiteModel, peak_rss_kb

    # The CPU reference first: a file that is no model, or images that do not fit it, are bad
    # input whether or not a GPU loads, and are refused before any GPU work.
    cpu = TFLiteModel(path, device="cpu")
    if rgb_images is not None:
        images = preprocessed(path, np.asarray(rgb_images))
    batch = smooth_input(cpu.input.shape) if images is None else np.asarray(images)
    if batch.ndim != 4 or len(batch) == 0:
        raise ImagesMismatch(f"want [n, H, W, C] with n >= 1, got shape {list(batch.shape)}")
    try:
        cpu_outputs = [cpu.run(image[None]) for image in batch]
    except ValueError as error:  # the runtime's one input check: wrong size, channels or dtype
        raise ImagesMismatch(f"do not fit {path}: {error}") from error
    result: dict[str, Any] = {"precision": "fp32" if enforce_f32 else "fp16"}
    try:
        gpu = TFLiteModel(path, device="gpu", enforce_f32=enforce_f32, require_full_acceleration=False)
    except GpuUnavailable as error:
        # fully_accelerated False: an adapter loaded but refuses some ops; None: no adapter at all.
        return dict(result, available=error.fully_accelerated is False, fully_accelerated=error.fully_accelerated,
                    reason=error.reason, **adapter_from_log(error.log))  # fmt: skip
    result.update(available=True, fully_accelerated=gpu.fully_accelerated, **adapter_from_log(gpu.gpu_log))
    if not gpu.fully_accelerated:
        # Without CPU fallback a partly accelerated model does not run; say so instead of timing half of it.
        return dict(result, reason="not every op of the model runs on the GPU accelerator")
    gpu_outputs = [gpu.run(image[None]) for image in batch]
    result.update(compare(cpu_outputs, gpu_outputs), images=len(batch))
    if runs > 0:
        gpu.set_random_inputs(seed=0)
        for _ in range(warmup):
            gpu.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            gpu.invoke()  # waits for the GPU to finish
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000.0
        result.update(p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
                      mean_ms=float(ms.mean()), min_ms=float(ms.min()), runs=len(times), warmup=warmup)  # fmt: skip
    result["peak_rss_mb"] = peak_rss_kb() / 1024.0
    return result


def gpu_report(
    path: str,
    images: np.ndarray | None = None,
    *,
    enforce_f32: bool = False,
    warmup: int = 0,
    runs: int = 0,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """`check` in a child process (`python -m inference.gpu`), safe to call from a TensorFlow process.

    Returns:
        {"available": whether an accelerator loaded, "reason": why not / why it did not run,
         "fully_accelerated": True/False (None when none loaded), "adapter": e.g. "llvmpipe (LLVM 15.0.6,
         256 bits)", "adapter_type": the adapter's own type (see `adapter_from_log`), "software": True
         when that type is "CPU / Software" (a CPU-emulated adapter), "precision": "fp16" or "fp32" (GPU
         arithmetic), "argmax_agreement": percent of pixels whose arg-max equals LiteRT CPU's,
         "max_abs_diff": max |GPU - CPU| of float outputs, "images", and with `runs`: "p50_ms",
         "p90_ms", "mean_ms", "min_ms", "runs", "warmup", "peak_rss_mb"}.

    Raises:
        ValueError: bad input, in the child's words: `path` is not a model LiteRT can read, or
            `images` do not fit its input (a corrupt file is not reported as "no GPU").
    """
    with tempfile.TemporaryDirectory(prefix="ksac_gpu_") as folder:
        command = [sys.executable, "-m", "inference.gpu", os.fspath(path), "--warmup", str(warmup), "--runs", str(runs)]
        if enforce_f32:
            command.append("--enforce-f32")
        if images is not None:
            images_path = os.path.join(folder, "images.npy")
            np.save(images_path, np.asarray(images, np.float32))
            command += ["--inputs", images_path]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"available": False, "fully_accelerated": None, "reason": f"the GPU check did not finish within {timeout_s:.0f} s"}
    if done.returncode == EXIT_BAD_INPUT:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        raise ValueError(errors[-1][len("error: "):] if errors else f"the GPU check refused {path} (exit status 2)")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    from inference.runtime import accelerator_reason

    reason = accelerator_reason(done.stderr, f"the GPU child process exited with status {done.returncode}")
    return {"available": False, "fully_accelerated": None, "reason": reason}


def load_images(path: str) -> np.ndarray:
    """The array of a .npy file (`check` checks that it fits the model); ImagesMismatch when there is none."""
    try:
        with open(path, "rb") as f:
            return np.lib.format.read_array(f, allow_pickle=False)  # .npy only: no archive, no pickle
    except (OSError, ValueError, EOFError) as error:
        raise ImagesMismatch(f"not a .npy array: {error}") from error


def preprocessed(path: str, images: np.ndarray) -> np.ndarray:
    """Float model inputs [n, H, W, 3] of uint8 RGB `images` [n, h, w, 3] (any size), each through the
    preprocessing `path`'s description records (`inference.preprocess`), as the app would feed them.

    Raises:
        ImagesMismatch: `images` are not uint8 RGB images.
        ValueError: `path` is not a model of this project (no description: nothing says how to preprocess).
    """
    from inference.description import read_description
    from inference.preprocess import description_preprocessing, preprocess

    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ImagesMismatch(f"want uint8 RGB images [n, H, W, 3] with n >= 1, got {images.dtype} {list(images.shape)}")
    try:
        description = read_description(path)
    except ValueError as error:
        raise ValueError(f"{error} (RGB images need a file of this project, which records its preprocessing; "
                         "give model inputs with --inputs)") from None  # fmt: skip
    how = description_preprocessing(description)
    return np.concatenate([preprocess(image, description.input_size, description.normalization, how)[0] for image in images])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("tflite", help="the .tflite file")
    parser.add_argument("--images", metavar="NPY", help="uint8 [n, H, W, 3] RGB images (any size) to compare on, given "
                        "the model's own preprocessing (default: one smooth input); a float32 array is still read as "
                        "--inputs (deprecated: use --inputs)")  # fmt: skip
    parser.add_argument("--inputs", metavar="NPY", help="float32 [n, H, W, 3] model inputs, already preprocessed, at the "
                        "model's input size")  # fmt: skip
    parser.add_argument("--enforce-f32", action="store_true", help="fp32 arithmetic on the GPU (default: the accelerator's fp16)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    parser.add_argument("--runs", type=int, default=0, help="timed runs (default 0: no timing)")
    args = parser.parse_args(argv)
    if args.images and args.inputs:
        parser.error("give --images (RGB images) or --inputs (model inputs), not both")
    if args.warmup < 0 or args.runs < 0:
        parser.error(f"--warmup and --runs must be 0 or more, got {args.warmup} and {args.runs}")
    flag, array = ("--images", args.images) if args.images else ("--inputs", args.inputs)
    # Bad input is one line and EXIT_BAD_INPUT, nothing on stdout; it is never reported as "no GPU".
    try:
        if not os.path.isfile(args.tflite):
            raise FileNotFoundError(f"model file not found: {args.tflite}")
        inputs = load_images(array) if array else None
        rgb = inputs if args.images and not np.issubdtype(inputs.dtype, np.floating) else None
        if args.images and rgb is None:  # what --images meant here before it meant RGB images, as in every other command
            print("warning: --images with float model inputs is deprecated; use --inputs", file=sys.stderr)
        report = check(args.tflite, None if rgb is not None else inputs, enforce_f32=args.enforce_f32, warmup=args.warmup,
                       runs=args.runs, rgb_images=rgb)  # fmt: skip
    except ImagesMismatch as error:
        return fail(f"{flag} {array}: {error}", EXIT_BAD_INPUT)
    except (FileNotFoundError, ValueError) as error:  # ValueError: InvalidModel, a file LiteRT cannot read
        return fail(error, EXIT_BAD_INPUT)
    print(json.dumps(report), flush=True)  # the one line of output, only once everything has run
    return 0


if __name__ == "__main__":
    sys.exit(main())
