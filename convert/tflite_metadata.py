"""The standard TFLite Metadata of our segmentation files, so that MediaPipe Tasks' ImageSegmenter
(Android, iOS, web, Python) and the TFLite Task Library run them unmodified.

What a file gets (`standard_metadata`), as MediaPipe's ImageSegmenter reads it:
- a `TFLITE_METADATA` entry in the model's metadata list: a `ModelMetadata` flatbuffer with one
  subgraph; input: `ImageProperties` RGB, `NormalizationOptions` with ONE mean and ONE std (MediaPipe
  refuses per-channel values), stats min/max; output: `ImageProperties` GRAYSCALE over dimensions
  1..2 with the label names as an associated file `labels.txt` of type TENSOR_AXIS_LABELS; the
  ImageSegmenter's own custom metadata `SEGMENTER_METADATA` (`ImageSegmenterOptions`, activation
  SOFTMAX over our logits, so that its confidence masks are probabilities; the category mask is the
  arg-max either way);
- `labels.txt` in an uncompressed zip appended AFTER the flatbuffer (where associated files live;
  TFLite ignores trailing bytes). Re-serialising the flatbuffer drops that zip silently, so it is
  appended last and `append_associated_files` / `associated_files` carry it across rewrites.

Only files MediaPipe reads correctly get it: float32 input and logits output. A `--output labels`
file (MediaPipe reads a [1, H, W] uint8 map as H channels: an all-zero mask) and an `--int8-io` file
(MediaPipe takes uint8 or float32 input only) get none, and `metadata_refusal` says why; MediaPipe
then refuses to load them instead of returning a wrong mask.

Written by hand because no maintained package writes this schema here: tflite-support's writers
(last release 0.4.4, 2023) pin protobuf<4, which TensorFlow 2.21 does not accept, and MediaPipe's
copy (`mediapipe.tasks.python.metadata`) does not import in mediapipe 1.2.3 (`No module named
'mediapipe.tasks.cc'`), which besides cannot share a virtualenv with tensorflow-model-optimization.
The few tables are built with the `flatbuffers` package; field slots come from the public schemas
(MediaPipe's `mediapipe/tasks/metadata/metadata_schema.fbs`, version 1.5.0, identifier "M001", and
`image_segmenter_metadata_schema.fbs`, identifier "V001"). A union field takes two slots (type, value).
No TensorFlow here.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any, Mapping, Sequence

import flatbuffers
from flatbuffers import number_types

from inference.description import ModelDescription

TFLITE_METADATA_NAME = "TFLITE_METADATA"  # the model-metadata entry every TFLite metadata reader looks up
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"  # MediaPipe ImageSegmenter's custom metadata
LABELS_FILE = "labels.txt"
MODEL_METADATA_IDENTIFIER = b"M001"
SEGMENTER_OPTIONS_IDENTIFIER = b"V001"
# The schema version whose fields we use (CustomMetadata arrived in 1.5.0); readers older than it refuse.
MIN_PARSER_VERSION = "1.5.0"

# Field slots, per table, in the order the .fbs files declare them.
MODEL_METADATA = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
                  "associated_files": 6, "min_parser_version": 7}  # fmt: skip
SUBGRAPH_METADATA = {"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3,
                     "associated_files": 4, "custom_metadata": 9}  # fmt: skip
TENSOR_METADATA = {"name": 0, "description": 1, "content": 3, "process_units": 4, "stats": 5, "associated_files": 6}
CONTENT = {"content_properties_type": 0, "content_properties": 1, "range": 2}
IMAGE_PROPERTIES = {"color_space": 0}
VALUE_RANGE = {"min": 0, "max": 1}
PROCESS_UNIT = {"options_type": 0, "options": 1}
NORMALIZATION_OPTIONS = {"mean": 0, "std": 1}
STATS = {"max": 0, "min": 1}
ASSOCIATED_FILE = {"name": 0, "description": 1, "type": 2}
CUSTOM_METADATA = {"name": 0, "data": 1}
SEGMENTER_OPTIONS = {"activation": 0, "min_parser_version": 1}

# Enum and union values.
CONTENT_IMAGE_PROPERTIES = 2  # ContentProperties: FeatureProperties=1, ImageProperties=2, ...
PROCESS_NORMALIZATION = 1  # ProcessUnitOptions: NormalizationOptions=1, ...
COLOR_SPACES = {1: "RGB", 2: "GRAYSCALE"}
RGB, GRAYSCALE = 1, 2
TENSOR_AXIS_LABELS = 2
FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS"}
ACTIVATIONS = {0: "NONE", 1: "SIGMOID", 2: "SOFTMAX"}
SOFTMAX = 2


def metadata_refusal(description: ModelDescription, input_dtype: str) -> str | None:
    """Why a file with this description and input type must NOT carry the standard metadata (None: it may).

    Refused where MediaPipe's ImageSegmenter would load the file and return a wrong mask, or where the
    metadata cannot state what the model needs.
    """
    if (description.output or "logits") != "logits":
        return ("--output labels: MediaPipe's ImageSegmenter reads a [1, H, W] uint8 label map as H channels "
                "(an all-zero mask); export logits (the default) for MediaPipe")
    if input_dtype != "float32":
        # MediaPipe takes uint8 or float32 input; the metadata written here describes a float32 input
        # normalised as (pixel - mean) / std, so any other input type gets none.
        return (f"{input_dtype} input: MediaPipe's ImageSegmenter takes uint8 or float32 input only, and this "
                "metadata describes float32; export without --int8-io (int8 inside, float32 at the edges) for MediaPipe")
    mean, std = list(description.normalization.mean), list(description.normalization.std)
    if len(set(mean)) != 1 or len(set(std)) != 1:
        return f"per-channel normalisation mean {mean} std {std}: MediaPipe accepts one mean and one std for all channels"
    return None


def label_names(description: ModelDescription) -> list[str]:
    """The class names of a description, one per class (`class_N` where a name is empty)."""
    return [name or f"class_{i}" for i, name in enumerate(description.label_names)]


def labels_file(description: ModelDescription) -> bytes:
    """`labels.txt`: one class name per line, in class-index order."""
    names = label_names(description)
    bad = [name for name in names if "\n" in name or "\r" in name]
    if bad:
        raise ValueError(f"label names must not contain line breaks: {bad!r}")
    return ("\n".join(names) + "\n").encode("utf-8")


class _Builder:
    """Tables, strings and vectors on one `flatbuffers.Builder`, children before their parents."""

    def __init__(self) -> None:
        self.builder = flatbuffers.Builder(1024)

    def string(self, text: str | None) -> int | None:
        return None if text is None else self.builder.CreateString(text)

    def offsets(self, offsets: Sequence[int]) -> int:
        self.builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.builder.PrependUOffsetTRelative(offset)
        return self.builder.EndVector()

    def floats(self, values: Sequence[float]) -> int:
        self.builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            self.builder.PrependFloat32(float(value))
        return self.builder.EndVector()

    def ubytes(self, data: bytes, alignment: int) -> int:
        self.builder.StartVector(1, len(data), alignment)
        for value in reversed(data):
            self.builder.PrependUint8(value)
        return self.builder.EndVector()

    def table(self, slots: Mapping[str, int], **fields: tuple[str, Any]) -> int:
        """A table; `fields` maps a field name to ("offset" | "int8" | "int32", value); None values are left out."""
        self.builder.StartObject(max(slots.values()) + 1)
        for name, (kind, value) in fields.items():
            if value is None:
                continue
            slot = slots[name]
            if kind == "offset":
                self.builder.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "int8":
                self.builder.PrependInt8Slot(slot, value, -1)  # default -1: always written
            else:
                self.builder.PrependInt32Slot(slot, value, -1)
        return self.builder.EndObject()

    def finish(self, root: int, identifier: bytes) -> bytes:
        self.builder.Finish(root, file_identifier=identifier)
        return bytes(self.builder.Output())


def segmenter_options(activation: int = SOFTMAX) -> bytes:
    """MediaPipe's `ImageSegmenterOptions` flatbuffer (the SEGMENTER_METADATA payload)."""
    b = _Builder()
    version = b.string("1.0.0")
    root = b.table(SEGMENTER_OPTIONS, activation=("int8", activation), min_parser_version=("offset", version))
    return b.finish(root, SEGMENTER_OPTIONS_IDENTIFIER)


