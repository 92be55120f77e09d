"""Writing the model description into a `.tflite` file's metadata, as JSON.

The flatbuffer schema has a `metadata` list of (name, buffer) pairs; we add one
entry named `METADATA_NAME` whose buffer is the UTF-8 JSON description (model
name, classes, label names, input normalisation, input size, output kind,
precision). Apps and `training/evaluate.py` read it instead of asking the user.

The reader lives in `inference.description` (it needs no TensorFlow, and `training`
must not import `convert`); `read_metadata` and `METADATA_NAME` are re-exported here. The standard
TFLite Metadata that MediaPipe reads (`TFLITE_METADATA`, labels.txt) is `convert.tflite_metadata`'s.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from convert.tflite_metadata import append_associated_files, associated_files
from inference.description import METADATA_NAME, read_metadata

__all__ = ["METADATA_NAME", "add_metadata", "read_metadata", "with_entry", "with_metadata"]


def _load(model: str | bytes | bytearray) -> schema_fb.ModelT:
    if isinstance(model, (bytes, bytearray)):
        return flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    if not os.path.isfile(model):
        raise FileNotFoundError(f"TFLite file not found: {model}")
    with open(model, "rb") as f:
        data = bytearray(f.read())
    if data[4:8] != b"TFL3":
        raise ValueError(f"{model} is not a TFLite flatbuffer (no TFL3 identifier)")
    return flatbuffer_utils.read_model_from_bytearray(data)


def with_entry(model: schema_fb.ModelT, name: str, payload: bytes) -> schema_fb.ModelT:
    """Stores `payload` as the metadata entry `name` (replacing an earlier one), in place; returns `model`."""
    model.metadata = [m for m in (model.metadata or []) if _name(m) != name]
    buffer = schema_fb.BufferT()
    buffer.data = bytearray(payload)
    model.buffers.append(buffer)
    entry = schema_fb.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return model


def with_metadata(model: schema_fb.ModelT, description: dict[str, Any]) -> schema_fb.ModelT:
    """Stores `description` as JSON in `model` (replacing an earlier one), in place; returns `model`."""
    return with_entry(model, METADATA_NAME, json.dumps(description, sort_keys=True).encode("utf-8"))


def add_metadata(tflite: bytes, description: dict[str, Any]) -> bytes:
    """Returns `tflite` with `description` stored in its metadata (files zipped after it are kept)."""
    zipped = associated_files(bytes(tflite))
    model = with_metadata(_load(tflite), description)
    rewritten = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    # Re-serialising drops whatever followed the flatbuffer (the standard metadata's labels.txt).
    return append_associated_files(rewritten, zipped) if zipped else rewritten


def _name(entry: schema_fb.MetadataT) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)
