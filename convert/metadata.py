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
from typing import Any

from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from convert.tflite_metadata import append_associated_files, associated_files
from inference.description import METADATA_NAME, read_metadata

__all__ = ["METADATA_NAME", "add_metadata", "read_metadata", "with_entry", "with_metadata"]


def with_entry(model: schema_fb.ModelT, name: str, payload: bytes) -> schema_fb.ModelT:
    """Stores `payload` as the metadata entry `name` (replacing an earlier one), in place; returns `model`.

    An earlier entry keeps its buffer, which takes the new payload: a new buffer would leave the old
    payload in the file, unreferenced but still written, so that each rewrite grew the file.
    """
    earlier = [m for m in (model.metadata or []) if _name(m) == name]
    if earlier:
        for repeated in earlier[1:]:  # a name given twice (by another tool): one entry remains
            model.buffers[repeated.buffer].data = None
            model.metadata.remove(repeated)
        model.buffers[earlier[0].buffer].data = bytearray(payload)
        return model
    model.metadata = list(model.metadata or [])
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
    from convert.inspect import load_model  # (convert.inspect imports this module)

    model = with_metadata(load_model(tflite), description)
    rewritten = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    # Re-serialising drops whatever followed the flatbuffer (the standard metadata's labels.txt).
    return append_associated_files(rewritten, zipped) if zipped else rewritten


def _name(entry: schema_fb.MetadataT) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)