def model_metadata(description: ModelDescription, version: str = "") -> bytes:
    """The `ModelMetadata` flatbuffer for a segmentation file with this description (see the module doc)."""
    mean = float(description.normalization.mean[0])
    std = float(description.normalization.std[0])
    height, width = description.input_size
    names = label_names(description)
    b = _Builder()

    def image_content(color_space: int, dims: tuple[int, int] | None) -> int:
        properties = b.table(IMAGE_PROPERTIES, color_space=("int8", color_space))
        value_range = b.table(VALUE_RANGE, min=("int32", dims[0]), max=("int32", dims[1])) if dims else None
        return b.table(CONTENT, content_properties_type=("int8", CONTENT_IMAGE_PROPERTIES),
                       content_properties=("offset", properties), range=("offset", value_range))  # fmt: skip

    # Input: an RGB image normalised as x = (pixel - mean) / std.
    normalization = b.table(NORMALIZATION_OPTIONS, mean=("offset", b.floats([mean])), std=("offset", b.floats([std])))
    process_unit = b.table(PROCESS_UNIT, options_type=("int8", PROCESS_NORMALIZATION), options=("offset", normalization))
    stats = b.table(STATS, max=("offset", b.floats([(255.0 - mean) / std])), min=("offset", b.floats([(0.0 - mean) / std])))
    input_tensor = b.table(
        TENSOR_METADATA,
        name=("offset", b.string("image")),
        description=("offset", b.string(
            f"RGB image, {height}x{width}, x = (pixel - {mean:g}) / {std:g}. Our own tools letterbox an image of "
            "another aspect (see the ksac_zoo_description metadata); MediaPipe stretches it.")),
        content=("offset", image_content(RGB, None)),
        process_units=("offset", b.offsets([process_unit])),
        stats=("offset", stats),
    )  # fmt: skip
    # Output: per-pixel class scores over dimensions 1..2 (height, width); dimension 3 is the class.
    labels = b.table(ASSOCIATED_FILE, name=("offset", b.string(LABELS_FILE)),
                     description=("offset", b.string("Class names, one per line, in class-index order.")),
                     type=("int8", TENSOR_AXIS_LABELS))  # fmt: skip
    output_tensor = b.table(
        TENSOR_METADATA,
        name=("offset", b.string("logits")),
        description=("offset", b.string(f"Class logits at the input resolution, {len(names)} classes; the mask is their arg-max.")),
        content=("offset", image_content(GRAYSCALE, (1, 2))),
        associated_files=("offset", b.offsets([labels])),
    )  # fmt: skip
    segmenter = b.table(CUSTOM_METADATA, name=("offset", b.string(SEGMENTER_METADATA_NAME)),
                        data=("offset", b.ubytes(segmenter_options(), alignment=16)))  # fmt: skip
    subgraph = b.table(
        SUBGRAPH_METADATA,
        name=("offset", b.string(description.name)),
        input_tensor_metadata=("offset", b.offsets([input_tensor])),
        output_tensor_metadata=("offset", b.offsets([output_tensor])),
        custom_metadata=("offset", b.offsets([segmenter])),
    )
    root = b.table(
        MODEL_METADATA,
        name=("offset", b.string(description.name)),
        description=("offset", b.string(
            f"Semantic segmentation ({description.backbone} backbone, {description.head} head), "
            f"{len(names)} classes: {', '.join(names)}.")),
        version=("offset", b.string(version or None)),
        author=("offset", b.string("KSAC edge model zoo")),
        subgraph_metadata=("offset", b.offsets([subgraph])),
        min_parser_version=("offset", b.string(MIN_PARSER_VERSION)),
    )  # fmt: skip
    return b.finish(root, MODEL_METADATA_IDENTIFIER)


