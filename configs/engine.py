"""The config engine: builds a config dataclass from layers of nested dicts, type-checks it, writes it back.

A command's config is resolved from, lowest priority first:

1. the dataclass defaults (`configs/experiments.py`);
2. (QAT only) what the model being fine-tuned was trained with;
3. (with `--resume`) the run folder's `config.yaml`;
4. `--config FILE`, a YAML or JSON file with any subset of the sections, e.g.
   ``{"model": {"name": "mobilenetv2_ksac"}, "optimizer": {"lr": 0.01}}``, or the name of a recipe
   packaged with the configs, e.g. `paper/mobilenetv2_ksac` (`find_config`);
5. command-line flags (each flag names one field; see the `FLAGS` table of each command).

A layer that changes the output stride but gives no rates re-derives them (`resolve`), and
the resolved config checks its own values (its `validate()` method), so every command
refuses the same bad value with the same message.

Each run writes the resolved config to its run folder as `config.yaml` (`write`); `--resume`
reads it back (`read_saved_config`, `check_resumable`), so a resumed run trains the same model
on the same data in the same order.

The merge and the type checks are hand-written, a few dozen lines over `dataclasses` and
`typing`, rather than a new dependency (dacite, pydantic, OmegaConf): their messages name the
file and the field as the commands' do, and the rates rule sits between the layers.

Example:
    >>> from configs import ExperimentConfig
    >>> config = resolve(ExperimentConfig, {"model": {"name": "mobilenetv2_ksac"}})
    >>> config.optimizer.lr
    0.007
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, Mapping, TypeVar

import yaml

from common.files import atomic_write_text

CONFIG_FILE = "config.yaml"
# The recipes packaged with the configs (configs/paper/*.yaml; package data of an installed toolkit).
RECIPES_DIR = os.path.dirname(os.path.abspath(__file__))
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")

Config = TypeVar("Config")


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message names the file or field."""


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s values, section by section (nested dicts merge, other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[Config], values: Mapping[str, Any], where: str = "config") -> Config:
    """Builds dataclass `cls` from a nested dict; ConfigError names an unknown or mistyped field.

    Only the types are checked here: a file may hold part of a config (`read_file`), whose values
    are checked once resolved (`resolve`).
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; valid fields: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            _check_section(where, name, value)
            default = next(f for f in dataclasses.fields(cls) if f.name == name).default_factory()
            kwargs[name] = from_dict(hint, merge(to_dict(default), value or {}), f"{where}.{name}")
        else:
            kwargs[name] = _check_type(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def _check_section(where: str, name: str, value: Any) -> None:
    """ConfigError unless section `name` is a mapping of fields or empty (e.g. `model: foo` is refused)."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: section {name!r} must be a mapping of fields (`{name}:` then indented `field: value` lines), "
            f"got {type(value).__name__} {value!r}"
        )


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """`value` if it fits `hint` (int accepted for float; a tuple for a list), else ConfigError."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and isinstance(value, option):
            return value
        if typing.get_origin(option) is list and isinstance(value, (list, tuple)):
            item = typing.get_args(option)[0]
            return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (what `config.yaml` holds)."""
    return dataclasses.asdict(config)


def recipes() -> list[str]:
    """The names of the packaged recipes, e.g. "paper/mobilenetv2_ksac" (configs/paper/mobilenetv2_ksac.yaml)."""
    found = []
    for folder, _, files in os.walk(RECIPES_DIR):
        for name in files:
            if name.endswith(RECIPE_SUFFIXES):
                relative = os.path.relpath(os.path.join(folder, name), RECIPES_DIR)
                found.append(os.path.splitext(relative)[0].replace(os.sep, "/"))
    return sorted(found)


def find_config(value: str) -> str:
    """The file a `--config` value names: the path itself where it is a file, else a packaged recipe.

    A recipe is named by its path under configs/, with or without its suffix and with or without a
    leading "configs/": `paper/mobilenetv2_ksac`, `configs/paper/mobilenetv2_ksac.yaml`. So the docs'
    commands work from any folder, and with a toolkit installed by `pip install .`, whose recipes are
    package data (the checkout's configs/ is then not where the command runs).

    Raises:
        ConfigError: neither a file nor a recipe (the message lists the recipes).
    """
    if os.path.isfile(value):
        return value
    name = value.replace(os.sep, "/")
    name = name[len("configs/"):] if name.startswith("configs/") else name
    if not os.path.isabs(value) and ".." not in name.split("/"):
        for candidate in (name, *(name + suffix for suffix in RECIPE_SUFFIXES)):
            path = os.path.join(RECIPES_DIR, *candidate.split("/"))
            if path.endswith(RECIPE_SUFFIXES) and os.path.isfile(path):
                return path
    raise ConfigError(f"config file not found: {value} (nor a recipe of that name; the recipes: {', '.join(recipes())})")


