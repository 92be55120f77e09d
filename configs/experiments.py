"""Experiment configs: typed dataclasses holding every default in one place, as Model Garden's configs do.

One dataclass per section (`ModelConfig`, `DataConfig`, ...), grouped per command:
`ExperimentConfig` (training/train.py, whose `export` section convert/to_tflite.py reads),
`QATExperimentConfig` (quantize/qat.py), `ExportConfig` (convert/to_tflite.py) and `BenchmarkConfig`
(benchmarks/run.py).
Each checks its own values in `validate()` (ConfigError naming the field), which
`configs.resolve` calls on every config it resolves; what a value needs beyond the config
(a file, the trained model) is checked by the command.

The method is `validate`, not `check`: `DataConfig` has a field named `check`. It is not
`__post_init__` either, because the engine builds defaults and partial files (a section of a
`--config` file, `ExperimentConfig()` for `--help`) that are not complete configs yet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from configs.engine import ConfigError
from inference.description import EXPORTERS, PRECISIONS
from zoo.registry import DEFAULT_INPUT_SIZE, OUTPUT_STRIDES, build_model, default_rates, list_models, model_spec

# Keras mixed-precision policies train.py offers (`none`: float32 throughout).
MIXED_PRECISIONS = ("none", "bfloat16", "float16")


def _one_of(names: Sequence[str]) -> str:
    """("a", "b", "c") as "a, b or c", for messages."""
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _check_positive(path: str, value: int) -> None:
    """ConfigError unless the count at dotted `path` is at least 1."""
    if value < 1:
        raise ConfigError(f"{path} must be positive, got {value}")


@dataclass
class ModelConfig:
    """The network: `zoo.build_model` arguments (names come from the registry, `zoo.list_models()`)."""

    name: str | None = None  # e.g. "mobilenetv2_ksac"; --backbone/--head choose it too
    output_stride: int | None = None  # None: the model's own (16; MobileNetV3's 32, as DeepLab's releases)
    rates: list[int] | None = None  # None: DeepLab's (6, 12, 18) at OS 16, doubled at OS 8 (see `resolve`)
    decoder: bool | None = None  # None: the registry's default for the model (Xception65: yes)
    width: float = 1.0
    head_filters: int | None = None  # None: the model's own (256 as in the paper; MobileNetV3's 128)
    dropout: float = 0.1
    input_size: int | None = None  # side recorded in the saved model; None: the crop size
    bn_momentum: float | None = None  # None: the model's own (0.999 MobileNetV2, 0.9997 elsewhere)
    weights: str | None = None  # initial weights: a Keras HDF5 file or a trained .keras model

    def validate(self) -> None:
        """ConfigError unless the model is named and registered."""
        if self.name is None:
            raise ConfigError("no model: give --backbone and --head, --model, or a --config with model.name (or --resume)")
        if self.name not in list_models():
            raise ConfigError(f"unknown model {self.name!r}; valid models: {', '.join(list_models())}")
        # The model's own stride and head width where none is given: a run's config.yaml states them.
        spec = model_spec(self.name)
        if self.output_stride is None:
            self.output_stride = spec.output_stride
        if self.head_filters is None:
            self.head_filters = spec.head_filters

    def fill_built_values(self, crop_size: int) -> None:
        """Replaces each None that means "the default" (input size, rates, decoder) by the value built,
        so that a run's config.yaml states what was built."""
        if self.input_size is None:
            self.input_size = crop_size
        if self.rates is None:
            self.rates = list(default_rates(self.output_stride, model_spec(self.name).head))
        if self.decoder is None:
            self.decoder = model_spec(self.name).decoder

    def build(
        self,
        num_classes: int,
        *,
        input_size: int | None = None,
        label_names: list[str] | None = None,
        sync_batchnorm: bool = False,
        weights: str | None = None,
        training_forms: bool = False,
    ) -> Any:
        """The tf_keras model: `zoo.build_model` with these settings (`input_size` default: `self.input_size`, else `DEFAULT_INPUT_SIZE`)."""
        return build_model(
            self.name,
            num_classes=num_classes,
            input_size=input_size or self.input_size or DEFAULT_INPUT_SIZE,
            output_stride=self.output_stride,
            rates=self.rates,
            decoder=self.decoder,
            width=self.width,
            head_filters=self.head_filters,
            dropout=self.dropout,
            sync_batchnorm=sync_batchnorm,
            bn_momentum=self.bn_momentum,
            label_names=label_names,
            backbone_weights=weights,
            training_forms=training_forms,
        )


