"""The one typed model description (`inference.description.ModelDescription`) against its contract,
ksac_runtime/model_description.schema.json: round trips, version 1 files, newer versions refused, bad
fields named, the dataclass and the schema naming the same fields, real exports and `.keras` files of
the previous version.

(The Java and JavaScript readers check the same schema in their own tests: android_demo/core's
DescriptionSchemaTest and tests/test_description_schema_js.py.)
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from inference.description import (
    DESCRIPTION_VERSION,
    EXPORTERS,
    OUTPUT_STRIDES,
    OUTPUTS,
    PRECISIONS,
    SCHEMA_PATH,
    ModelDescription,
    Normalization,
    Preprocessing,
    read_description,
)
from inference.preprocess import INFERENCE_PREPROCESSING, SUPPORTED

SCHEMA = json.loads(Path(SCHEMA_PATH).read_text())


def validate(description: dict[str, Any]) -> None:
    """jsonschema's validation of a stored description (draft 2020-12, as the schema declares)."""
    import jsonschema

    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(description)


def v2_dict() -> dict[str, Any]:
    """A description of an exported file as version 2 stores it (every optional field set)."""
    return {
        "version": 2, "name": "mobilenetv2_ksac", "backbone": "mobilenetv2", "head": "ksac", "decoder": False,
        "rates": [6, 12, 18], "output_stride": 16, "input_size": [65, 97], "num_classes": 3,
        "label_names": ["background", "road", "tree"], "width": 0.35, "head_filters": 16,
        "normalization": {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
        "preprocessing": dict(INFERENCE_PREPROCESSING), "data": "synthetic",
        "training": {"crop_size": 65, "batch_size": 2, "lr": 0.007, "seed": 0, "weight_decay": 4e-05, "steps": 3},
        "qat": True, "qat_training": {"steps": 2, "source": "runs/a/model.keras", "final_loss": None},
        "precision": "int8", "output": "logits", "exporter": "ksac-aware",
    }  # fmt: skip


def v1_dict() -> dict[str, Any]:
    """The same description as written before versions: no "version", and (older still) no "preprocessing"."""
    old = v2_dict()
    del old["version"], old["preprocessing"]
    return old


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validate(v2_dict())


def test_round_trip_dict_dataclass_dict_json() -> None:
    description = ModelDescription.from_dict(v2_dict())
    assert description.input_size == (65, 97) and description.rates == (6, 12, 18)
    assert description.normalization.mean == (127.5, 127.5, 127.5) and description.normalization["std"][0] == 127.5
    assert description.preprocessing == Preprocessing() and description.qat_training["steps"] == 2
    as_dict = description.to_dict()
    assert as_dict == v2_dict() and next(iter(as_dict)) == "version"
    assert ModelDescription.from_json(description.to_json()) == description
    assert json.loads(description.to_json()) == v2_dict()
    # Optional fields left unset are left out, not written as null.
    bare = description.replace(data=None, training=None, qat=None, qat_training=None, precision=None, output=None, exporter=None)
    assert set(bare.to_dict()) == set(SCHEMA["required"])
    validate(bare.to_dict())
    # A copy: changing what to_dict gave leaves the description as it was.
    as_dict["training"]["steps"] = 99
    assert description.training["steps"] == 3


def test_version_1_loads_as_version_2() -> None:
    description = ModelDescription.from_dict(v1_dict())
    assert description == ModelDescription.from_dict(v2_dict())
    assert description.preprocessing == Preprocessing()  # no "preprocessing" always meant the contract
    validate(description.to_dict())
    # A version-1 preprocessing with fields missing takes the contract's for them.
    partial = dict(v1_dict(), preprocessing={"resize": "stretch"})
    assert ModelDescription.from_dict(partial).preprocessing == Preprocessing(resize="stretch")
    assert ModelDescription.from_dict(dict(v1_dict(), version=1)) == description


@pytest.mark.parametrize("version", [3, 17])
def test_a_newer_version_is_refused_naming_it(version: int) -> None:
    with pytest.raises(ValueError) as error:
        ModelDescription.from_dict(dict(v2_dict(), version=version, new_field="x"))
    assert str(error.value) == (
        f"model description version {version} is newer than this code reads (up to {DESCRIPTION_VERSION}); "
        "update ksac-runtime (or ksac-edge-zoo, which holds it)"
    )


@pytest.mark.parametrize("version", ["2", 2.0, True, None, 0, -1])
def test_a_version_that_is_not_an_integer_from_1_is_refused_naming_it(version: Any) -> None:
    with pytest.raises(ValueError, match=f"'version' must be an integer >= 1, got {version!r}"):
        ModelDescription.from_dict(dict(v2_dict(), version=version))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_classes": "x"}, "model description: 'num_classes' must be an integer >= 2, got 'x'"),
        ({"num_classes": 1}, "'num_classes' must be an integer >= 2, got 1"),
        ({"num_classes": 4}, "'label_names' has 3 names for 4 classes"),
        ({"label_names": ["a", 7, "c"]}, "'label_names[1]' must be a string, got 7"),
        ({"input_size": [65]}, "'input_size' must be [height, width], two integers >= 1, got [65]"),
        ({"input_size": [65, 0]}, "'input_size[1]' must be an integer >= 1, got 0"),
        ({"output_stride": 12}, "'output_stride' must be one of 8, 16, 32, got 12"),
        ({"rates": "6,12"}, "'rates' must be a list of integers >= 1, got '6,12'"),
        ({"decoder": "no"}, "'decoder' must be true or false, got 'no'"),
        ({"width": 0}, "'width' must be a positive number, got 0"),
        ({"name": ""}, "'name' must be a non-empty string, got ''"),
        ({"normalization": {"mean": [1, 2, 3], "std": [1, 0, 1]}}, "'normalization.std[1]' must be a positive number, got 0"),
        ({"normalization": {"mean": [1, 2, 3]}}, "'normalization' lacks 'std'"),
        ({"normalization": [127.5, 127.5]}, "'normalization' must be a JSON object"),
        ({"normalization": {"mean": [1, 2, 3], "std": [1, 1, 1], "gamma": 2}}, "unknown field 'normalization.gamma'"),
        ({"preprocessing": dict(INFERENCE_PREPROCESSING, resize="crop")},
         "'preprocessing.resize' must be one of 'letterbox', 'stretch', got 'crop'"),
        ({"preprocessing": {"resize": "letterbox"}}, "'preprocessing' lacks 'interpolation'"),  # required in version 2
        ({"precision": "int4"}, "'precision' must be one of 'fp32', 'fp16', 'int8', got 'int4'"),
        ({"output": "probabilities"}, "'output' must be one of 'logits', 'labels', got 'probabilities'"),
        ({"exporter": "other"}, "'exporter' must be one of 'ksac-aware', 'naive', got 'other'"),
        ({"qat": 1}, "'qat' must be true or false, got 1"),
        ({"training": [1, 2]}, "'training' must be a JSON object, got [1, 2]"),
        ({"colour": "red"}, "model description: unknown field 'colour'"),
    ],
)  # fmt: skip
def test_bad_fields_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        ModelDescription.from_dict(dict(v2_dict(), **change))
    assert message in str(error.value)
    # The schema refuses the same descriptions (it is the contract the other languages check), all but
    # as many names as classes, which JSON Schema cannot say (every reader checks it in code).
    import jsonschema

    if "names for" not in message:
        with pytest.raises(jsonschema.ValidationError):
            validate(dict(v2_dict(), **change))


