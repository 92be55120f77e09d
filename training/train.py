"""Trains a zoo model with the shared training loop (`training.trainer`); see `python training/train.py --help`.

Example:
    python training/train.py --backbone mobilenetv2 --head ksac --steps 20 --batch-size 2 --crop-size 129 --out runs/demo
    python training/train.py --config configs/paper/mobilenetv2_ksac.yaml --data trainaug:VOC,SBD
    python training/train.py --out runs/demo --steps 30 --resume
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from typing import Any, Sequence

import zoo  # noqa: E402,F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)

from common.cli import UserError, exit_process, fail  # noqa: E402

from configs import (  # noqa: E402  (after the environment variable above)
    CONFIG_FILE,
    ConfigError,
    MIXED_PRECISIONS,
    ExperimentConfig,
    ModelConfig,
    OptimizerConfig,
    add_loop_flags,
    check_resumable,
    document_defaults,
    flag_overrides,
    find_config,
    read_file,
    read_saved_config,
    resolve,
)

# argparse dest -> the config field the flag sets. Every flag defaults to None, i.e. "not given":
# the value then comes from --config, else (with --resume) the run's config.yaml, else the defaults.
FLAGS = {
    "model": "model.name",
    "output_stride": "model.output_stride",
    "rates": "model.rates",
    "width": "model.width",
    "head_filters": "model.head_filters",
    "dropout": "model.dropout",
    "input_size": "model.input_size",
    "bn_momentum": "model.bn_momentum",
    "weights": "model.weights",
    "data": "data.train",
    "crop_size": "data.crop_size",
    "batch_size": "data.batch_size",
    "data_check": "data.check",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "weight_decay": "optimizer.weight_decay",
    "steps": "schedule.steps",
    "poly_power": "schedule.poly_power",
    "seed": "training.seed",
    "out": "training.out",
    "checkpoint_every": "training.checkpoint_every",
    "keep_checkpoints": "training.keep_checkpoints",
    "log_every": "training.log_every",
    "strategy": "training.strategy",
    "cpu_replicas": "training.cpu_replicas",
    "float64": "training.float64",
    "mixed_precision": "training.mixed_precision",
    "jit_compile": "training.jit_compile",
}
# Fields a resumed run must keep: they define the model, the data and its order. (The schedule's
# length may grow: a resumed run with more steps stretches the poly decay.)
LOCKED = (
    *(f"model.{f.name}" for f in dataclasses.fields(ModelConfig)),
    "data.train", "data.crop_size", "data.batch_size",
    *(f"optimizer.{f.name}" for f in dataclasses.fields(OptimizerConfig)),
    "schedule.poly_power", "training.seed", "training.float64",
    "training.mixed_precision",  # float16 adds a loss scale to the optimizer's checkpoint
)  # fmt: skip
LEGACY_CONFIG = "config.json"  # the flat config of runs started before config.yaml


class UsageError(UserError):
    """A bad flag or config value, reported before anything is written (exit 2)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from zoo.registry import OUTPUT_STRIDES, list_backbones, list_heads, list_models

    p = argparse.ArgumentParser(
        prog="training/train.py",
        description=(
            "Train a segmentation model of the zoo (MobileNetV2/Xception65 + KSAC/ASPP) with SGD, momentum 0.9 and "
            "a poly learning-rate schedule, the paper's augmentation (flip, scale 0.5-2.0, pad, crop) and "
            "softmax cross-entropy ignoring label 255. Settings come from the defaults, then --config FILE, then "
            "the flags. Writes OUT/checkpoints/, OUT/model.keras, OUT/train_log.csv, OUT/tensorboard/ and "
            f"OUT/{CONFIG_FILE} (the resolved config; --resume and --config read it back)."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="a YAML or JSON experiment config, or the name of a recipe (paper/mobilenetv2_ksac: configs/paper/*.yaml, also in an installed toolkit); flags override it")
    p.add_argument("--model", choices=list_models(), help="the registered model (or give --backbone and --head)")
    p.add_argument("--backbone", choices=list_backbones(), help="backbone network (with --head; required unless --model, --config or --resume gives the model)")
    p.add_argument("--head", choices=list_heads(), help="segmentation head: KSAC (shared kernel) or ASPP")
    p.add_argument("--data", help="dataset: synthetic | voc:PATH | sbd:PATH | trainaug:VOC_PATH,SBD_PATH | ade20k:PATH | folder:PATH "
                   "| cityscapes:ROOT | 'tfrecord:DIR[?dataset=pascal_voc_seg|cityscapes|ade20k&train=PREFIX&val=PREFIX]' "
                   "(DeepLab's shards; docs/training.md)")
    p.add_argument("--steps", type=int, help="total training steps; the poly schedule decays to 0 at this step (a resumed run with a larger value stretches it)")
    p.add_argument("--batch-size", type=int, help="GLOBAL batch size, split evenly across replicas")
    p.add_argument("--crop-size", type=int, help="side of the square training crop in pixels; must be >= the output stride")
    p.add_argument("--input-size", type=int, help="input side recorded in the saved model (evaluation/export size); none: the crop size")
    p.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, help="backbone output stride; one that changes --config's stride re-derives the atrous rates (as without --config) unless --rates is given too")
    p.add_argument("--rates", help="comma-separated atrous rates, e.g. 6,12,18 (none: --config's, else 6,12,18 at OS 16, doubled at OS 8, halved at OS 32; an --output-stride that changes the stride re-derives them)")
    p.add_argument("--lr", type=float, help="initial learning rate FOR THE GLOBAL BATCH (DeepLab's 0.007 is for batch 16; scale it linearly with the batch)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="sgd (the paper's: SGD with --momentum) or adam (learns faster from scratch in short runs; try --lr 1e-3); both follow the poly schedule")
    p.add_argument("--momentum", type=float, help="SGD momentum")
    p.add_argument("--poly-power", type=float, help="poly schedule power: lr * (1 - step/steps)^power")
    p.add_argument("--weight-decay", type=float, help="L2 weight decay on convolution kernels, wd * sum(w^2)/2")
    p.add_argument("--weights", help="initial weights: a Keras HDF5 file (.h5/.hdf5, e.g. ImageNet backbone weights; loaded by layer name), a trained .keras model (layers with matching name and shape), or a TF1 checkpoint of DeepLab or TF-slim (prefix such as model.ckpt with its .index beside it, or its directory; Xception65/MobileNetV2 backbones and DeepLab's head/decoder where shapes allow, see zoo/tf1_checkpoint.py); a report of the tensors matched, left at initialisation and unused is printed")
    p.add_argument("--width", type=float, help="backbone width multiplier (0.35 for tiny test models)")
    p.add_argument("--head-filters", type=int, help="channels of the head (256 in the paper; 32 for tiny test models)")
    p.add_argument("--dropout", type=float, help="dropout after the head's projection")
    p.add_argument("--bn-momentum", type=float, help="BatchNorm moving-average momentum of every layer (none: the model's own, 0.999/0.9997 as in DeepLab; use e.g. 0.99 for runs of a few thousand steps, whose moving statistics would otherwise lag)")
    p.add_argument("--seed", type=int, help="seed of initialisation, data order, augmentation and dropout")
    p.add_argument("--out", help="run folder (none: runs/<model>-<timestamp>/; runs/latest points at the newest run)")
    p.add_argument("--resume", action="store_true", help=f"continue the run in --out (else the --config file's out, else runs/latest) from its newest checkpoint: same step, learning rate, data position and RNG state; model/data settings come from its {CONFIG_FILE}")
    p.add_argument("--stop-at", type=int, help="stop after this step (checkpoint + model saved) although the schedule spans --steps; resume later with --resume")
    p.add_argument("--keep-checkpoints", type=int, help="how many recent checkpoints to keep")
    p.add_argument("--float64", action="store_const", const=True, help="train in float64 (slower: about 1.3x on a CPU in the tests' tiny runs, far more on most GPUs): a numerical check that tells float32 rounding from a logic error when two runs should agree, e.g. several workers against one process (docs/multi-machine-training.md); the saved model.keras is float32")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, help="Keras mixed-precision policy of the model that trains: bfloat16 (fast where the CPU has AVX512-BF16 or AMX, and on TPUs), float16 (GPUs' tensor cores; the loss is scaled); variables stay float32 and the saved model.keras is float32 as with none. Measured speeds: docs/training.md")
    p.add_argument("--jit-compile", action="store_const", const=True, help="compile each training step with XLA (docs/training.md: where it pays)")
    add_loop_flags(p, "train_log.csv")
    document_defaults(p, FLAGS, ExperimentConfig())
    return p.parse_args(argv)


def parse_rates(text: str | None) -> list[int] | None:
    """`--rates 6,12,18` as [6, 12, 18] (None stays None: the output stride's default rates)."""
    if text is None:
        return None
    try:
        return [int(r) for r in text.split(",")]
    except ValueError:
        raise UsageError(f"--rates must be comma-separated integers, got {text!r}") from None


def flag_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command-line flags set."""
    from zoo.registry import model_name

    overrides = flag_overrides(argparse.Namespace(**dict(vars(args), rates=parse_rates(args.rates))), FLAGS)
    if args.backbone or args.head:
        if not (args.backbone and args.head):
            raise UsageError("--backbone and --head go together (or name the model with --model)")
        try:
            name = model_name(args.backbone, args.head)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if args.model and args.model != name:
            raise UsageError(f"--model {args.model} contradicts --backbone {args.backbone} --head {args.head}")
        overrides.setdefault("model", {})["name"] = name
    return overrides


def read_run_config(run_dir: str) -> dict[str, Any]:
    """The config a run folder was trained with (config.yaml; older runs' flat config.json is converted)."""
    legacy = os.path.join(run_dir, LEGACY_CONFIG)
    if os.path.isfile(os.path.join(run_dir, CONFIG_FILE)) or not os.path.isfile(legacy):
        return read_saved_config(run_dir, "training/train.py", ExperimentConfig)
    flat = read_file(legacy, sections=False)
    nested = flag_overrides(argparse.Namespace(**flat), FLAGS)
    nested.setdefault("model", {})["name"] = flat.get("model")
    nested.setdefault("schedule", {})["steps"] = flat.get("steps")
    return nested


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's config: defaults, then the run's saved config (--resume), then --config, then flags.

    UsageError naming the first value that cannot be used (`resolve` runs `ExperimentConfig.validate`)
    or file that cannot be read or written, before anything is written.
    """
    try:
        file_layer = read_file(find_config(args.config), ExperimentConfig) if args.config else {}
        flags = flag_layer(args)
        if args.resume:
            run_dir = args.out or (file_layer.get("training") or {}).get("out") or os.path.join("runs", "latest")
            saved_layer = read_run_config(run_dir)
            config = resolve(ExperimentConfig, saved_layer, file_layer, flags)
            check_resumable(config, saved_layer, LOCKED, where=os.path.join(run_dir, CONFIG_FILE), flags=FLAGS)
            config.training.out = os.path.realpath(run_dir)
        else:
            config = resolve(ExperimentConfig, file_layer, flags)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    config.model.fill_built_values(config.data.crop_size)  # the run's config.yaml states what was built
    check_files(config, resuming=args.resume)
    if args.stop_at is not None and args.stop_at < 1:
        raise UsageError(f"--stop-at must be positive, got {args.stop_at}")
    return config


def check_files(config: ExperimentConfig, resuming: bool) -> None:
    """UsageError naming the first file the config names that cannot be used (its values are checked by `resolve`)."""
    model = config.model
    if model.weights and not resuming:  # a resumed run restores its checkpoint instead
        from zoo.weights import weights_format

        try:
            weights_format(model.weights)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--weights: {error}") from None
    if config.training.out is not None:
        from common.files import check_output_path

        try:
            check_output_path(config.training.out, folder=True)
        except ValueError as error:
            raise UsageError(f"--out: {error}") from None


def build(config: ExperimentConfig, dataset, sync: bool, input_size: int | None = None, weights: str | None = None,
          training_forms: bool = False):
    """The run's model (at the crop size unless `input_size`); `weights` (a file `zoo.weights.load_weights` takes)
    initialises it; `training_forms`: the dilated convolutions in the fastest form that trains here (`zoo.atrous`)."""
    return config.model.build(
        dataset.num_classes, input_size=input_size or config.data.crop_size,
        label_names=dataset.label_names, sync_batchnorm=sync, weights=weights, training_forms=training_forms,
    )  # fmt: skip


def export_model(train_model, strategy, config: ExperimentConfig, dataset, path: str, steps_done: int) -> None:
    """Saves a clean float32 copy (no SyncBN, input size `model.input_size`) of the trained model, atomically."""
    import tf_keras as keras

    from training.trainer import local_weights
    from zoo import update_description
    from zoo.saving import atomic_save_keras

    floatx = keras.backend.floatx()
    keras.backend.set_floatx("float32")  # a --float64 run still saves a float32 model
    try:
        clean = build(config, dataset, sync=False, input_size=config.model.input_size)
    finally:
        keras.backend.set_floatx(floatx)
    for layer in clean.layers:
        if layer.weights:
            layer.set_weights(local_weights(train_model.get_layer(layer.name).weights, strategy))
    update_description(
        clean,
        data=config.data.train,
        training={
            "crop_size": config.data.crop_size,
            "batch_size": config.data.batch_size,
            "lr": config.optimizer.lr,
            "seed": config.training.seed,
            "weight_decay": config.optimizer.weight_decay,
            "steps": steps_done,
        },
    )
    atomic_save_keras(clean, path)


def devices_line(strategy: Any, nvidia_driver: bool | None = None) -> str:
    """`training on: ...`: the devices this process trains on (GPUs with their names) and the replicas; it says
    so where an NVIDIA driver is present (`nvidia_driver`, None: `zoo.quiet_startup.nvidia_driver_present`)
    but TensorFlow sees no GPU, which would otherwise train on the CPU without a word."""
    import tensorflow as tf

    from zoo.quiet_startup import nvidia_driver_present

    gpus = tf.config.list_physical_devices("GPU")
    names = {f"GPU:{i}": tf.config.experimental.get_device_details(gpu).get("device_name") for i, gpu in enumerate(gpus)}
    try:
        devices = [device.rsplit("/device:", 1)[-1] for device in strategy.extended.worker_devices]
    except RuntimeError:  # the default strategy lists none: TensorFlow places ops on the first GPU, else the CPU
        devices = ["GPU:0" if gpus else "CPU:0"]
    replicas = strategy.num_replicas_in_sync
    line = f"training on: {', '.join(f'{d} ({names[d]})' if names.get(d) else d for d in devices)} ({replicas} replica{'s' * (replicas != 1)})"
    if not gpus and (nvidia_driver_present() if nvidia_driver is None else nvidia_driver):
        line += "; an NVIDIA driver is present but TensorFlow sees no GPU (TF_CPP_MIN_LOG_LEVEL=0 shows why)"
    return line


def train(args: argparse.Namespace) -> int:
    """Runs (or resumes) a training run; returns the process exit code."""
    config = resolve_config(args)

    import tf_keras as keras

    from configs import write as write_config
    from data.datasets import open_dataset
    from training.runs import default_run_dir, point_latest, remove_run_folder
    from training.trainer import (
        Trainer, is_chief, is_multi_worker, local_weights, make_strategy, multi_worker_requested, precision_policy,
        weights_checksum, worker_rank,
    )
    from zoo import describe
    from zoo.atrous import check_trainable, chosen_forms
    from common.files import atomic_write_json

    run = config.training
    try:
        multi_worker_wanted = multi_worker_requested(run.strategy, run.cpu_replicas)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if multi_worker_wanted and not args.out:
        raise UsageError("multi-worker training needs --out: the run folder, on storage every worker can read")
    strategy = make_strategy(run.strategy, run.cpu_replicas)
    replicas = strategy.num_replicas_in_sync
    # What the convolutions compute in (the forms are chosen per dtype): float64, the mixed policy's type, or float32.
    compute_dtype = "float64" if run.float64 else "float32" if run.mixed_precision == "none" else run.mixed_precision
    try:  # after make_strategy: the probe runs an op, and no strategy can be made once TensorFlow has run one
        check_trainable(compute_dtype)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.data.batch_size % replicas:
        raise UsageError(f"--batch-size {config.data.batch_size} is not divisible by the {replicas} replicas")
    if run.jit_compile and (replicas > 1 or multi_worker_wanted):
        # XLA compiles one device's step: with the replicas' variables on several devices (mirrored,
        # --cpu-replicas) it fails inside a replica thread ("Trying to access resource .../replica_1 located
        # in device CPU:1 from device CPU:0"), and the other replicas then wait for it forever.
        raise UsageError(f"--jit-compile trains one replica only, not {replicas} replica(s)"
                         f"{' on several workers' if multi_worker_wanted else ''}: drop --jit-compile, or train on one device")

    # Everything that can fail on bad input fails here, before the run folder exists.
    dataset = open_dataset(config.data.train, "train")
    if config.data.check:
        # Each worker of a multi-worker run checks its own share (every n-th sample), so that together
        # they check every sample once; a worker that finds a bad one stops, and the others with it.
        rank, processes = worker_rank(strategy)
        dataset.check(shard=(rank, processes))

    keras.utils.set_random_seed(run.seed)
    # For the whole run: Keras reads floatx when it builds layers and applies constraints.
    keras.backend.set_floatx("float64" if run.float64 else "float32")
    with strategy.scope():
        try:
            with precision_policy(run.mixed_precision):
                model = build(config, dataset, sync=replicas > 1, weights=None if args.resume else config.model.weights,
                              training_forms=True)
        except ValueError as error:  # a model option or weights file that does not fit
            raise UsageError(str(error)) from None

    chief, multi_worker = is_chief(strategy), is_multi_worker(strategy)
    given_out = run.out
    out = given_out or default_run_dir(config.model.name)
    # Only the chief writes the run folder. The other workers must still take part in every
    # checkpoint save (saving reads synchronized variables, a collective op), so they write
    # theirs to a scratch folder, and resume from the chief's.
    with tempfile.TemporaryDirectory(prefix="ksac_worker_") as scratch:
        work_dir = out if chief else scratch
        trainer = Trainer(
            model, strategy, config.optimizer, config.schedule, work_dir=work_dir, seed=run.seed,
            checkpoint_every=run.checkpoint_every, keep_checkpoints=run.keep_checkpoints, log_every=run.log_every, chief=chief,
            restore_dir=os.path.join(out, "checkpoints"), mixed_precision=run.mixed_precision, jit_compile=run.jit_compile,
        )  # fmt: skip
        start_step = 0
        if args.resume:
            try:
                start_step = trainer.restore()
            except FileNotFoundError as error:
                raise UsageError(str(error)) from None
            print(f"resumed {out} from {trainer.restored_from} at step {start_step}")
        steps = config.schedule.steps
        stop_step = min(steps, args.stop_at or steps)
        if start_step >= stop_step:
            print(f"nothing to do: the run is at step {start_step}, --steps/--stop-at is {stop_step}")
            return 0

        fresh = chief and not args.resume and not os.path.exists(out)
        os.makedirs(work_dir, exist_ok=True)
        latest_before = None
        if chief:
            run.out = os.path.abspath(out)
            write_config(config, out)
            if given_out is None or os.path.basename(os.path.dirname(os.path.abspath(out))) == "runs":
                latest_before = point_latest(out)

        print(
            f"training {config.model.name} on {dataset.spec} ({len(dataset)} images, {dataset.num_classes} classes), "
            f"{replicas} replica(s), global batch {config.data.batch_size}, crop {config.data.crop_size}, steps {start_step}->{stop_step}"
        )
        print(devices_line(strategy))
        forms = chosen_forms(compute_dtype)
        print("dilated convolutions (zoo/atrous.py): " + ", ".join(f"{kind} {form}" for kind, form in forms.items()))
        try:
            result = trainer.fit(
                dataset, batch_size=config.data.batch_size, crop_size=config.data.crop_size,
                normalization=describe(model).normalization, data_seed=run.seed, start_step=start_step, stop_step=stop_step,
            )  # fmt: skip
        except BaseException:
            if fresh and trainer.manager.latest_checkpoint is None:
                # Nothing to resume from: remove what this run wrote, so that neither --resume nor
                # runs/latest finds a folder with a config and no checkpoint.
                remove_run_folder(out, latest_before)
                print(f"the run stopped before its first checkpoint; removed {out}", file=sys.stderr)
            raise
        if multi_worker:
            # No collective op after this point: a worker may exit while the chief still saves.
            task = strategy.cluster_resolver.task_type, strategy.cluster_resolver.task_id
            print(f"{task[0]} {task[1]}: weights checksum {weights_checksum(local_weights(model.weights, strategy))} at step {result.step}")
        if chief:
            export_model(model, strategy, config, dataset, os.path.join(out, "model.keras"), result.step)
            atomic_write_json(
                os.path.join(out, "summary.json"),
                {"step": result.step, "final_loss": result.loss, "images_per_s": result.images_per_s, "wall_s": result.wall_s},
            )
            speed = result.images_per_s
            timed = f"mean speed {speed:.2f} images/s" if speed else "speed not timed (only the first, graph-tracing step ran)"
            print(f"saved {os.path.join(out, 'model.keras')} (step {result.step}); {timed}")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (common/cli.py: 2 for bad flags, config, files or data,
    1 for a diverged run or a lost worker)."""
    args = parse_args(argv)
    from data.datasets import DatasetError
    from training.trainer import NonFiniteLoss, WorkerLost

    try:
        return train(args)
    except (UsageError, DatasetError, FileNotFoundError, NonFiniteLoss, WorkerLost) as err:
        return fail(err)
    finally:
        if "tf_keras" in sys.modules:  # --float64 set it; callers in this process get float32 back
            sys.modules["tf_keras"].backend.set_floatx("float32")


if __name__ == "__main__":
    exit_process(main)