# The function form, build_model_from_config(model_config, num_classes, ...), as callers name it.
build_model_from_config = ModelConfig.build


@dataclass
class DataConfig:
    """The training data and its batching."""

    train: str = "synthetic"  # synthetic | voc:PATH | sbd:PATH | trainaug:VOC,SBD | ade20k:PATH | folder:PATH
    crop_size: int = DEFAULT_INPUT_SIZE
    batch_size: int = 8  # GLOBAL batch, split evenly across replicas
    check: bool = True  # decode every sample before training starts

    def validate(self) -> None:
        _check_positive("data.batch_size", self.batch_size)


@dataclass
class OptimizerConfig:
    """The optimiser and the loss' weight decay."""

    name: str = "sgd"  # sgd (the paper's) | adam
    lr: float = 0.007  # initial rate for the GLOBAL batch (DeepLab's at batch 16)
    momentum: float = 0.9  # SGD only
    weight_decay: float = 4e-5  # wd * sum(w^2) / 2 over convolution kernels

    def validate(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optimizer.lr must be positive, got {self.lr}")


@dataclass
class ScheduleConfig:
    """The poly learning-rate schedule: lr * (1 - step / steps) ^ power."""

    steps: int = 30000
    poly_power: float = 0.9

    def validate(self) -> None:
        _check_positive("schedule.steps", self.steps)


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
    # Keras' mixed policy for the model that trains: none | bfloat16 | float16 (loss-scaled). Variables
    # stay float32, and the saved model is float32 as with none (docs/training.md: measured speeds).
    mixed_precision: str = "none"
    jit_compile: bool = False  # compile each training step with XLA

    def validate(self) -> None:
        for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
            _check_positive(f"training.{name}", getattr(self, name))
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(f"training.mixed_precision must be {_one_of(MIXED_PRECISIONS)}, got {self.mixed_precision!r}")
        if self.float64 and self.mixed_precision != "none":
            raise ConfigError("--float64 and --mixed-precision exclude each other: float64 trains every op in float64")


@dataclass
class ExportConfig:
    """The TFLite export (`convert/to_tflite.py`)."""

    precision: str = "fp32"  # one of PRECISIONS: fp32 | fp16 | int8
    int8_io: bool = False
    output: str = "logits"  # logits | labels
    input_size: int | None = None  # None: the model's input size
    calibration: str | None = None  # None: the data the model was trained on
    calibration_steps: int = 100
    parity_images: int = 8
    check_gpu: bool = False  # also run the file on LiteRT's GPU accelerator against LiteRT CPU
    check_arm: bool = False  # also run the file in LiteRT's ARM64 build under emulation (inference/arm.py)

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"export.precision must be {_one_of(PRECISIONS)}, got {self.precision!r}")
        if self.output not in ("logits", "labels"):
            raise ConfigError(f"export.output must be logits or labels, got {self.output!r}")
        if self.int8_io and self.precision != "int8":
            raise ConfigError("--int8-io needs --int8")


