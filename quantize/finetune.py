"""Quantization-aware fine-tuning: the shared training loop (`training.trainer`) on a tfmot model.

`run_qat(config)` loads a trained `.keras` model, makes it quantization-aware
(`quantize.annotate.quantize_model`), fine-tunes it with `training.trainer.Trainer`
(the optimiser, poly schedule, checkpoints with exact resume, progress line, CSV log,
TensorBoard and distribution strategy of float training), then writes the trained
float weights into the plain zoo model (`OUT/model_qat.keras`) and exports it with the
KSAC-aware int8 exporter, with the activation ranges of the QAT quantizers
(`OUT/model_int8.tflite`, report in `OUT/export_report.json`). The resolved config is
`OUT/config.yaml` (`configs.QATExperimentConfig`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping

from configs import (
    CONFIG_FILE, ConfigError, DataConfig, OptimizerConfig, QATExperimentConfig, check_resumable, read_saved_config, resolve,
)  # fmt: skip
from inference.description import ModelDescription

# Fields a resumed run must keep: they define the model, the data and its order.
LOCKED = (
    "qat.model", "qat.batchnorm", "data.train", "data.batch_size", "data.crop_size", "training.seed",
    *(f"optimizer.{f.name}" for f in dataclasses.fields(OptimizerConfig)),
)  # fmt: skip
LOG_FILE = "qat_log.csv"


class QATError(ValueError):
    """A bad model, flag or run folder, reported before anything is written."""


def load_float_model(path: str):
    """Loads a trained zoo `.keras` model; QATError naming the file if missing, unreadable or undescribed."""
    import zoo
    from zoo.saving import load_keras_model

    if not os.path.isfile(path):
        raise QATError(f"model file not found: {path} (train one first: python training/train.py)")
    try:
        model = load_keras_model(path)
    except ValueError as error:
        raise QATError(str(error)) from None
    try:
        zoo.describe(model)
    except ValueError as error:
        raise QATError(f"{path}: {error}") from None
    return model


def trained_defaults(description: ModelDescription, lr_scale: float) -> dict[str, Any]:
    """The config layer taken from what the model was trained with (below --config and the flags)."""
    trained = description.training or {}
    defaults = DataConfig()
    return {
        "data": {
            "train": description.data or defaults.train,
            "batch_size": int(trained.get("batch_size", defaults.batch_size)),
            "crop_size": int(trained.get("crop_size", description.input_size[0])),
        },
        "optimizer": {
            # Fine-tuning starts from a trained model: a fraction (default a tenth) of its initial training rate.
            "lr": float(trained.get("lr", OptimizerConfig().lr)) * lr_scale,
            "weight_decay": float(trained.get("weight_decay", OptimizerConfig().weight_decay)),
        },
    }


def default_out(model_path: str) -> str:
    """The run folder of a QAT run without `training.out`: qat/ beside the float model."""
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), "qat")


def resolve_qat_config(
    *layers: Mapping[str, Any], resume: bool = False, flags: Mapping[str, str] | None = None
) -> tuple[QATExperimentConfig, Any]:
    """(config, the loaded float model): defaults, then the model's training values, then `layers`
    (e.g. a --config file, then flags). QATError naming the first bad value (`resolve` runs
    `QATExperimentConfig.validate`; the crop is checked here, against the model's output stride).

    With `resume`, the run folder's config.yaml (`training.out`, else qat/ beside the model) comes
    before `layers`, as for training/train.py --resume: a resumed run needs only --out and what
    changes (e.g. --steps), and a locked field (`LOCKED`) that differs is a QATError naming it,
    by its flag when `flags` (the command's table, argparse dest -> field) has one.
    """
    try:
        given = resolve(QATExperimentConfig, *layers)
        if resume:
            run_dir = given.training.out or default_out(given.qat.model)
            layers = (read_saved_config(run_dir, "quantize/qat.py", QATExperimentConfig), *layers)
            given = resolve(QATExperimentConfig, *layers)
    except ConfigError as error:
        raise QATError(str(error)) from None
    model = load_float_model(given.qat.model)
    from zoo import describe

    description = describe(model)
    try:
        config = resolve(QATExperimentConfig, trained_defaults(description, given.qat.lr_scale), *layers)
    except ConfigError as error:
        raise QATError(str(error)) from None
    config.qat.model = os.path.abspath(config.qat.model)
    if config.training.out is None:
        config.training.out = default_out(config.qat.model)
    from common.files import check_output_path

    try:
        check_output_path(config.training.out, folder=True)
    except ValueError as error:
        raise QATError(f"--out: {error}") from None
    if resume:
        check_resume(config, flags)
    if config.data.crop_size < description.output_stride:
        raise QATError(f"crop size {config.data.crop_size} is smaller than the output stride {description.output_stride}")
    return config, model


def check_resume(config: QATExperimentConfig, flags: Mapping[str, str] | None = None) -> None:
    """With --resume: the run folder's config must match every locked field (QATError naming the first that
    differs; `flags`, the command's flag table, names it by its flag). The rule is train.py's
    (`configs.check_resumable`)."""
    try:
        saved_layer = read_saved_config(config.training.out, "quantize/qat.py", QATExperimentConfig)
        check_resumable(config, saved_layer, LOCKED, where=os.path.join(config.training.out, CONFIG_FILE), flags=flags)
    except ConfigError as error:
        raise QATError(str(error)) from None


def freeze_batchnorm(qat_model) -> int:
    """Runs every BatchNorm in inference mode (moving statistics, as the exported graph folds them).

    Their scale and offset stay trainable (the tfmot wrappers hold them), so the
    fine-tuned network is exactly the one the converter folds. Returns the count.
    """
    import tf_keras as keras

    from quantize.annotate import float_layers
    from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

    count = 0
    for layer in float_layers(qat_model):
        norms = layer.batch_norms if isinstance(layer, (SharedAtrousConv2D, SharedSeparableAtrousConv2D)) else [layer]
        for bn in norms:
            if isinstance(bn, keras.layers.BatchNormalization):
                bn.trainable = False
                count += 1
    return count


def run_qat(config: QATExperimentConfig, model=None, *, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tunes, saves and exports (see the module docstring); returns the int8 export report
    (with `int8_rules`, `file` and `keras` added).

    Args:
        config: the resolved config (see `resolve_qat_config`).
        model: the float model `config.qat.model` names, if already loaded.
        resume: continue the run in `config.training.out` from its newest checkpoint.
        log: where progress lines go.

    Raises QATError (bad model/flags/run folder), data.datasets.DatasetError (bad
    data), training.trainer.NonFiniteLoss (diverged) or convert.export.ExportError
    (conversion failed).
    """
    import tf_keras as keras

    from convert.export import export_tflite
    from quantize.annotate import copy_trained_weights, float_layers, quantize_model
    from quantize.calibrate import calibrate_ranges, qat_activation_ranges
    from quantize.checks import int8_rules
    from configs import write as write_config
    from data.datasets import DatasetError, open_dataset
    from training.pipeline import train_batches
    from training.trainer import Trainer, make_strategy, multi_worker_requested
    from zoo import describe, update_description
    from common.files import atomic_write_bytes, atomic_write_json
    from zoo.saving import atomic_save_keras

    model = load_float_model(config.qat.model) if model is None else model
    description = describe(model)
    out, run, data = config.training.out, config.training, config.data
    if resume:
        check_resume(config)
    if multi_worker_requested(run.strategy, run.cpu_replicas):
        raise QATError("QAT fine-tuning runs in one process (several GPUs of one machine are fine; unset TF_CONFIG); "
                       "multi-worker training is for training/train.py")  # fmt: skip

    # Everything that can fail on bad input fails here, before the output folder is written.
    dataset = open_dataset(data.train, "train")
    if dataset.num_classes > description.num_classes:
        raise DatasetError(
            f"--data {data.train} has {dataset.num_classes} classes but {config.qat.model} predicts {description.num_classes}"
        )
    if data.check:
        log(f"checking {len(dataset)} {dataset.spec} training samples (--no-data-check skips this)")
        dataset.check()

    keras.utils.set_random_seed(run.seed)
    crop = data.crop_size
    strategy = make_strategy(run.strategy, run.cpu_replicas)
    log(f"building the quantization-aware {description.name} at {crop}x{crop}")
    with strategy.scope():
        qat_model = quantize_model(model, crop)
        if config.qat.batchnorm == "frozen":
            freeze_batchnorm(qat_model)
        if not resume:
            calibration, _ = train_batches(dataset, data.batch_size, crop, description.normalization, run.seed + 1)
            count = max(1, config.qat.calibration_steps // data.batch_size)
            log(f"measuring the quantizers' initial ranges on {count} batches")
            calibrate_ranges(qat_model, (images for images, _ in calibration.take(count)))
    trainer = Trainer(
        qat_model, strategy, config.optimizer, config.schedule, work_dir=out, seed=run.seed,
        dropout_layers=float_layers(qat_model), log_name=LOG_FILE, checkpoint_every=run.checkpoint_every,
        keep_checkpoints=run.keep_checkpoints, log_every=run.log_every, log=log,
    )  # fmt: skip
    start_step = 0
    if resume:
        try:
            start_step = trainer.restore()
        except FileNotFoundError as error:
            raise QATError(str(error)) from None
        log(f"resumed {out} from {trainer.restored_from} at step {start_step}")

    os.makedirs(out, exist_ok=True)
    write_config(config, out)
    steps = config.schedule.steps
    log(
        f"QAT fine-tuning {description.name} on {dataset.spec} ({len(dataset)} images), batch {data.batch_size}, "
        f"crop {crop}, lr {config.optimizer.lr:g}, BatchNorm {config.qat.batchnorm}, steps {start_step}->{steps}"
    )
    result = trainer.fit(
        dataset, batch_size=data.batch_size, crop_size=crop, normalization=description.normalization,
        data_seed=run.seed, start_step=start_step, stop_step=steps,
    )  # fmt: skip
    loss = result.loss

    # The trained float weights go back into the plain zoo model, which the KSAC-aware exporter understands.
    copy_trained_weights(qat_model, model)
    update_description(
        model,
        qat=True,
        qat_training={
            "steps": steps, "source": config.qat.model, "final_loss": None if math.isnan(loss) else loss,
            "data": data.train, "batch_size": data.batch_size, "crop_size": crop, "lr": config.optimizer.lr,
            "seed": run.seed, "batchnorm": config.qat.batchnorm,
        },
    )  # fmt: skip
    keras_path = os.path.join(out, "model_qat.keras")
    atomic_save_keras(model, keras_path)
    log(f"saved {keras_path}")

    if not config.qat.export:
        return {"keras": keras_path}
    # The file takes the activation ranges the network was fine-tuned against; calibration
    # fills in only the tensors no QAT quantizer covers (e.g. resize outputs).
    calibration_steps = config.qat.calibration_steps
    result = export_tflite(
        model,
        "int8",
        calibration=data.train,
        calibration_steps=calibration_steps,
        activation_ranges=qat_activation_ranges(qat_model),
        check_parity=True,
        log=lambda message: None if message.startswith("calibrating ") and not message.startswith(f"calibrating {calibration_steps}/") else log(f"  {message}"),
    )
    tflite_path = os.path.join(out, "model_int8.tflite")
    atomic_write_bytes(tflite_path, result.tflite)
    report = dict(result.report, file=tflite_path, keras=keras_path, int8_rules=int8_rules(result.tflite))
    atomic_write_json(os.path.join(out, "export_report.json"), report)
    log(f"wrote {tflite_path} ({len(result.tflite):,} bytes)")
    return report
