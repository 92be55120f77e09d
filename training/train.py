"""Trains a zoo model with a custom tf.distribute loop; see `python training/train.py --help`.

Example:
    python training/train.py --backbone mobilenetv2 --head ksac --steps 20 --batch-size 2 --crop-size 129 --out runs/demo
    python training/train.py --out runs/demo --steps 30 --resume
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Sequence  # noqa: E402

# Keep TensorFlow's C++ start-up chatter out of the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Fields of config.json that a resumed run must keep: they define the model, the data and its order.
LOCKED = (
    "backbone", "head", "data", "batch_size", "crop_size", "output_stride", "rates", "lr", "weight_decay",
    "momentum", "seed", "width", "head_filters", "dropout", "input_size", "weights", "poly_power", "bn_momentum",
    "optimizer",
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "data": "synthetic",
    "batch_size": 8,
    "crop_size": 513,
    "output_stride": 16,
    "rates": None,
    "lr": 0.007,
    "weight_decay": 4e-5,
    "momentum": 0.9,
    "poly_power": 0.9,
    "seed": 0,
    "width": 1.0,
    "head_filters": 256,
    "dropout": 0.1,
    "input_size": None,
    "weights": None,
    "bn_momentum": None,
    "optimizer": "sgd",
}
LOG_COLUMNS = ("step", "loss", "lr", "images_per_s", "elapsed_s")


class UsageError(ValueError):
    """A bad flag value, reported before anything is written."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="training/train.py",
        description=(
            "Train a segmentation model of the zoo (MobileNetV2/Xception65 + KSAC/ASPP) with SGD, momentum 0.9 and "
            "a poly learning-rate schedule, the paper's augmentation (flip, scale 0.5-2.0, pad, crop) and "
            "softmax cross-entropy ignoring label 255. Writes OUT/checkpoints/, OUT/model.keras, OUT/train_log.csv, "
            "OUT/tensorboard/ and OUT/config.json."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backbone", choices=("mobilenetv2", "xception65"), help="backbone network (required unless --resume)")
    p.add_argument("--head", choices=("ksac", "aspp"), help="segmentation head: KSAC (shared kernel) or ASPP (required unless --resume)")
    p.add_argument("--data", help="dataset: synthetic | voc:PATH | sbd:PATH | trainaug:VOC_PATH,SBD_PATH | ade20k:PATH | folder:PATH (default synthetic)")
    p.add_argument("--steps", type=int, default=30000, help="total training steps; the poly schedule decays to 0 at this step (a resumed run with a larger value stretches it)")
    p.add_argument("--batch-size", type=int, help="GLOBAL batch size, split evenly across replicas (default 8)")
    p.add_argument("--crop-size", type=int, help="side of the square training crop in pixels; must be >= the output stride (default 513)")
    p.add_argument("--input-size", type=int, help="input side recorded in the saved model (evaluation/export size); default: the crop size")
    p.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="backbone output stride (default 16)")
    p.add_argument("--rates", help="comma-separated atrous rates, e.g. 6,12,18 (default: 6,12,18 at OS 16, doubled at OS 8)")
    p.add_argument("--lr", type=float, help="initial learning rate FOR THE GLOBAL BATCH (default 0.007, DeepLab's at batch 16; scale it linearly with the batch)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="sgd (the paper's: SGD with --momentum) or adam (learns faster from scratch in short runs; try --lr 1e-3); both follow the poly schedule (default sgd)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--poly-power", type=float, help="poly schedule power: lr * (1 - step/steps)^power (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="L2 weight decay on convolution kernels, wd * sum(w^2)/2 (default 4e-5)")
    p.add_argument("--weights", help="initial weights: a Keras HDF5 file (.h5/.hdf5, e.g. ImageNet backbone weights; loaded by layer name) or a trained .keras model (layers with matching name and shape); the layers matched are printed")
    p.add_argument("--width", type=float, help="backbone width multiplier (default 1.0; 0.35 for tiny test models)")
    p.add_argument("--head-filters", type=int, help="channels of the head (default 256 as in the paper; 32 for tiny test models)")
    p.add_argument("--dropout", type=float, help="dropout after the head's projection (default 0.1)")
    p.add_argument("--bn-momentum", type=float, help="override the BatchNorm moving-average momentum of every layer (default: the model's own, 0.999/0.9997 as in DeepLab; use e.g. 0.99 for runs of a few thousand steps, whose moving statistics would otherwise lag)")
    p.add_argument("--seed", type=int, help="seed of initialisation, data order, augmentation and dropout (default 0)")
    p.add_argument("--out", help="run folder (default runs/<model>-<timestamp>/; runs/latest points at the newest run)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (default runs/latest) from its newest checkpoint: same step, learning rate, data position and RNG state; model/data flags come from its config.json")
    p.add_argument("--stop-at", type=int, help="stop after this step (checkpoint + model saved) although the schedule spans --steps; resume later with --resume")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (the final step is always checkpointed)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="how many recent checkpoints to keep")
    p.add_argument("--log-every", type=int, default=10, help="steps between progress lines / train_log.csv rows (the final step is always logged)")
    p.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"), default="auto", help="auto: multiworker if TF_CONFIG describes a cluster, mirrored (with synchronized BatchNorm) if several GPUs are visible, else one device")
    p.add_argument("--cpu-replicas", type=int, default=0, help="split the CPU into N logical devices and mirror across them (a testing aid for multi-replica code without GPUs)")
    p.add_argument("--no-data-check", action="store_true", help="skip decoding every training sample up front (bad files then stop the run when reached)")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """Merges flags, defaults and (with --resume) the run's config.json into the run's config."""
    from training.runs import read_config

    given = {k: getattr(args, k) for k in DEFAULTS}
    given.update(backbone=args.backbone, head=args.head, rates=parse_rates(args.rates))
    if args.resume:
        run_dir = args.out or os.path.join("runs", "latest")
        saved = read_config(run_dir)
        for key in LOCKED:
            if given.get(key) is not None and given[key] != saved.get(key):
                raise UsageError(f"--resume: --{key.replace('_', '-')} {given[key]} differs from the run's {saved.get(key)} (see {run_dir}/config.json)")
        config = {key: saved.get(key, DEFAULTS.get(key)) for key in LOCKED}
        config["out"] = os.path.realpath(run_dir)
    else:
        if not args.backbone or not args.head:
            raise UsageError("--backbone and --head are required (unless --resume)")
        config = {key: DEFAULTS.get(key) if given.get(key) is None else given[key] for key in LOCKED}
        config["out"] = args.out
    if config["input_size"] is None:
        config["input_size"] = config["crop_size"]
    if config["crop_size"] < config["output_stride"]:
        raise UsageError(f"--crop-size {config['crop_size']} is smaller than the output stride {config['output_stride']}")
    if args.steps < 1:
        raise UsageError(f"--steps must be positive, got {args.steps}")
    if config["batch_size"] < 1:
        raise UsageError(f"--batch-size must be positive, got {config['batch_size']}")
    if config["weights"] and not args.resume:  # a resumed run restores its checkpoint instead
        from zoo.weights import weights_format

        try:
            weights_format(config["weights"])
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--weights: {error}") from None
    config["model"] = f"{config['backbone']}_{config['head']}"
    return config


def parse_rates(text: str | None) -> list[int] | None:
    """`--rates 6,12,18` as [6, 12, 18] (None stays None: the output stride's default rates)."""
    if text is None:
        return None
    try:
        return [int(r) for r in text.split(",")]
    except ValueError:
        raise UsageError(f"--rates must be comma-separated integers, got {text!r}") from None


def make_strategy(kind: str, cpu_replicas: int):
    """The tf.distribute strategy for `--strategy` (must run before TensorFlow touches a device)."""
    import json

    import tensorflow as tf

    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_replicas)])
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster")
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "auto":
        kind = "multiworker" if cluster else "mirrored" if len(gpus) > 1 else "default"
    if kind == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())


