"""The QAT fine-tuning loop: training/train.py's pipeline, loss and checkpoints on a tfmot model.

`run_qat(settings)` loads a trained `.keras` model, makes it quantization-aware
(`quantize.annotate.quantize_model`), fine-tunes it with SGD + momentum and a poly
schedule on training/pipeline.py's augmented batches and training/losses.py's
loss, checkpoints to `OUT/checkpoints/` (resumable at the exact step and data
position), then writes the trained float weights into the plain zoo model
(`OUT/model_qat.keras`) and exports it with the KSAC-aware int8 exporter, with
the activation ranges of the QAT quantizers (`OUT/model_int8.tflite`, report in
`OUT/export_report.json`).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

# Fields of OUT/qat_config.json a resumed run must keep: they define the model, the data and its order.
LOCKED = ("model", "data", "batch_size", "crop_size", "lr", "momentum", "weight_decay", "seed", "batchnorm")
LOG_COLUMNS = ("step", "loss", "lr", "images_per_s", "elapsed_s")
CONFIG_FILE = "qat_config.json"


class QATError(ValueError):
    """A bad model, flag or run folder, reported before anything is written."""


@dataclass
class QATSettings:
    """Everything `run_qat` needs; `None` fields default from the model's description."""

    model: str
    out: str
    steps: int = 1000
    data: str | None = None
    batch_size: int | None = None
    crop_size: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    seed: int = 0
    batchnorm: str = "frozen"
    resume: bool = False
    calibration_steps: int = 100
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    data_check: bool = True
    export: bool = True  # False: stop after saving model_qat.keras (tests)


def load_float_model(path: str):
    """Loads a trained zoo `.keras` model; QATError naming the file if missing, unreadable or undescribed."""
    import tf_keras as keras

    import zoo

    if not os.path.isfile(path):
        raise QATError(f"model file not found: {path} (train one first: python training/train.py)")
    try:
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as error:
        raise QATError(f"cannot load {path} as a Keras model: {error}") from None
    try:
        zoo.describe(model)
    except ValueError as error:
        raise QATError(f"{path}: {error}") from None
    return model


def resolve_settings(settings: QATSettings, description: dict[str, Any]) -> dict[str, Any]:
    """The run's config: flags, else what the model was trained with, else defaults; checks values."""
    trained = description.get("training") or {}
    config = {
        "model": os.path.abspath(settings.model),
        "data": settings.data or description.get("data") or "synthetic",
        "batch_size": settings.batch_size or int(trained.get("batch_size", 8)),
        "crop_size": settings.crop_size or int(trained.get("crop_size", description["input_size"][0])),
        # Fine-tuning starts from a trained model: a tenth of its initial training rate.
        "lr": settings.lr if settings.lr is not None else float(trained.get("lr", 0.007)) / 10,
        "momentum": settings.momentum,
        "weight_decay": settings.weight_decay if settings.weight_decay is not None else float(trained.get("weight_decay", 4e-5)),
        "seed": settings.seed,
        "batchnorm": settings.batchnorm,
    }
    if settings.steps < 1:
        raise QATError(f"--steps must be positive, got {settings.steps}")
    if config["batch_size"] < 1:
        raise QATError(f"--batch-size must be positive, got {config['batch_size']}")
    if config["crop_size"] < description["output_stride"]:
        raise QATError(f"--crop-size {config['crop_size']} is smaller than the output stride {description['output_stride']}")
    if not config["lr"] > 0:
        raise QATError(f"--lr must be positive, got {config['lr']}")
    if config["batchnorm"] not in ("frozen", "train"):
        raise QATError(f"--batchnorm must be frozen or train, got {config['batchnorm']!r}")
    if settings.calibration_steps < 1:
        raise QATError(f"--calibration-steps must be positive, got {settings.calibration_steps}")
    return config


def check_resume(out: str, config: dict[str, Any]) -> None:
    """With --resume: the saved config must match every locked field (QATError naming the first that differs)."""
    import json

    path = os.path.join(out, CONFIG_FILE)
    if not os.path.isfile(path):
        raise QATError(f"--resume: {path} not found; is {out} a folder written by quantize/qat.py?")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    for key in LOCKED:
        if saved.get(key) != config[key]:
            raise QATError(f"--resume: {key} {config[key]!r} differs from the run's {saved.get(key)!r} (see {path})")