def test_missing_fields_and_non_objects_are_refused() -> None:
    for field in SCHEMA["required"]:
        if field == "version":
            continue
        with pytest.raises(ValueError, match=f"missing field '{field}'"):
            ModelDescription.from_dict({k: v for k, v in v2_dict().items() if k != field})
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        ModelDescription.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not JSON"):
        ModelDescription.from_json("{'name': 1}")


def test_replace_checks_like_from_dict() -> None:
    description = ModelDescription.from_dict(v2_dict())
    assert description.replace(input_size=[33, 33]).input_size == (33, 33)
    with pytest.raises(ValueError, match="'precision' must be one of"):
        description.replace(precision="fp64")
    with pytest.raises(dataclasses.FrozenInstanceError):
        description.name = "other"  # type: ignore[misc]


def test_every_field_of_the_dataclass_is_in_the_schema_and_back() -> None:
    """The dataclass and the schema cannot drift: the same fields, the same required ones, the same choices."""
    properties = SCHEMA["properties"]
    fields = {f.name: f for f in dataclasses.fields(ModelDescription)}
    assert set(fields) | {"version"} == set(properties)
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    assert required | {"version"} == set(SCHEMA["required"])
    assert properties["version"]["const"] == DESCRIPTION_VERSION
    for nested, kind in (("normalization", Normalization), ("preprocessing", Preprocessing)):
        names = [f.name for f in dataclasses.fields(kind)]
        assert set(names) == set(properties[nested]["properties"]) == set(properties[nested]["required"])
    for key, choices in SUPPORTED.items():
        assert tuple(properties["preprocessing"]["properties"][key]["enum"]) == choices
    assert tuple(properties["precision"]["enum"]) == PRECISIONS
    assert tuple(properties["output"]["enum"]) == OUTPUTS
    assert tuple(properties["exporter"]["enum"]) == EXPORTERS
    assert tuple(properties["output_stride"]["enum"]) == OUTPUT_STRIDES