def append_associated_files(tflite: bytes, files: Mapping[str, bytes]) -> bytes:
    """`tflite` with `files` in an uncompressed zip appended after the flatbuffer (how associated files
    travel; the zip's offsets count from the start of the file, as zipfile writes on append)."""
    stream = io.BytesIO(bytes(tflite))
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)  # fixed date: same bytes each export
    return stream.getvalue()


def associated_files(tflite: bytes) -> dict[str, bytes]:
    """The files zipped after the flatbuffer ({} when there is no zip)."""
    stream = io.BytesIO(bytes(tflite))
    if not zipfile.is_zipfile(stream):
        return {}
    with zipfile.ZipFile(stream) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


class _Table:
    """Read access to one flatbuffer table by field slot."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.table = flatbuffers.table.Table(bytearray(buf) if not isinstance(buf, bytearray) else buf, pos)

    def _field(self, slot: int) -> int:
        offset = self.table.Offset(4 + 2 * slot)
        return offset + self.table.Pos if offset else 0

    def string(self, slot: int) -> str | None:
        where = self._field(slot)
        return self.table.String(where).decode("utf-8") if where else None

    def int8(self, slot: int, default: int = 0) -> int:
        where = self._field(slot)
        return self.table.Get(number_types.Int8Flags, where) if where else default

    def int32(self, slot: int, default: int = 0) -> int:
        where = self._field(slot)
        return self.table.Get(number_types.Int32Flags, where) if where else default

    def child(self, slot: int) -> "_Table | None":
        where = self._field(slot)
        return _Table(self.table.Bytes, self.table.Indirect(where)) if where else None

    def children(self, slot: int) -> list["_Table"]:
        where = self._field(slot)
        if not where:
            return []
        start = self.table.Vector(where - self.table.Pos)
        return [_Table(self.table.Bytes, self.table.Indirect(start + 4 * i))
                for i in range(self.table.VectorLen(where - self.table.Pos))]  # fmt: skip

    def floats(self, slot: int) -> list[float]:
        where = self._field(slot)
        if not where:
            return []
        return [float(v) for v in self.table.GetVectorAsNumpy(number_types.Float32Flags, where - self.table.Pos)]

    def ubytes(self, slot: int) -> bytes:
        where = self._field(slot)
        if not where:
            return b""
        return self.table.GetVectorAsNumpy(number_types.Uint8Flags, where - self.table.Pos).tobytes()


def _root(data: bytes, identifier: bytes, what: str) -> _Table:
    if len(data) < 8 or data[4:8] != identifier:
        raise ValueError(f"{what} is not a flatbuffer with identifier {identifier.decode()}")
    return _Table(data, int.from_bytes(data[0:4], "little"))


def _tensor_summary(tensor: _Table) -> dict[str, Any]:
    summary: dict[str, Any] = {"name": tensor.string(TENSOR_METADATA["name"]),
                               "description": tensor.string(TENSOR_METADATA["description"])}  # fmt: skip
    content = tensor.child(TENSOR_METADATA["content"])
    if content is not None and content.int8(CONTENT["content_properties_type"]) == CONTENT_IMAGE_PROPERTIES:
        properties = content.child(CONTENT["content_properties"])
        space = properties.int8(IMAGE_PROPERTIES["color_space"]) if properties else 0
        summary["content"] = f"image {COLOR_SPACES.get(space, 'UNKNOWN')}"
    for unit in tensor.children(TENSOR_METADATA["process_units"]):
        options = unit.child(PROCESS_UNIT["options"])
        if unit.int8(PROCESS_UNIT["options_type"]) == PROCESS_NORMALIZATION and options is not None:
            summary["normalization"] = {"mean": options.floats(NORMALIZATION_OPTIONS["mean"]),
                                        "std": options.floats(NORMALIZATION_OPTIONS["std"])}  # fmt: skip
    stats = tensor.child(TENSOR_METADATA["stats"])
    if stats is not None:
        summary["stats"] = {"min": stats.floats(STATS["min"]), "max": stats.floats(STATS["max"])}
    files = [{"name": f.string(ASSOCIATED_FILE["name"]), "type": FILE_TYPES.get(f.int8(ASSOCIATED_FILE["type"]), "OTHER")}
             for f in tensor.children(TENSOR_METADATA["associated_files"])]  # fmt: skip
    if files:
        summary["associated_files"] = files
    return summary


def read_standard_metadata(tflite: bytes) -> dict[str, Any] | None:
    """The standard metadata of a `.tflite` file as a plain dict (None when it has none).

    Fields: name, description, version, min_parser_version, inputs and outputs (name, description,
    content, normalization, stats, associated_files), custom_metadata (SEGMENTER_METADATA decoded as
    {"activation": ...}), zipped_files (names of the files appended after the flatbuffer) and labels
    (the lines of the output's TENSOR_AXIS_LABELS file, when it is in the zip).
    """
    from inference.description import metadata_entries

    payload = dict(metadata_entries(tflite)).get(TFLITE_METADATA_NAME)
    if payload is None:
        return None
    root = _root(payload, MODEL_METADATA_IDENTIFIER, TFLITE_METADATA_NAME)
    summary: dict[str, Any] = {
        key: root.string(MODEL_METADATA[key]) for key in ("name", "description", "version", "min_parser_version")
    }
    subgraphs = root.children(MODEL_METADATA["subgraph_metadata"])
    if subgraphs:
        subgraph = subgraphs[0]
        summary["inputs"] = [_tensor_summary(t) for t in subgraph.children(SUBGRAPH_METADATA["input_tensor_metadata"])]
        summary["outputs"] = [_tensor_summary(t) for t in subgraph.children(SUBGRAPH_METADATA["output_tensor_metadata"])]
        custom = {}
        for entry in subgraph.children(SUBGRAPH_METADATA["custom_metadata"]):
            name, data = entry.string(CUSTOM_METADATA["name"]), entry.ubytes(CUSTOM_METADATA["data"])
            if name == SEGMENTER_METADATA_NAME:
                options = _root(data, SEGMENTER_OPTIONS_IDENTIFIER, SEGMENTER_METADATA_NAME)
                custom[name] = {"activation": ACTIVATIONS.get(options.int8(SEGMENTER_OPTIONS["activation"]), "?")}
            else:
                custom[name] = {"bytes": len(data)}
        summary["custom_metadata"] = custom
    files = associated_files(tflite)
    summary["zipped_files"] = sorted(files)
    wanted = [f["name"] for t in summary.get("outputs", []) for f in t.get("associated_files", [])
              if f["type"] == "TENSOR_AXIS_LABELS"]  # fmt: skip
    if wanted and wanted[0] in files:
        summary["labels"] = files[wanted[0]].decode("utf-8").splitlines()
    return summary
