"""Reading the model description that travels inside a `.tflite` file, without TensorFlow.

The flatbuffer schema has a `metadata` list of (name, buffer) pairs; the exporter
(`convert/metadata.py`, which writes it) adds one entry named `METADATA_NAME` whose
buffer is the UTF-8 JSON description (model name, classes, label names, input
normalisation, input size, output kind, precision). Evaluation, prediction, the
benchmarks and the apps read it here instead of asking the user again.

The reader walks the flatbuffer with `ai_edge_litert`'s generated schema and the
`flatbuffers` package (both dependencies of the runtime), so consumers that only run
models (the GPU child process, prediction on a device) need no TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from typing import Any, Iterator

METADATA_NAME = "ksac_zoo_description"
# Bytes 4..8 of every TFLite flatbuffer: the schema's file identifier.
TFLITE_IDENTIFIER = b"TFL3"
# What the generated flatbuffer readers raise on a damaged file: they trust every offset they read, so a
# truncated or garbled file fails wherever the walk lands (struct.error, IndexError, "bad number" TypeError,
# numpy's ValueError, a string that is not UTF-8, a size too large to allocate...).
_DAMAGED = (struct.error, IndexError, TypeError, ValueError, OverflowError, MemoryError, RecursionError)


def model_name(model: Any) -> str:
    """How messages name a `.tflite` model: its path, or "this TFLite model" for bytes."""
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else "this TFLite model"


@contextlib.contextmanager
def damaged_model_errors(model: Any) -> Iterator[None]:
    """Turns a failure while walking the flatbuffer of `model` (a path or bytes) into ValueError naming it.

    Wrap every walk of a `.tflite` file's tables in it (after `read_model_bytes`, which checks the
    identifier): a file that starts like a model but is truncated or garbled then gets one clear error.
    """
    try:
        yield
    except _DAMAGED as error:
        if isinstance(error, ValueError) and str(error).startswith(model_name(model)):
            raise  # already ours, naming the file
        raise ValueError(
            f"{model_name(model)} is not a valid TFLite model: its flatbuffer is damaged or cut short "
            "(an incomplete copy or download?)"
        ) from None


def read_model_bytes(model: str | os.PathLike[str] | bytes | bytearray) -> bytes:
    """The bytes of a `.tflite` file given by path, or `model` itself when it is bytes.

    Raises:
        FileNotFoundError: a path that is not a file.
        ValueError: the bytes are not a TFLite flatbuffer.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        where = "this TFLite model"
    else:
        where = os.fspath(model)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"TFLite file not found: {where}")
        with open(where, "rb") as f:
            data = f.read()
    if not data:
        raise ValueError(f"{where} is empty, not a TFLite model")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{where} is not a TFLite model (no TFL3 flatbuffer identifier)")
    return data


def _metadata_entries(model: Any) -> list[tuple[str, bytes]]:
    """(name, payload) of every metadata entry of a parsed object-API model (`ModelT` of either schema)."""
    entries = []
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        data = model.buffers[entry.buffer].data
        entries.append((name, b"" if data is None else bytes(data)))
    return entries


def metadata_entries(model: str | os.PathLike[str] | bytes | bytearray) -> list[tuple[str, bytes]]:
    """(name, payload) of every metadata entry of a `.tflite` file (path or bytes), read lazily from the
    flatbuffer (no full unpack)."""
    data = read_model_bytes(model)
    from ai_edge_litert import schema_py_generated as schema_fb

    entries = []
    with damaged_model_errors(model):
        root = schema_fb.Model.GetRootAs(data, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            name = (entry.Name() or b"").decode()
            buffer = root.Buffers(entry.Buffer())
            if buffer.Offset() > 1:
                # Files over 2 GB keep buffers after the flatbuffer; (offset, size) locate them.
                payload = data[buffer.Offset() : buffer.Offset() + buffer.Size()]
            else:
                payload = b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()
            entries.append((name, payload))
    return entries


def read_metadata(model: Any) -> dict[str, Any]:
    """The description stored in a `.tflite` file.

    Args:
        model: a path, the file's bytes, or an already parsed object-API model
            (`schema_py_generated.ModelT` of TensorFlow or ai_edge_litert).

    Returns:
        The JSON description as a dict.

    Raises:
        FileNotFoundError: a path that is not a file.
        ValueError: not a TFLite file, or a file without our description.
    """
    if hasattr(model, "metadata") and hasattr(model, "buffers"):
        entries = _metadata_entries(model)
    else:
        entries = metadata_entries(model)
    where = model_name(model)
    for name, payload in entries:
        if name == METADATA_NAME:
            try:
                description = json.loads(payload.decode("utf-8"))
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise ValueError(f"{where}: its {METADATA_NAME!r} metadata is not JSON ({error})") from None
            if not isinstance(description, dict):
                raise ValueError(f"{where}: its {METADATA_NAME!r} metadata is not a JSON object")
            return description
    raise ValueError(
        f"{where} has no {METADATA_NAME!r} metadata; export it with convert/to_tflite.py so that it carries "
        "its classes, input size and normalisation"
    )
