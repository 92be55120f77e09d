"""The model description: one typed, versioned `ModelDescription`, read and written here only.

What a zoo model is and how to feed it (name, architecture, input size, classes, label names, input
normalisation and preprocessing; for an exported file its precision, output kind and exporter). Its
format is ksac_runtime/model_description.schema.json, which the Java (Android core) and JavaScript (web
demo) readers check too. A Keras model carries it in its `zoo.layers.DescriptionLayer` (`zoo.describe`);
an exported `.tflite` file carries it as UTF-8 JSON (`ModelDescription.to_json`) in the flatbuffer's
`metadata` list of (name, buffer) pairs, under the entry `METADATA_NAME` (written by
`convert/tflite_file.py`), and `read_description(path)` gives it back. Evaluation, prediction, the
benchmarks and the apps read it instead of asking the user again. Version 1 (every file written
before versions existed: no "version" field) still reads, upgraded to version 2.

The reader walks the flatbuffer with `ai_edge_litert`'s generated schema and the
`flatbuffers` package (both dependencies of the runtime), so consumers that only run
models (the GPU child process, prediction on a device) need no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import os
import struct
from collections.abc import Mapping
from typing import Any, Iterator

from ksac_runtime.preprocess import INFERENCE_PREPROCESSING, SUPPORTED

METADATA_NAME = "ksac_zoo_description"
# The export precisions (a description's "precision"), largest file first; reports list them in this order.
PRECISIONS = ("fp32", "fp16", "int8")
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


# ---------------------------------------------------------------- the typed description
#
# The one reader and writer of the description's fields. Its format is
# ksac_runtime/model_description.schema.json (tests check that the dataclass and the schema name the same
# fields, and validate real exports against it). Hand-written: validation with `jsonschema` would be a
# runtime dependency for a dozen checks, and its messages name JSON paths rather than what to fix.

# Version 2 writes "version": 2; every file written before versions existed has no "version" and reads
# as version 1, the same fields (those exported before the preprocessing contract was recorded lack
# "preprocessing", which always meant the contract).
DESCRIPTION_VERSION = 2
OUTPUT_STRIDES = (8, 16, 32)
OUTPUTS = ("logits", "labels")  # float32 [1,H,W,C] scores, or uint8 [1,H,W] arg-max labels
EXPORTERS = ("ksac-aware", "naive")
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_description.schema.json")


def _bad(field: str, wanted: str, value: Any) -> ValueError:
    return ValueError(f"model description: {field!r} must be {wanted}, got {value!r}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _integer(field: str, value: Any, minimum: int | None = None) -> int:
    if not _is_integer(value) or (minimum is not None and value < minimum):
        raise _bad(field, "an integer" + ("" if minimum is None else f" >= {minimum}"), value)
    return int(value)


def _number(field: str, value: Any, positive: bool = False) -> float:
    number = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer too large for a float
            number = float(value)
    if not math.isfinite(number) or (positive and number <= 0):
        raise _bad(field, "a positive number" if positive else "a finite number", value)
    return number


def _string(field: str, value: Any, non_empty: bool = False) -> str:
    if not isinstance(value, str) or (non_empty and not value):
        raise _bad(field, "a non-empty string" if non_empty else "a string", value)
    return value


def _boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(field, "true or false", value)
    return value


def _choice(field: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool) or value not in choices:
        raise _bad(field, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def _items(field: str, value: Any, wanted: str, length: int | None = None, minimum: int = 0) -> list[Any]:
    """`value` as a list, if it is a JSON array (list or tuple) of the given length or at least `minimum` long."""
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length) or len(value) < minimum:
        raise _bad(field, wanted, value)
    return list(value)


def _json_object(field: str, value: Any) -> dict[str, Any]:
    """A detached, JSON-ready copy of a mapping (the free-form "training" and "qat_training")."""
    if not isinstance(value, Mapping):
        raise _bad(field, "a JSON object", value)
    try:
        return json.loads(json.dumps(_plain(value), allow_nan=False))
    except (TypeError, ValueError):
        raise _bad(field, "a JSON object (strings, finite numbers, booleans, null, lists, objects)", value) from None


def _plain(value: Any) -> Any:
    """Plain dicts and lists from any mappings and sequences (Keras' tracking wrappers among them)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclasses store their checked values this way


class _Fields(Mapping[str, Any]):
    """Key access to a small frozen dataclass (`n["mean"]` as well as `n.mean`): the numeric code
    (`ksac_runtime.preprocess.preprocess`, `data.transforms`) takes these as it takes their JSON objects."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.items()}

    @classmethod
    def _from_json(cls, field: str, value: Any, fill: bool = False) -> Any:
        """From the JSON object of `field`; `fill`: missing keys take their defaults (version 1)."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise _bad(field, "a JSON object with " + ", ".join(repr(n) for n in cls._names()), value)
        unknown = sorted(str(k) for k in value if k not in cls._names())
        if unknown:
            raise ValueError(f"model description: unknown field '{field}.{unknown[0]}'; {field} has " + ", ".join(cls._names()))
        missing = [n for n in cls._names() if n not in value]
        if missing and not fill:
            raise ValueError(f"model description: {field!r} lacks {missing[0]!r}")
        try:
            return cls(**value)
        except TypeError:  # a required key missing even though `fill`
            raise ValueError(f"model description: {field!r} lacks {missing[0]!r}") from None


@dataclasses.dataclass(frozen=True)
class Normalization(_Fields):
    """x = (pixel - mean) / std per RGB channel, pixels in 0..255."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        wanted = "a list of 3 numbers (R, G, B)"
        _set(self, "mean", tuple(_number(f"normalization.mean[{i}]", v) for i, v in
                                 enumerate(_items("normalization.mean", self.mean, wanted, length=3))))
        _set(self, "std", tuple(_number(f"normalization.std[{i}]", v, positive=True) for i, v in
                                enumerate(_items("normalization.std", self.std, wanted, length=3))))


@dataclasses.dataclass(frozen=True)
class Preprocessing(_Fields):
    """How an image of any size becomes the model input (`ksac_runtime.preprocess`, where the values are
    defined and implemented); the defaults are THE contract, `INFERENCE_PREPROCESSING`."""

    resize: str = INFERENCE_PREPROCESSING["resize"]
    interpolation: str = INFERENCE_PREPROCESSING["interpolation"]
    anchor: str = INFERENCE_PREPROCESSING["anchor"]
    pad: str = INFERENCE_PREPROCESSING["pad"]

    def __post_init__(self) -> None:
        for name in self._names():
            _choice(f"preprocessing.{name}", getattr(self, name), SUPPORTED[name])


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What a zoo model is and how to feed it; the fields of ksac_runtime/model_description.schema.json.

    Built by `zoo.build_model`, carried by the model (`zoo.describe(model)`), stored in every exported
    `.tflite` file (`read_description(path)`). Every field is checked when the object is made (also by
    `replace`), so a description in hand is a valid one; errors name the field.

    Example:
    >>> d = read_description("runs/latest/model_int8.tflite")   # doctest: +SKIP
    >>> d.input_size, d.normalization.mean, d.label_names[:2]    # doctest: +SKIP
    ((513, 513), (127.5, 127.5, 127.5), ('background', 'aeroplane'))
    """

    name: str  # registry name, e.g. mobilenetv2_ksac
    backbone: str  # mobilenetv2, xception65
    head: str  # ksac, aspp
    decoder: bool  # the DeepLabV3+ decoder follows the head
    rates: tuple[int, ...]  # atrous rates, in pixels of the feature map
    output_stride: int  # input size / feature-map size of the backbone
    input_size: tuple[int, int]  # (height, width) of the model input
    num_classes: int  # background (0) included
    label_names: tuple[str, ...]  # one per class
    width: float  # backbone width multiplier
    head_filters: int  # channels of the head and the decoder
    normalization: Normalization
    preprocessing: Preprocessing
    data: str | None = None  # --data spec it was trained on (also the default calibration data)
    training: dict[str, Any] | None = None  # float training settings (free-form JSON object); read-only
    qat: bool | None = None  # True after quantization-aware training
    qat_training: dict[str, Any] | None = None  # QAT settings (free-form JSON object); read-only
    precision: str | None = None  # of an exported file: fp32, fp16, int8
    output: str | None = None  # of an exported file: logits or labels
    exporter: str | None = None  # of an exported file: ksac-aware or naive

    def __post_init__(self) -> None:
        _set(self, "name", _string("name", self.name, non_empty=True))
        _set(self, "backbone", _string("backbone", self.backbone, non_empty=True))
        _set(self, "head", _string("head", self.head, non_empty=True))
        _boolean("decoder", self.decoder)
        rates = _items("rates", self.rates, "a list of integers >= 1")
        _set(self, "rates", tuple(_integer(f"rates[{i}]", r, 1) for i, r in enumerate(rates)))
        _set(self, "output_stride", _choice("output_stride", _integer("output_stride", self.output_stride), OUTPUT_STRIDES))
        size = _items("input_size", self.input_size, "[height, width], two integers >= 1", length=2)
        _set(self, "input_size", tuple(_integer(f"input_size[{i}]", s, 1) for i, s in enumerate(size)))
        _set(self, "num_classes", _integer("num_classes", self.num_classes, 2))
        names = _items("label_names", self.label_names, "a list of strings, one per class", minimum=2)
        _set(self, "label_names", tuple(_string(f"label_names[{i}]", n) for i, n in enumerate(names)))
        if len(self.label_names) != self.num_classes:
            raise ValueError(
                f"model description: 'label_names' has {len(self.label_names)} names for {self.num_classes} classes"
            )
        _set(self, "width", _number("width", self.width, positive=True))
        _set(self, "head_filters", _integer("head_filters", self.head_filters, 1))
        _set(self, "normalization", Normalization._from_json("normalization", self.normalization))
        _set(self, "preprocessing", Preprocessing._from_json("preprocessing", self.preprocessing))
        if self.data is not None:
            _string("data", self.data)
        for name in ("training", "qat_training"):
            if getattr(self, name) is not None:
                _set(self, name, _json_object(name, getattr(self, name)))
        if self.qat is not None:
            _boolean("qat", self.qat)
        for name, choices in (("precision", PRECISIONS), ("output", OUTPUTS), ("exporter", EXPORTERS)):
            if getattr(self, name) is not None:
                _choice(name, getattr(self, name), choices)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelDescription:
        """From the JSON object of version 1 (no "version") or 2.

        Raises:
            ValueError: a version newer than `DESCRIPTION_VERSION` or not an integer (named), an unknown
                or missing field, or a field of the wrong type or value (named).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"model description must be a JSON object, got {type(data).__name__}")
        version = description_version(data)  # first: a newer format may have changed any other field
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in data if k not in names and k != "version")
        if unknown:
            raise ValueError(
                f"model description: unknown field {unknown[0]!r} (the fields of version {version} are those of "
                "ksac_runtime/model_description.schema.json)"
            )
        values = {k: v for k, v in data.items() if k != "version"}
        if version == 1:  # upgrade: files from before the contract was recorded have no "preprocessing"
            values.setdefault("preprocessing", {})
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"model description: missing field {missing[0]!r}")
        values["normalization"] = Normalization._from_json("normalization", values["normalization"])
        values["preprocessing"] = Preprocessing._from_json("preprocessing", values["preprocessing"], fill=version == 1)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the current version: "version" first, lists for tuples, unset optional fields left out."""
        out: dict[str, Any] = {"version": DESCRIPTION_VERSION}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, _Fields):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = json.loads(json.dumps(value))  # a copy: the caller may change it
            out[field.name] = value
        return out

    def to_json(self, indent: int | None = None) -> str:
        """The JSON text stored in `.tflite` files, UTF-8 encoded there (keys sorted, as every version has
        written them); `indent` for files people read (the Android app's model.json)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelDescription:
        """From JSON text (version 1 or 2); ValueError if it is not JSON or not a valid description."""
        try:
            data = json.loads(text)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"model description is not JSON ({error})") from None
        return cls.from_dict(data)

    def replace(self, **fields: Any) -> ModelDescription:
        """A copy with `fields` changed (checked like any new description)."""
        return dataclasses.replace(self, **fields)


def description_version(data: Mapping[str, Any]) -> int:
    """The version of a description's JSON object: 1 without "version"; ValueError naming a version that
    is not an integer >= 1 or newer than this code reads."""
    if "version" not in data:
        return 1
    version = data["version"]
    if not _is_integer(version) or version < 1:
        raise ValueError(f"model description: 'version' must be an integer >= 1, got {version!r}")
    if version > DESCRIPTION_VERSION:
        raise ValueError(
            f"model description version {version} is newer than this code reads (up to {DESCRIPTION_VERSION}); "
            "update ksac-runtime (or ksac-edge-zoo, which holds it)"
        )
    return int(version)


def read_description(model: Any) -> ModelDescription:
    """The typed description stored in a `.tflite` file (a path, its bytes or a parsed `ModelT`).

    Raises:
        FileNotFoundError: a path that is not a file.
        ValueError: not a TFLite file, a file without our description, or a description that is not
            valid (newer version, bad field), the message naming the file.
    """
    raw = read_metadata(model)
    try:
        return ModelDescription.from_dict(raw)
    except ValueError as error:
        raise ValueError(f"{model_name(model)}: {error}") from None