def read_file(path: str, schema: type | None = None, *, sections: bool = True) -> dict[str, Any]:
    """A config file's contents (YAML, or JSON, which YAML reads too); ConfigError naming the file.

    Every top-level value must be a section: a mapping of fields, or empty (returned as {}: its
    defaults). `sections=False` reads a flat file (the config.json of old runs) as it is. With
    `schema` (a config dataclass), the fields are checked against it too, so that an unknown or
    mistyped field is reported with the file's name.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not a YAML or JSON file: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    if sections:
        for name, value in values.items():
            _check_section(path, name, value)
        values = {name: value or {} for name, value in values.items()}
    if schema is not None:
        from_dict(schema, values, where=path)
    return values


def resolve(cls: type[Config], *layers: Mapping[str, Any], where: str = "config") -> Config:
    """`cls`'s defaults overridden by each of `layers` in turn (nested dicts, e.g. a file, then flags),
    then checked by the config's own `validate()` (ConfigError naming the first value that cannot be used).

    One rule couples two fields: a layer that changes `model.output_stride` without giving
    `model.rates` re-derives the rates (None: DeepLab's for the new stride, see
    `zoo.registry.default_rates`). Rates are in pixels of the feature map, so rates meant for
    one stride are wrong at another; `--config recipe.yaml --output-stride 8` thus gets the
    same rates as `--output-stride 8` alone, (12, 24, 36). A layer that gives both keeps its rates.
    """
    values: dict[str, Any] = {}
    for layer in layers:
        values = merge(values, _rederive_rates(cls, values, layer))
    config = from_dict(cls, values, where)
    # Here, the one place every command's config passes through: each config checks its own values.
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _rederive_rates(cls: type, below: Mapping[str, Any], layer: Mapping[str, Any]) -> Mapping[str, Any]:
    """`layer`, with `model.rates` reset to None if it changes the output stride of `below` and gives no rates.

    It applies to a config whose `model` section has `output_stride` and `rates` (`ModelConfig`).
    """
    model_section = typing.get_type_hints(cls).get("model") if dataclasses.is_dataclass(cls) else None
    if not (dataclasses.is_dataclass(model_section) and {"output_stride", "rates"} <= {f.name for f in dataclasses.fields(model_section)}):
        return layer
    model, before = layer.get("model"), below.get("model")
    if not isinstance(model, Mapping) or "output_stride" not in model or "rates" in model:
        return layer  # (a section that is not a mapping is reported by from_dict)
    before = before if isinstance(before, Mapping) else {}
    if model["output_stride"] == before.get("output_stride", model_section.output_stride):
        return layer
    return merge(layer, {"model": {"rates": None}})


def get(config: Any, path: str) -> Any:
    """The field at a dotted `path`, e.g. ``get(config, "optimizer.lr")``."""
    value = config
    for name in path.split("."):
        value = getattr(value, name)
    return value


def differences(config: Any, saved: Any, paths: typing.Iterable[str]) -> list[str]:
    """The dotted paths among `paths` whose values differ between two configs."""
    return [path for path in paths if get(config, path) != get(saved, path)]


def read_saved_config(run_dir: str, written_by: str, schema: type) -> dict[str, Any]:
    """The config layer a run folder was written with (`run_dir/config.yaml`), for `--resume`.

    ConfigError if the folder has none (`written_by`, e.g. "quantize/qat.py", says which command
    writes it) or if a field does not fit `schema` (the command's config dataclass; names the file).
    """
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"--resume: {path} not found; is {run_dir} a run folder of {written_by}?")
    return read_file(path, schema)


def check_resumable(
    config: Any, saved_layer: Mapping[str, Any], locked: typing.Iterable[str], *, where: str, flags: Mapping[str, str] | None = None
) -> None:
    """`--resume`'s rule, as train.py and qat.py both apply it: the resolved `config` keeps every `locked`
    field (the model, the data and its order) of the run's saved config, `saved_layer` (read from `where`).

    ConfigError naming the first field that differs, by its flag when the command's `flags` table
    (argparse dest -> field) has one.
    """
    saved = resolve(type(config), saved_layer, where=where)
    changed = differences(config, saved, locked)
    if changed:
        field = changed[0]
        name = next((f"--{dest.replace('_', '-')} ({field})" for dest, path in (flags or {}).items() if path == field), field)
        raise ConfigError(f"--resume: {name} {get(config, field)!r} differs from the run's {get(saved, field)!r} (see {where})")


def write(config: Any, folder: str) -> str:
    """Writes `folder/config.yaml` atomically; returns its path."""
    path = os.path.join(folder, CONFIG_FILE)
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
    return path