def build(config: dict[str, Any], dataset, sync: bool, input_size: int | None = None, weights: str | None = None):
    """The run's model; `weights` (a file `zoo.weights.load_weights` takes) initialises it."""
    from zoo import build_model

    return build_model(
        config["model"],
        num_classes=dataset.num_classes,
        input_size=input_size or config["crop_size"],
        output_stride=config["output_stride"],
        rates=config["rates"],
        width=config["width"],
        head_filters=config["head_filters"],
        dropout=config["dropout"],
        sync_batchnorm=sync,
        label_names=dataset.label_names,
        backbone_weights=weights,
    )


def synchronize_batchnorm(model) -> int:
    """Makes EVERY BatchNormalization compute its statistics over the global batch; returns the count.

    `build_model(sync_batchnorm=True)` synchronises the head and decoder only (the
    backbones take no such option), so the backbone's layers are switched here,
    before the first trace. Synchronized BatchNorm cannot use the fused kernel.
    """
    import tf_keras as keras

    layers = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
        layer.fused = False
    return len(layers)


def set_bn_momentum(model, momentum: float) -> int:
    """Sets the moving-average momentum of every BatchNormalization (KSAC branches included); returns the count."""
    import tf_keras as keras

    layers = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def export_model(train_model, config: dict[str, Any], dataset, path: str) -> None:
    """Saves a clean copy (no SyncBN, input size `config['input_size']`) of the trained model, atomically."""
    import tf_keras as keras

    from zoo import update_description

    clean = build(config, dataset, sync=False, input_size=config["input_size"])
    for layer in clean.layers:
        if layer.get_weights():
            layer.set_weights(train_model.get_layer(layer.name).get_weights())
    update_description(
        clean,
        data=config["data"],
        training={k: config[k] for k in ("crop_size", "batch_size", "lr", "seed", "weight_decay")} | {"steps": config["steps_done"]},
    )
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".keras")
    os.close(fd)
    try:
        keras.models.save_model(clean, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_scalars(writer, step: int, **values: float) -> None:
    """TensorBoard scalars without the `tensorboard` package (tf.summary.scalar needs it; tf.summary.write does not)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata.SerializeToString())


def train(args: argparse.Namespace) -> int:
    """Runs (or resumes) a training run; returns the process exit code."""
    config = resolve_config(args)

    import tensorflow as tf
    import tf_keras as keras

    from training.datasets import open_dataset
    from training.losses import masked_cross_entropy_sum, weight_decay_loss
    from training.pipeline import train_batches
    from training.runs import CsvLog, default_run_dir, format_eta, point_latest, restore_newest, seed_dropout
    from zoo import describe
    from zoo.files import atomic_write_json

    strategy = make_strategy(args.strategy, args.cpu_replicas)
    replicas = strategy.num_replicas_in_sync
    if config["batch_size"] % replicas:
        raise UsageError(f"--batch-size {config['batch_size']} is not divisible by the {replicas} replicas")

    # Everything that can fail on bad input fails here, before the run folder exists.
    dataset = open_dataset(config["data"], "train")
    if not args.no_data_check:
        dataset.check()

    keras.utils.set_random_seed(config["seed"])
    with strategy.scope():
        try:
            model = build(config, dataset, sync=replicas > 1, weights=None if args.resume else config["weights"])
        except ValueError as error:  # a model option or weights file that does not fit
            raise UsageError(str(error)) from None
        if replicas > 1:
            synchronize_batchnorm(model)
        if config["bn_momentum"] is not None:
            set_bn_momentum(model, config["bn_momentum"])
        rng = tf.Module()
        rng.dropout = seed_dropout(model, config["seed"])
        schedule = keras.optimizers.schedules.PolynomialDecay(
            config["lr"], args.steps, end_learning_rate=0.0, power=config["poly_power"]
        )
        if config["optimizer"] == "adam":
            optimizer = keras.optimizers.Adam(learning_rate=schedule)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config["momentum"])
        optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, rng=rng)
    normalization = describe(model)["normalization"]

    chief = is_chief(strategy)
    out = config["out"] or default_run_dir(config["model"])
    # Non-chief workers of a multi-worker run write their (required) checkpoint copies to a scratch folder.
    work_dir = out if chief else tempfile.mkdtemp(prefix="ksac_worker_")
    ckpt_dir = os.path.join(work_dir, "checkpoints")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=args.keep_checkpoints, checkpoint_name="ckpt")
    start_step = 0
    if args.resume:
        try:
            start_step = restore_newest(checkpoint, manager, optimizer)
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
        print(f"resumed {out} from {manager.latest_checkpoint} at step {start_step}")
    stop_step = min(args.steps, args.stop_at or args.steps)
    if start_step >= stop_step:
        print(f"nothing to do: the run is at step {start_step}, --steps/--stop-at is {stop_step}")
        return 0

    os.makedirs(work_dir, exist_ok=True)
    if chief:
        saved = dict(config, steps=args.steps, out=os.path.abspath(out))
        atomic_write_json(os.path.join(out, "config.json"), saved)
        if config["out"] is None or os.path.basename(os.path.dirname(os.path.abspath(out))) == "runs":
            point_latest(out)
    log = CsvLog(os.path.join(work_dir, "train_log.csv"), LOG_COLUMNS)
    log.keep_until(start_step)
    writer = tf.summary.create_file_writer(os.path.join(work_dir, "tensorboard"))

    ds, loader = train_batches(dataset, config["batch_size"], config["crop_size"], normalization, config["seed"], start_step)
    batches = iter(strategy.experimental_distribute_dataset(ds))
    weight_decay = config["weight_decay"]

    def replica_step(images, labels):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            ce_sum, count = masked_cross_entropy_sum(labels, logits)
            # Mean over the valid pixels of the GLOBAL batch, so that any replica count gives the same loss.
            total = tf.maximum(ctx.all_reduce(tf.distribute.ReduceOp.SUM, count), 1.0)
            loss = ce_sum / total + weight_decay_loss(model, weight_decay) / ctx.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        images, labels = next(iterator)
        per_replica = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    print(
        f"training {config['model']} on {dataset.spec} ({len(dataset)} images, {dataset.num_classes} classes), "
        f"{replicas} replica(s), global batch {config['batch_size']}, crop {config['crop_size']}, steps {start_step}->{stop_step}"
    )
    run_start = time.time()
    interval_start, interval_images, timed_steps, timed_time = time.time(), 0, 0, 0.0
    step = start_step
    while step < stop_step:
        try:
            loss = float(train_step(batches))
        except tf.errors.OpError as err:
            if loader.error is not None:
                raise loader.error from None
            raise
        step += 1
        if not math.isfinite(loss):
            kept = manager.latest_checkpoint or "none (no checkpoint was written yet)"
            print(
                f"error: the loss is {loss} at step {step}; stopping. The last good checkpoint is {kept}. "
                "Lower --lr or check the data.",
                file=sys.stderr,
            )
            return 1
        interval_images += config["batch_size"]
        if step == start_step + 1:
            interval_start, interval_images = time.time(), 0  # the first step traces the graph: not timed
        last = step == stop_step
        if step % args.log_every == 0 or last:
            now = time.time()
            elapsed = now - interval_start
            speed = interval_images / elapsed if interval_images and elapsed > 0 else float("nan")
            if interval_images:
                timed_steps += interval_images // config["batch_size"]
                timed_time += elapsed
            lr = float(schedule(step - 1))
            eta = (stop_step - step) * config["batch_size"] / speed if speed == speed else 0.0
            print(f"step {step}/{stop_step}  loss {loss:.4f}  lr {lr:.6f}  {speed:.2f} images/s  ETA {format_eta(eta)}", flush=True)
            if chief:
                log.append({"step": step, "loss": f"{loss:.6f}", "lr": f"{lr:.8f}", "images_per_s": f"{speed:.3f}", "elapsed_s": f"{now - run_start:.1f}"})
                write_scalars(writer, step, loss=loss, learning_rate=lr, images_per_second=speed)
            interval_start, interval_images = time.time(), 0
        if step % args.checkpoint_every == 0 or last:
            manager.save(checkpoint_number=step)

    writer.flush()
    config["steps_done"] = step
    if chief:
        export_model(model, config, dataset, os.path.join(out, "model.keras"))
        speed = timed_steps * config["batch_size"] / timed_time if timed_time > 0 else None
        atomic_write_json(os.path.join(out, "summary.json"), {"step": step, "final_loss": loss, "images_per_s": speed, "wall_s": time.time() - run_start})
        print(f"saved {os.path.join(out, 'model.keras')} (step {step}); mean speed {speed and round(speed, 2)} images/s")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 with a message on bad input)."""
    args = parse_args(argv)
    from training.datasets import DatasetError

    try:
        return train(args)
    except (UsageError, DatasetError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