def freeze_batchnorm(qat_model) -> int:
    """Runs every BatchNorm in inference mode (moving statistics, as the exported graph folds them).

    Their scale and offset stay trainable (the tfmot wrappers hold them), so the
    fine-tuned network is exactly the one the converter folds. Returns the count.
    """
    import tf_keras as keras

    from quantize.annotate import float_layers
    from zoo.layers import SharedAtrousConv2D

    count = 0
    for layer in float_layers(qat_model):
        norms = layer.batch_norms if isinstance(layer, SharedAtrousConv2D) else [layer]
        for bn in norms:
            if isinstance(bn, keras.layers.BatchNormalization):
                bn.trainable = False
                count += 1
    return count


def save_keras_atomically(model, path: str) -> None:
    """`keras.models.save_model` through a temporary file and a rename."""
    import tf_keras as keras

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model_qat.", suffix=".keras")
    os.close(fd)
    try:
        keras.models.save_model(model, tmp)
        umask = os.umask(0)  # mkstemp makes the file private (0600); give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_qat(settings: QATSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tunes, saves and exports (see the module docstring); returns the int8 export report
    (with `int8_rules`, `file` and `keras` added).

    Raises QATError (bad model/flags/run folder), training.datasets.DatasetError (bad
    data) or convert.export.ExportError (conversion failed).
    """
    import tensorflow as tf
    import tf_keras as keras

    from convert.export import export_tflite
    from quantize.calibrate import calibrate_ranges, qat_activation_ranges
    from quantize.checks import int8_rules
    from quantize.annotate import copy_trained_weights, float_layers, quantize_model
    from training.datasets import DatasetError, open_dataset
    from training.losses import masked_cross_entropy_sum, weight_decay_loss
    from training.pipeline import train_batches
    from training.runs import CsvLog
    from training.runs import format_eta, restore_newest, seed_dropout
    from zoo import describe, update_description
    from zoo.files import atomic_write_bytes, atomic_write_json

    model = load_float_model(settings.model)
    description = describe(model)
    config = resolve_settings(settings, description)
    out = settings.out
    if settings.resume:
        check_resume(out, config)

    # Everything that can fail on bad input fails here, before the output folder is written.
    dataset = open_dataset(config["data"], "train")
    if dataset.num_classes > int(description["num_classes"]):
        raise DatasetError(
            f"--data {config['data']} has {dataset.num_classes} classes but {settings.model} predicts {description['num_classes']}"
        )
    if settings.data_check:
        log(f"checking {len(dataset)} {dataset.spec} training samples (--no-data-check skips this)")
        dataset.check()

    keras.utils.set_random_seed(config["seed"])
    crop = config["crop_size"]
    log(f"building the quantization-aware {description['name']} at {crop}x{crop}")
    qat_model = quantize_model(model, crop)
    if config["batchnorm"] == "frozen":
        freeze_batchnorm(qat_model)
    if not settings.resume:
        calibration, _ = train_batches(dataset, config["batch_size"], crop, description["normalization"], config["seed"] + 1)
        count = max(1, settings.calibration_steps // config["batch_size"])
        log(f"measuring the quantizers' initial ranges on {count} batches")
        calibrate_ranges(qat_model, (images for images, _ in calibration.take(count)))
    rng = tf.Module()
    rng.dropout = seed_dropout(type("Layers", (), {"layers": list(float_layers(qat_model))})(), config["seed"])
    schedule = keras.optimizers.schedules.PolynomialDecay(config["lr"], settings.steps, end_learning_rate=0.0, power=0.9)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config["momentum"])
    variables = qat_model.trainable_variables
    optimizer.build(variables)
    checkpoint = tf.train.Checkpoint(model=qat_model, optimizer=optimizer, rng=rng)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(out, "checkpoints"), max_to_keep=settings.keep_checkpoints, checkpoint_name="ckpt"
    )
    start_step = 0
    if settings.resume:
        try:
            start_step = restore_newest(checkpoint, manager, optimizer)
        except FileNotFoundError as error:
            raise QATError(str(error)) from None
        log(f"resumed {out} from {manager.latest_checkpoint} at step {start_step}")

    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, CONFIG_FILE), dict(config, steps=settings.steps))
    csv_log = CsvLog(os.path.join(out, "qat_log.csv"), LOG_COLUMNS)
    csv_log.keep_until(start_step)
    ds, loader = train_batches(dataset, config["batch_size"], crop, description["normalization"], config["seed"], start_step)
    batches = iter(ds)
    weight_decay = config["weight_decay"]

    @tf.function(autograph=False)  # no Python control flow to convert
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = qat_model(images, training=True)
            ce_sum, count = masked_cross_entropy_sum(labels, logits)
            loss = ce_sum / tf.maximum(count, 1.0) + weight_decay_loss(qat_model, weight_decay)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    step = start_step
    log(
        f"QAT fine-tuning {description['name']} on {dataset.spec} ({len(dataset)} images), batch {config['batch_size']}, "
        f"crop {crop}, lr {config['lr']:g}, BatchNorm {config['batchnorm']}, steps {start_step}->{settings.steps}"
    )
    run_start = interval_start = time.time()
    interval_images = 0
    loss = float("nan")
    while step < settings.steps:
        try:
            images, labels = next(batches)
            loss = float(train_step(images, labels))
        except tf.errors.OpError:
            if loader.error is not None:
                raise loader.error from None
            raise
        step += 1
        if not math.isfinite(loss):
            kept = manager.latest_checkpoint or "none (no checkpoint was written yet)"
            raise QATError(f"the loss is {loss} at step {step}; the last good checkpoint is {kept}. Lower --lr or check the data.")
        interval_images += config["batch_size"]
        if step == start_step + 1:
            interval_start, interval_images = time.time(), 0  # the first step traces the graph: not timed
        last = step == settings.steps
        if step % settings.log_every == 0 or last:
            now = time.time()
            speed = interval_images / (now - interval_start) if interval_images else float("nan")
            eta = (settings.steps - step) * config["batch_size"] / speed if speed == speed else 0.0
            lr = float(schedule(step - 1))
            log(f"step {step}/{settings.steps}  loss {loss:.4f}  lr {lr:.6f}  {speed:.2f} images/s  ETA {format_eta(eta)}")
            csv_log.append({"step": step, "loss": f"{loss:.6f}", "lr": f"{lr:.8f}", "images_per_s": f"{speed:.3f}",
                            "elapsed_s": f"{now - run_start:.1f}"})  # fmt: skip
            interval_start, interval_images = time.time(), 0
        if step % settings.checkpoint_every == 0 or last:
            manager.save(checkpoint_number=step)

    # The trained float weights go back into the plain zoo model, which the KSAC-aware exporter understands.
    copy_trained_weights(qat_model, model)
    update_description(
        model,
        qat=True,
        qat_training={"steps": settings.steps, "source": config["model"], "final_loss": None if math.isnan(loss) else loss}
        | {k: config[k] for k in ("data", "batch_size", "crop_size", "lr", "seed", "batchnorm")},
    )
    keras_path = os.path.join(out, "model_qat.keras")
    save_keras_atomically(model, keras_path)
    log(f"saved {keras_path}")

    if not settings.export:
        return {"keras": keras_path}
    # The file takes the activation ranges the network was fine-tuned against; calibration
    # fills in only the tensors no QAT quantizer covers (e.g. resize outputs).
    result = export_tflite(
        model,
        "int8",
        calibration=config["data"],
        calibration_steps=settings.calibration_steps,
        activation_ranges=qat_activation_ranges(qat_model),
        check_parity=True,
        log=lambda message: None if message.startswith("calibrating ") and not message.startswith(f"calibrating {settings.calibration_steps}/") else log(f"  {message}"),
    )
    tflite_path = os.path.join(out, "model_int8.tflite")
    atomic_write_bytes(tflite_path, result.tflite)
    report = dict(result.report, file=tflite_path, keras=keras_path, int8_rules=int8_rules(result.tflite))
    atomic_write_json(os.path.join(out, "export_report.json"), report)
    log(f"wrote {tflite_path} ({len(result.tflite):,} bytes)")
    return report