@dataclass
class BenchmarkConfig:
    """The deployed-model benchmark (`benchmarks/run.py`); `quick` applies `QUICK_BENCHMARK` below it."""

    models: list[str] = field(default_factory=lambda: ["mobilenetv2_ksac", "mobilenetv2_aspp"])
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    exporters: list[str] = field(default_factory=lambda: list(EXPORTERS))  # ksac-aware, naive
    threads: list[int] = field(default_factory=lambda: [1, 2])
    input_size: int = DEFAULT_INPUT_SIZE
    output_stride: list[int] = field(default_factory=list)  # empty: each model's own (16; MobileNetV3's 32)
    widths: list[float] = field(default_factory=lambda: [1.0])  # backbone width multipliers (depth multiplier)
    device: str = "cpu"  # cpu | gpu
    trained: str | None = None  # a run folder: benchmark its model.keras (and its mIoU)
    check_arm: bool = False  # also run every file on LiteRT's ARM64 kernels under emulation (inference/arm.py)
    out: str | None = None  # None: benchmarks/results/<timestamp>/
    json: str | None = None
    quick: bool = False
    calibration_steps: int = 100
    check_parity: bool = True
    warmup: int = 3
    runs: int = 30

    def validate(self) -> None:
        """ConfigError naming the first value that cannot be benchmarked (by its flag, as the command reports it)."""
        for name in self.models:
            if name not in list_models():
                raise ConfigError(f"unknown model {name!r} in --models; valid models: {', '.join(list_models())}")
        for precision in self.precisions:
            if precision not in PRECISIONS:
                raise ConfigError(f"unknown precision {precision!r} in --precisions; valid: {', '.join(PRECISIONS)}")
        for exporter in self.exporters:
            if exporter not in EXPORTERS:
                raise ConfigError(f"unknown exporter {exporter!r} in --exporters; valid: {', '.join(EXPORTERS)}")
        for count in self.threads:
            if count < 1:
                raise ConfigError(f"--threads values must be at least 1, got {count}")
        for width in self.widths:
            if not 0 < width <= 2:
                raise ConfigError(f"--widths values must be in (0, 2], got {width}")
        for stride in self.output_stride:
            if stride not in OUTPUT_STRIDES:
                raise ConfigError(f"--output-stride {stride} is not one of {', '.join(map(str, OUTPUT_STRIDES))}")
        if self.device not in ("cpu", "gpu"):
            raise ConfigError(f"device must be cpu or gpu, got {self.device!r}")
        if self.input_size < 33:
            raise ConfigError(f"--input-size must be at least 33, got {self.input_size}")


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

    def validate(self) -> None:
        """Each section's `validate`, and the crop against the output stride (ConfigError naming the first bad value)."""
        model, data = self.model, self.data
        model.validate()
        if data.crop_size < model.output_stride:
            raise ConfigError(f"--crop-size {data.crop_size} is smaller than the output stride {model.output_stride}")
        for section in (self.schedule, data, self.training, self.optimizer, self.export):
            section.validate()


@dataclass
class QATConfig:
    """What is specific to quantization-aware fine-tuning (`quantize/qat.py`)."""

    model: str = os.path.join("runs", "latest", "model.keras")  # the trained float model
    batchnorm: str = "frozen"  # frozen: moving statistics, as the export folds them | train
    calibration_steps: int = 100  # images for the quantizers' initial ranges and the export
    lr_scale: float = 0.1  # without optimizer.lr: this fraction of the model's training rate
    export: bool = True  # False: stop after model_qat.keras

    def validate(self) -> None:
        _check_positive("qat.calibration_steps", self.calibration_steps)
        if self.batchnorm not in ("frozen", "train"):
            raise ConfigError(f"qat.batchnorm must be frozen or train, got {self.batchnorm!r}")


@dataclass
class QATExperimentConfig:
    """QAT: the float training sections (defaults from the trained model) plus `qat`.

    The crop against the model's output stride is checked by `quantize.finetune`, which reads the stride from the model.
    """

    qat: QATConfig = field(default_factory=QATConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(steps=1000))
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(checkpoint_every=100, keep_checkpoints=2))

    def validate(self) -> None:
        """Each section's `validate`; QAT fine-tunes with SGD only."""
        for section in (self.schedule, self.data, self.qat, self.training, self.optimizer):
            section.validate()
        if self.optimizer.name != "sgd":
            raise ConfigError(f"QAT fine-tunes with SGD; optimizer.name {self.optimizer.name!r} is not supported")
        if self.training.mixed_precision != "none":
            raise ConfigError(
                f"QAT trains in float32 (its fake quantization models int8 from float32 values); "
                f"training.mixed_precision {self.training.mixed_precision!r} is not supported"
            )

