"""The one place that loads and runs a `.tflite` file with LiteRT, on the CPU or the GPU accelerator.

    model = TFLiteModel("model_int8.tflite", device="cpu", threads=2)
    logits = model.run(batch)            # float in, float (or label map) out

Every Python consumer (export parity, evaluation and prediction, the benchmarks,
the Android golden vectors) goes through `TFLiteModel`, so the quantise and
dequantise arithmetic at the model's edges is written once:

- input: a float array is quantised to an int8/uint8 (int16) input tensor by its
  scale and zero point, `round(x / scale + zero_point)`, clipped to the dtype's range;
- output: an int8/uint8/int16 tensor that has a scale is dequantised,
  `(q - zero_point) * scale`, in float32; an integer tensor without a scale (the
  uint8 label map of a model exported with `output="labels"`) comes back as is.

Devices:

- "cpu": the classic `ai_edge_litert.interpreter.Interpreter`; it applies the
  XNNPACK delegate by default and hands it `threads`.
- "gpu": `ai_edge_litert.compiled_model.CompiledModel` with
  `HardwareAccelerator.GPU` and no CPU fallback (the pip wheel ships the WebGPU
  accelerator). Where it does not load, `GpuUnavailable` says why, in the
  accelerator's own words (e.g. "No adapters found" without a Vulkan device).

On both devices a file LiteRT cannot read raises `InvalidModel` (never "no GPU"),
and an input of the wrong shape or dtype raises the same ValueError (`check_input`)
before anything is written to the model's input.

This module imports only numpy and, lazily, ai_edge_litert: never TensorFlow, so that
`ksac_runtime` (what apps and boards install) and a child process on a machine without
TensorFlow can use it. The toolkit imports it as `inference.runtime` too (the same module's names).
"""

from __future__ import annotations

import mmap
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ksac_runtime.native_log import native_stderr

DEVICES = ("cpu", "gpu")
# Integer tensor types that carry a (scale, zero point) and so have a float meaning.
QUANTIZED_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
# The lines of LiteRT's log that say why the GPU accelerator did not load, most telling first.
_REASON_PATTERNS = (
    r"No adapters found",
    r": Operation is not supported|operations will run on the GPU",  # ops the accelerator cannot take
    r"Failed to initialize",
    r"GPU accelerator.*could not be (dynamically )?loaded",
    r"ERROR",
)
# Lines about other accelerators (NPU, vendor compiler plugins) that never explain a GPU failure.
_UNRELATED = re.compile(r"npu_registry|compiler_plugin|Source Location")
# The accelerator loaded but some ops would fall back to the CPU (which we do not allow).
_XNNPACK_CREATED = re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.")
_PARTLY_ACCELERATED = re.compile(r"Operation is not supported|operations will run on the CPU")


class InvalidModel(ValueError):
    """The file (or bytes) is not a TFLite model that LiteRT can read: empty, truncated, not a flatbuffer."""


class GpuUnavailable(RuntimeError):
    """The LiteRT GPU accelerator did not load, or does not run the whole model.

    Attributes:
        reason: why, taken from the accelerator's log where it says (never empty).
        fully_accelerated: None when no GPU model could be made at all, False when
            one was made but some ops would fall back to the CPU.
        log: what LiteRT wrote to stderr while loading (also echoed to stderr).
    """

    def __init__(self, reason: str, *, fully_accelerated: bool | None = None, log: str = "") -> None:
        super().__init__(f"LiteRT GPU accelerator unavailable: {reason}")
        self.reason = reason
        self.fully_accelerated = fully_accelerated
        self.log = log


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of a loaded model.

    Attributes:
        name: the tensor's name in the graph.
        index: its tensor index in the graph (what the interpreter calls `index`).
        shape: its static shape.
        dtype: its numpy dtype.
        scale: quantization scale (0.0 when the tensor is not quantised).
        zero_point: quantization zero point.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """True for an integer tensor with a float meaning given by (scale, zero_point)."""
        return self.scale != 0.0 and self.dtype in QUANTIZED_DTYPES

    @property
    def quantization(self) -> tuple[float, int]:
        """(scale, zero_point), as the interpreter's tensor details give them."""
        return self.scale, self.zero_point


