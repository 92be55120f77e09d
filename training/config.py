"""Experiment configs: typed dataclasses holding every default in one place, as Model Garden's configs do.

A command's config is resolved from, lowest priority first:

1. the dataclass defaults below;
2. (QAT only) what the model being fine-tuned was trained with;
3. (with `--resume`) the run folder's `config.yaml`;
4. `--config FILE`, a YAML or JSON file with any subset of the sections, e.g.
   ``{"model": {"name": "mobilenetv2_ksac"}, "optimizer": {"lr": 0.01}}``;
5. command-line flags (each flag names one field; see the `FLAGS` table of each command).

A layer that changes the output stride but gives no rates re-derives them (`resolve`).

Each run writes the resolved config to its run folder as `config.yaml`; `--resume`
reads it back, so a resumed run trains the same model on the same data in the same
order. The paper's Table 1 recipes are such files, in `configs/paper/`.

Example:
    >>> config = resolve(ExperimentConfig, {"model": {"name": "mobilenetv2_ksac"}})
    >>> config.optimizer.lr
    0.007
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

import yaml

CONFIG_FILE = "config.yaml"


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message names the file or field."""


@dataclass
class ModelConfig:
    """The network: `zoo.build_model` arguments (names come from the registry, `zoo.list_models()`)."""

    name: str | None = None  # e.g. "mobilenetv2_ksac"; --backbone/--head choose it too
    output_stride: int = 16
    rates: list[int] | None = None  # None: DeepLab's (6, 12, 18) at OS 16, doubled at OS 8 (see `resolve`)
    decoder: bool | None = None  # None: the registry's default for the model (Xception65: yes)
    width: float = 1.0
    head_filters: int = 256
    dropout: float = 0.1
    input_size: int | None = None  # side recorded in the saved model; None: the crop size
    bn_momentum: float | None = None  # None: the model's own (0.999 MobileNetV2, 0.9997 elsewhere)
    weights: str | None = None  # initial weights: a Keras HDF5 file or a trained .keras model


@dataclass
class DataConfig:
    """The training data and its batching."""

    train: str = "synthetic"  # synthetic | voc:PATH | sbd:PATH | trainaug:VOC,SBD | ade20k:PATH | folder:PATH
    crop_size: int = 513
    batch_size: int = 8  # GLOBAL batch, split evenly across replicas
    check: bool = True  # decode every sample before training starts


@dataclass
class OptimizerConfig:
    """The optimiser and the loss' weight decay."""

    name: str = "sgd"  # sgd (the paper's) | adam
    lr: float = 0.007  # initial rate for the GLOBAL batch (DeepLab's at batch 16)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 4e-5  # wd * sum(w^2) / 2 over convolution kernels


@dataclass
class ScheduleConfig:
    """The poly learning-rate schedule: lr * (1 - step / steps) ^ power."""

    steps: int = 30000
    poly_power: float = 0.9


@dataclass
class TrainingConfig:
    """How the loop runs: seed, run folder, checkpoints, logging, distribution."""

    seed: int = 0  # initialisation, data order, augmentation and dropout
    out: str | None = None  # run folder; None: runs/<model>-<timestamp>/
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    strategy: str = "auto"  # auto | default | mirrored | multiworker
    cpu_replicas: int = 0  # split the CPU into N logical devices (a testing aid)
    float64: bool = False  # train in float64 (a numerical check: rounding vs logic); the saved model is float32


@dataclass
class ExportConfig:
    """The TFLite export (`convert/to_tflite.py`)."""

    precision: str = "fp32"  # fp32 | fp16 | int8
    int8_io: bool = False
    output: str = "logits"  # logits | labels
    input_size: int | None = None  # None: the model's input size
    calibration: str | None = None  # None: the data the model was trained on
    calibration_steps: int = 100
    parity_images: int = 8
    check_gpu: bool = False  # also run the file on LiteRT's GPU accelerator against LiteRT CPU


@dataclass
class BenchmarkConfig:
    """The deployed-model benchmark (`benchmarks/run.py`); `quick` applies `QUICK_BENCHMARK` below it."""

    models: list[str] = field(default_factory=lambda: ["mobilenetv2_ksac", "mobilenetv2_aspp"])
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    threads: list[int] = field(default_factory=lambda: [1, 2])
    input_size: int = 513
    output_stride: list[int] = field(default_factory=lambda: [16])
    device: str = "cpu"  # cpu | gpu
    trained: str | None = None  # a run folder: benchmark its model.keras (and its mIoU)
    out: str | None = None  # None: benchmarks/results/<timestamp>/
    json: str | None = None
    quick: bool = False
    calibration_steps: int = 100
    check_parity: bool = True
    warmup: int = 3
    runs: int = 30


# What --quick changes (flags and --config still override it): about 5 minutes on a 2-core CPU.
QUICK_BENCHMARK = {"precisions": ["fp32", "int8"], "input_size": 257, "calibration_steps": 16, "check_parity": False, "runs": 20}