def test_a_stored_description_that_is_not_valid_names_the_file(one_conv_tflite: bytes, tmp_path: Path) -> None:
    """Raw bytes (`with_entry`: what another tool or a newer version may have written): one clear error."""
    from tensorflow.lite.tools import flatbuffer_utils

    from convert.tflite_file import load_model, with_entry
    from inference.description import METADATA_NAME

    for payload, message in (
        (json.dumps(dict(v2_dict(), version=3)), "model description version 3 is newer than this code reads"),
        (json.dumps({"name": "one_conv", "num_classes": 2}), "missing field 'backbone'"),
        ("[1, 2]", "is not a JSON object"),
    ):
        model = with_entry(load_model(one_conv_tflite), METADATA_NAME, payload.encode())
        path = tmp_path / "stored.tflite"
        path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
        with pytest.raises(ValueError, match=message) as error:
            read_description(path)
        assert str(error.value).startswith(str(path))


def test_the_description_of_a_built_model_validates(make_tiny_model) -> None:
    from zoo import describe, update_description

    model = make_tiny_model("mobilenetv2_ksac")
    description = describe(model)
    assert isinstance(description, ModelDescription) and description.input_size == (65, 65)
    validate(description.to_dict())
    update_description(model, data="synthetic", training={"steps": 1})
    assert describe(model) == description.replace(data="synthetic", training={"steps": 1})
    with pytest.raises(ValueError, match="'data' must be a string"):
        update_description(model, data=7)


@pytest.mark.slow
def test_the_description_stored_by_a_real_export_validates(make_tiny_export_model, tmp_path: Path) -> None:
    from convert.export import export_tflite
    from inference.description import read_metadata
    from zoo import describe

    model = make_tiny_export_model("mobilenetv2_ksac")
    result = export_tflite(model, "int8", calibration_steps=2, check_parity=False)
    path = tmp_path / "tiny_int8.tflite"
    path.write_bytes(result.tflite)
    stored = read_metadata(path)  # the raw JSON object, as the Java and JavaScript readers get it
    print(json.dumps(stored, sort_keys=True))
    validate(stored)
    assert stored["version"] == DESCRIPTION_VERSION
    description = read_description(path)
    assert description == describe(model).replace(precision="int8", output="logits", exporter="ksac-aware", data="synthetic")
    assert description.to_dict() == stored


def _as_previous_version(path: Path, out: Path) -> dict[str, Any]:
    """Rewrites a `.keras` file as the previous version saved it: the layer's class named ModelDescription,
    its description without "version". Returns that description."""
    with zipfile.ZipFile(path) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    config = json.loads(entries["config.json"])
    (layer,) = [layer for layer in config["config"]["layers"] if layer["name"] == "model_description"]
    assert layer["class_name"] == "DescriptionLayer" and layer["registered_name"] == "ksac_zoo>ModelDescription"
    layer["class_name"] = "ModelDescription"
    old = layer["config"]["description"]
    del old["version"]
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    return old


def test_a_keras_file_of_the_previous_version_loads_and_describes_as_version_2(make_tiny_model, tmp_path: Path) -> None:
    from zoo import describe, update_description
    from zoo.saving import atomic_save_keras, load_keras_model

    model = make_tiny_model("mobilenetv2_ksac")
    update_description(model, data="synthetic", training={"steps": 1})
    atomic_save_keras(model, str(tmp_path / "new.keras"))
    old = _as_previous_version(tmp_path / "new.keras", tmp_path / "old.keras")
    assert "version" not in old and old["data"] == "synthetic"

    loaded = load_keras_model(str(tmp_path / "old.keras"))
    assert describe(loaded) == describe(model)
    assert describe(loaded).to_dict()["version"] == DESCRIPTION_VERSION
    # Saved again, it is a version-2 file.
    atomic_save_keras(loaded, str(tmp_path / "again.keras"))
    config = json.loads(zipfile.ZipFile(tmp_path / "again.keras").read("config.json"))
    (layer,) = [layer for layer in config["config"]["layers"] if layer["name"] == "model_description"]
    assert layer["config"]["description"]["version"] == DESCRIPTION_VERSION
    validate(layer["config"]["description"])