def quantize(x: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """`x` (float) as the input `tensor` wants it: quantised when it is quantised, else cast to its dtype.

    Args:
        x: float values (any float dtype; computed in float32).
        tensor: the input tensor the values are for.
    """
    x = np.asarray(x, dtype=np.float32)
    if not tensor.quantized:
        return x.astype(tensor.dtype, copy=False)
    info = np.iinfo(tensor.dtype)
    # `scale` is a Python float, so numpy computes in float32 (the array's dtype): the
    # same arithmetic as every earlier copy of this code, so exported files' parity
    # reports and the Android golden vectors do not move.
    return np.clip(np.round(x / tensor.scale + tensor.zero_point), info.min, info.max).astype(tensor.dtype)


def check_input(value: np.ndarray, tensor: TensorInfo, *, raw: bool) -> None:
    """Raises ValueError unless `value` fits the input `tensor`, the same on the CPU and the GPU.

    Without it the GPU path wrote any array into the input buffer as bytes: a smaller
    one left the previous input's tail in place and returned a plausible result.

    Args:
        value: the array about to be written.
        tensor: the input tensor it is for.
        raw: True when `value` is written as it is (its dtype must be the tensor's);
            False for float input that `quantize` converts (any real number type).
    """
    shape_ok = tuple(value.shape) == tensor.shape
    dtype_ok = value.dtype == tensor.dtype if raw else value.dtype.kind in "biuf"
    if not (shape_ok and dtype_ok):
        wanted = tensor.dtype.name if raw else "real numbers"
        raise ValueError(
            f"input {tensor.name!r} takes shape {list(tensor.shape)} of {wanted}; "
            f"got shape {list(value.shape)} of {value.dtype.name}"
        )


def dequantize(y: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """The output `y` of `tensor` in float32 when it is quantised; unchanged otherwise (floats, label maps)."""
    if not tensor.quantized:
        return y
    return (y.astype(np.float32) - tensor.zero_point) * tensor.scale


def random_input(shape: Sequence[int], dtype: Any, seed: int | np.random.Generator = 0) -> np.ndarray:
    """A random tensor of `shape` and `dtype`: floats in [-1, 1], integers over their int8-sized range.

    Args:
        shape: the tensor's shape.
        dtype: its dtype.
        seed: a seed, or a Generator to draw from (several inputs from one stream).
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-1.0, 1.0, tuple(shape)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, tuple(shape)).astype(dtype)


def accelerator_reason(log: str, fallback: str) -> str:
    """The most telling lines of LiteRT's log for why the GPU accelerator did not load.

    Args:
        log: what LiteRT wrote to stderr.
        fallback: the answer when no line of the log says (e.g. the exception's text).
    """
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for pattern in _REASON_PATTERNS:
        hits = [line for line in lines if re.search(pattern, line) and not _UNRELATED.search(line)]
        hits = [re.sub(r"^[EWI]\d{4} [\d:.]+\s+\d+\s+", "", line) for line in hits]  # glog's prefix
        if hits:
            return "; ".join(dict.fromkeys(hits[:3]))[:400]
    return (fallback.strip() or "unknown")[:400]


def peak_rss_kb() -> int:
    """Peak resident set of this process image, in kB (for the memory figures of child processes).

    VmHWM from /proc/self/status where there is one: it belongs to the address space
    made at exec, whereas ru_maxrss survives exec and so starts at the (large)
    parent's peak in a child forked from a TensorFlow process.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kilobytes on Linux


def import_runtime(device: str = "cpu") -> None:
    """Imports the LiteRT modules `device` needs now (so that a memory baseline already holds them)."""
    _check_device(device)
    if device == "cpu":
        import ai_edge_litert.interpreter  # noqa: F401
    else:
        import ai_edge_litert.compiled_model  # noqa: F401
        import ai_edge_litert.hardware_accelerator  # noqa: F401


class TFLiteModel:
    """A `.tflite` file loaded in LiteRT on the CPU or the GPU accelerator.

    Use `run(x)` for float-in, float-out inference, `run_raw(x)` to feed and read the
    tensors as they are, and `set_random_inputs()` + `invoke()` to time the model alone.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes | bytearray,
        *,
        device: str = "cpu",
        threads: int = 1,
        require_full_acceleration: bool = True,
        enforce_f32: bool = False,
    ) -> None:
        """Loads the model.

        Args:
            model: a `.tflite` path or the file's bytes.
            device: "cpu" (interpreter with XNNPACK) or "gpu" (the LiteRT GPU accelerator).
            threads: CPU threads for the interpreter and XNNPACK (unused on the GPU).
            require_full_acceleration: on "gpu", raise GpuUnavailable when some ops
                would not run on the GPU, instead of loading it partly accelerated.
            enforce_f32: on "gpu", compute in fp32 instead of the accelerator's default fp16.

        Raises:
            ValueError: unknown device, threads < 1.
            InvalidModel: a file or bytes that LiteRT cannot read as a TFLite model (on either device).
            FileNotFoundError: a path that is not a file.
            GpuUnavailable: on "gpu", the accelerator did not load (or, with
                `require_full_acceleration`, does not run every op).
        """
        _check_device(device)
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.device = device
        self.threads = int(threads)
        self.enforce_f32 = bool(enforce_f32)
        self.gpu_log = ""  # what the GPU accelerator logged while loading (it names the adapter)
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.path: str | None = None
            self._data: bytes | None = bytes(model)
        else:
            self.path = os.fspath(model)
            self._data = None
            if not os.path.isfile(self.path):
                raise FileNotFoundError(f"TFLite file not found: {self.path}")
        if device == "cpu":
            self._load_cpu()
        else:
            self._load_gpu(require_full_acceleration)

    # -- loading ---------------------------------------------------------------------------------

    def _new_interpreter(self) -> Any:
        """LiteRT's CPU interpreter of the model: the one place that tells a file LiteRT cannot read.

        Raises:
            InvalidModel: the interpreter refuses the file (its flatbuffer verifier runs here).
        """
        from ai_edge_litert.interpreter import Interpreter

        where = self.path or f"this {len(self._data or b'')}-byte buffer"
        if (len(self._data) if self._data is not None else os.path.getsize(where)) == 0:
            raise InvalidModel(f"{where} is empty, not a TFLite model")  # LiteRT's own words here are obscure
        source = {"model_content": self._data} if self._data is not None else {"model_path": self.path}
        try:
            return Interpreter(**source, num_threads=self.threads)
        except ValueError as error:  # e.g. "The model is not a valid Flatbuffer buffer"
            raise InvalidModel(f"{where} is not a valid TFLite model: {' '.join(str(error).split())}") from error

    def _load_cpu(self) -> None:
        # The XNNPACK line is printed on every load, whatever the log level. No reader process for so short a
        # block (`live=False`): an application or a board loading a model should not start a Python.
        with native_stderr(drop=_XNNPACK_CREATED, live=False):
            self._interpreter = self._new_interpreter()
            self._interpreter.allocate_tensors()
        self.inputs = [_info_from_detail(d) for d in self._interpreter.get_input_details()]
        self.outputs = [_info_from_detail(d) for d in self._interpreter.get_output_details()]
        # The interpreter runs every op itself (XNNPACK takes what it supports, the rest are builtins).
        self.fully_accelerated = True

    def _load_gpu(self, require_full: bool) -> None:
        if sys.modules.get("tensorflow") is not None:
            # Seen here: CompiledModel.from_buffer on the GPU crashed (SIGSEGV) in a process that had
            # imported TensorFlow; refuse with a way out instead of taking the process down.
            raise RuntimeError(
                "LiteRT's GPU accelerator cannot be loaded in a process that has imported TensorFlow; "
                "run it in a child process without TensorFlow (the toolkit's inference.gpu.gpu_report does)"
            )
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.gpu_options import GpuOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import Options

        options = Options(hardware_accelerators=HardwareAccelerator.GPU, gpu_options=GpuOptions(enforce_f32=self.enforce_f32))
        error: Exception | None = None
        with native_stderr() as log:
            try:
                if self._data is not None:
                    # Kept on `self._data`: the model may point into these bytes while it lives.
                    compiled = CompiledModel.from_buffer(self._data, options=options)
                else:
                    compiled = CompiledModel.from_file(self.path, options=options)
            except Exception as caught:  # LiteRT raises a terse RuntimeError; its log says why
                error = caught
        self.gpu_log = log.text
        if error is not None:
            # The accelerator fails alike on a file that is no model at all: that is not "no GPU".
            # Asked only on failure, so a GPU memory figure never holds a CPU interpreter.
            self._new_interpreter()  # raises InvalidModel
            reason = accelerator_reason(log.text, f"{type(error).__name__}: {error}")
            # Without CPU fallback, a model with ops the accelerator cannot take fails to load:
            # the accelerator is there, the model is not fully accelerated.
            partly = bool(_PARTLY_ACCELERATED.search(log.text))
            raise GpuUnavailable(reason, fully_accelerated=False if partly else None, log=log.text) from error
        self.fully_accelerated = bool(compiled.is_fully_accelerated())
        if require_full and not self.fully_accelerated:
            # No CPU fallback on purpose: a file that only partly runs on the GPU must not
            # be timed on the CPU under a GPU label.
            raise GpuUnavailable(
                "not every op of the model runs on the GPU accelerator", fully_accelerated=False, log=log.text
            )
        self._compiled = compiled
        signatures = list(compiled.get_signature_list())
        key = signatures[0] if signatures else "serving_default"
        self._signature = compiled.get_signature_index(key)
        # The compiled model's details have no quantization: it comes from the flatbuffer.
        quantization = _io_quantization(self._data if self._data is not None else self.path)
        self.inputs = [_info_from_compiled(d, quantization) for d in compiled.get_input_tensor_details(key).values()]
        self.outputs = [_info_from_compiled(d, quantization) for d in compiled.get_output_tensor_details(key).values()]
        self._input_buffers = compiled.create_input_buffers(self._signature)
        self._output_buffers = compiled.create_output_buffers(self._signature)

    # -- tensors ---------------------------------------------------------------------------------

    @property
    def input(self) -> TensorInfo:
        """The first (for our models: only) input tensor."""
        return self.inputs[0]

    @property
    def output(self) -> TensorInfo:
        """The first (for our models: only) output tensor."""
        return self.outputs[0]

    def set_input_raw(self, i: int, value: np.ndarray) -> None:
        """Writes input `i` as it is; ValueError (`check_input`) unless its dtype and shape are the tensor's."""
        value = np.ascontiguousarray(value)
        check_input(value, self.inputs[i], raw=True)
        if self.device == "cpu":
            self._interpreter.set_tensor(self.inputs[i].index, value)
        else:
            self._input_buffers[i].write(value)

    def get_output_raw(self, i: int = 0) -> np.ndarray:
        """Output `i` after `invoke()`, as it is (a copy)."""
        tensor = self.outputs[i]
        if self.device == "cpu":
            return self._interpreter.get_tensor(tensor.index)
        count = int(np.prod(tensor.shape))
        return self._output_buffers[i].read(count, tensor.dtype).reshape(tensor.shape)

    def set_random_inputs(self, seed: int = 0) -> None:
        """Fills every input with random values (see `random_input`), for timing and memory runs."""
        rng = np.random.default_rng(seed)
        for i, tensor in enumerate(self.inputs):
            self.set_input_raw(i, random_input(tensor.shape, tensor.dtype, rng))

    def invoke(self) -> None:
        """Runs the model once on the inputs already set; on the GPU, waits until it has finished."""
        if self.device == "cpu":
            self._interpreter.invoke()
            return
        self._compiled.run_by_index(self._signature, self._input_buffers, self._output_buffers)
        # Reading one element waits for the GPU; without it a timing would only measure the dispatch.
        self._output_buffers[0].read(1, self.outputs[0].dtype)

    # -- inference -------------------------------------------------------------------------------

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """Feeds `x` to the single input as it is and returns the first output as it is."""
        self._single_input()
        self.set_input_raw(0, x)
        self.invoke()
        return self.get_output_raw(0)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Runs float input `x` (the full input tensor, batch dimension included).

        The input is quantised when the model's input is; the first output comes back in
        float32 when it is quantised, else as it is (float logits, or a uint8 label map).

        Raises:
            ValueError: `x` is not of the input's shape, or not real numbers (`check_input`).
        """
        self._single_input()
        x = np.asarray(x)
        check_input(x, self.input, raw=False)  # before `quantize`, which would cast any dtype
        self.set_input_raw(0, quantize(x, self.input))
        self.invoke()
        return dequantize(self.get_output_raw(0), self.output)

    def _single_input(self) -> None:
        if len(self.inputs) != 1:
            raise ValueError(f"run() needs a model with one input; this one has {len(self.inputs)}")

    def __repr__(self) -> str:
        where = self.path or f"<{len(self._data or b'')} bytes>"
        return f"TFLiteModel({where!r}, device={self.device!r}, threads={self.threads})"


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")


def _info_from_detail(detail: dict[str, Any]) -> TensorInfo:
    """A TensorInfo from one of the interpreter's tensor details."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


def _info_from_compiled(detail: dict[str, Any], quantization: dict[int, tuple[float, int]]) -> TensorInfo:
    """A TensorInfo from one of the compiled model's tensor details plus the flatbuffer's quantization."""
    index = int(detail["index"])
    scale, zero_point = quantization.get(index, (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        index=index,
        shape=tuple(int(d) for d in detail.get("shape", [1])),
        dtype=np.dtype(str(detail.get("dtype", "float32"))),
        scale=scale,
        zero_point=zero_point,
    )


def _io_quantization(model: str | bytes) -> dict[int, tuple[float, int]]:
    """tensor index -> (scale, zero point) of the main graph's per-tensor-quantised inputs and outputs.

    A path is memory-mapped, not read: only the few tables walked here are paged in, so
    a GPU memory figure does not grow by the file's size.
    """
    from ai_edge_litert import schema_py_generated as schema_fb

    if isinstance(model, bytes):
        data: Any = model
    else:
        with open(model, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    graph = schema_fb.Model.GetRootAs(data, 0).Subgraphs(0)  # our models have one graph
    found = {}
    inputs = [graph.Inputs(j) for j in range(graph.InputsLength())]
    for index in inputs + [graph.Outputs(j) for j in range(graph.OutputsLength())]:
        q = graph.Tensors(index).Quantization()
        if q is not None and q.ScaleLength() == 1:
            found[int(index)] = (float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0)
    return found