@dataclass
class ExperimentConfig:
    """Float training (`training/train.py`): model, data, optimiser, schedule, loop."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


@dataclass
class QATConfig:
    """What is specific to quantization-aware fine-tuning (`quantize/qat.py`)."""

    model: str = os.path.join("runs", "latest", "model.keras")  # the trained float model
    batchnorm: str = "frozen"  # frozen: moving statistics, as the export folds them | train
    calibration_steps: int = 100  # images for the quantizers' initial ranges and the export
    lr_scale: float = 0.1  # without optimizer.lr: this fraction of the model's training rate
    export: bool = True  # False: stop after model_qat.keras


@dataclass
class QATExperimentConfig:
    """QAT: the float training sections (defaults from the trained model) plus `qat`."""

    qat: QATConfig = field(default_factory=QATConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(steps=1000))
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(checkpoint_every=100, keep_checkpoints=2))


Config = TypeVar("Config")


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
    """Builds dataclass `cls` from a nested dict; ConfigError names an unknown or mistyped field."""
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
    """`cls`'s defaults overridden by each of `layers` in turn (nested dicts, e.g. a file, then flags).

    One rule couples two fields: a layer that changes `model.output_stride` without giving
    `model.rates` re-derives the rates (None: DeepLab's for the new stride, see
    `zoo.registry.default_rates`). Rates are in pixels of the feature map, so rates meant for
    one stride are wrong at another; `--config recipe.yaml --output-stride 8` thus gets the
    same rates as `--output-stride 8` alone, (12, 24, 36). A layer that gives both keeps its rates.
    """
    values: dict[str, Any] = {}
    for layer in layers:
        values = merge(values, _rederive_rates(cls, values, layer))
    return from_dict(cls, values, where)


def _rederive_rates(cls: type, below: Mapping[str, Any], layer: Mapping[str, Any]) -> Mapping[str, Any]:
    """`layer`, with `model.rates` reset to None if it changes the output stride of `below` and gives no rates."""
    if not (dataclasses.is_dataclass(cls) and typing.get_type_hints(cls).get("model") is ModelConfig):
        return layer
    model, before = layer.get("model"), below.get("model")
    if not isinstance(model, Mapping) or "output_stride" not in model or "rates" in model:
        return layer  # (a section that is not a mapping is reported by from_dict)
    before = before if isinstance(before, Mapping) else {}
    if model["output_stride"] == before.get("output_stride", ModelConfig.output_stride):
        return layer
    return merge(layer, {"model": {"rates": None}})


def flag_overrides(args: Any, flags: Mapping[str, str]) -> dict[str, Any]:
    """The nested override dict of the flags that were given (not None), by the `flags` table
    (argparse dest -> dotted config field, e.g. ``{"lr": "optimizer.lr"}``)."""
    out: dict[str, Any] = {}
    for dest, path in flags.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        *sections, name = path.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return out


def add_loop_flags(parser: Any, log_name: str) -> None:
    """The flags of the shared training loop (`training.trainer`), as train.py and qat.py both take them."""
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (the final step is always checkpointed)")
    parser.add_argument("--log-every", type=int, help=f"steps between progress lines / {log_name} rows (the final step is always logged)")
    parser.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"),
                        help="auto: multiworker if TF_CONFIG describes a cluster (several machines, one process each; "
                        "docs/multi-machine-training.md), mirrored (with synchronized BatchNorm) if several GPUs "
                        "are visible, else one device")  # fmt: skip
    parser.add_argument("--cpu-replicas", type=int, help="split the CPU into N logical devices and mirror across them "
                        "(a testing aid for multi-replica code without GPUs)")  # fmt: skip
    parser.add_argument("--no-data-check", dest="data_check", action="store_const", const=False,
                        help="skip decoding every training sample up front (bad files then stop the run when reached)")


def document_defaults(parser: Any, flags: Mapping[str, str], defaults: Any) -> None:
    """Appends each flag's default (from the config dataclass, their one home) and its config field to its help."""
    for action in parser._actions:
        if action.dest in flags and action.const is not False:  # not the --no-X switches
            default = get(defaults, flags[action.dest])
            shown = "" if default is None or "(none:" in (action.help or "") else f"default: {default}; "
            action.help = f"{action.help} ({shown}config field {flags[action.dest]})"


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


def build_model_from_config(
    model: ModelConfig,
    num_classes: int,
    *,
    input_size: int | None = None,
    label_names: list[str] | None = None,
    sync_batchnorm: bool = False,
    weights: str | None = None,
):
    """`zoo.build_model` with a `ModelConfig`'s settings (`input_size` default: `model.input_size`, else 513)."""
    from zoo import build_model

    return build_model(
        model.name,
        num_classes=num_classes,
        input_size=input_size or model.input_size or 513,
        output_stride=model.output_stride,
        rates=model.rates,
        decoder=model.decoder,
        width=model.width,
        head_filters=model.head_filters,
        dropout=model.dropout,
        sync_batchnorm=sync_batchnorm,
        bn_momentum=model.bn_momentum,
        label_names=label_names,
        backbone_weights=weights,
    )


def write(config: Any, folder: str) -> str:
    """Writes `folder/config.yaml` atomically; returns its path."""
    path = os.path.join(folder, CONFIG_FILE)
    from zoo.files import atomic_write_text  # zoo imports TensorFlow: keep `--help` fast

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
    return path
