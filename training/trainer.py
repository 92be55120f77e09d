"""The one training loop, shared by float training (`training/train.py`) and QAT (`quantize/finetune.py`).

`Trainer` owns what both need: the optimiser with the poly schedule, a checkpoint of
model + optimiser + dropout RNGs (exact resume: same step, learning rate, data
position and random masks), the `tf.distribute` step (loss = cross-entropy mean over
the valid pixels of the GLOBAL batch + weight decay), the progress line, the CSV log,
TensorBoard scalars, the non-finite-loss stop and, in a multi-worker run
(`MultiWorkerMirroredStrategy`, TF_CONFIG), the lost-worker stop (`WorkerLost`). What
differs between the two callers (which model, how it is built, what is saved at the
end) stays with them.

Example:
    strategy = make_strategy("auto")
    with strategy.scope():
        model = zoo.build_model("mobilenetv2_ksac", input_size=129, width=0.35)
    trainer = Trainer(model, strategy, config.optimizer, config.schedule, work_dir="runs/x", seed=0)
    result = trainer.fit(dataset, batch_size=8, crop_size=129, start_step=0, stop_step=100)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras

from configs import ConfigError, OptimizerConfig, ScheduleConfig
from data.datasets import SegmentationDataset
from training.losses import masked_cross_entropy_sum, weight_decay_loss
from training.pipeline import train_batches
from training.runs import CsvLog, format_eta, remove_partial_checkpoints, restore_newest, seed_dropout

LOG_COLUMNS = ("step", "loss", "lr", "images_per_s", "elapsed_s")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run stopped (killed, crashed, preempted); the message says how to resume."""


# What a collective op raises when a peer is gone: TensorFlow's coordination service stops
# getting the peer's heartbeats and aborts every pending collective on the survivors.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError, tf.errors.CancelledError)


@dataclass
class FitResult:
    """How a `Trainer.fit` call ended."""

    step: int
    loss: float
    images_per_s: float | None  # mean over the timed steps (the first, tracing step excluded)
    wall_s: float


def multi_worker_requested(kind: str, cpu_replicas: int = 0) -> bool:
    """Whether strategy `kind` means a multi-worker run: "multiworker", or "auto" with a cluster in
    TF_CONFIG (the environment variable TFJob and Vertex AI set on every worker).

    Raises ConfigError, naming TF_CONFIG, where the request cannot be right: TF_CONFIG that is not a
    JSON object, a cluster without this process's `task`, `multiworker` without a cluster, or a
    cluster with a one-process strategy (`default`, `mirrored`, `--cpu-replicas`): every process of
    the cluster would then train alone, think itself chief and write the same run folder.
    """
    text = os.environ.get("TF_CONFIG") or "{}"
    try:
        tf_config = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}") from None
    if not isinstance(tf_config, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got {text[:200]!r}")
    cluster = tf_config.get("cluster")
    if not cluster:
        if kind == "multiworker":
            raise ConfigError(
                "--strategy multiworker needs TF_CONFIG describing the cluster and this worker's task, e.g. "
                '\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}\'; '
                "to train in one process use --strategy auto or default"
            )
        return False
    task = tf_config.get("task")
    if not (isinstance(task, dict) and "type" in task and "index" in task):
        raise ConfigError(
            f"TF_CONFIG has a cluster but no 'task' with 'type' and 'index' (this process's place in it), got {text[:200]!r}"
        )
    if kind in ("default", "mirrored") or cpu_replicas > 1:
        alone = f"--strategy {kind}" if kind in ("default", "mirrored") else f"--cpu-replicas {cpu_replicas}"
        raise ConfigError(
            f"TF_CONFIG describes a cluster, but {alone} trains this process alone: every process of the cluster "
            "would think itself chief and write the same --out. Unset TF_CONFIG to train alone, or use "
            "--strategy multiworker (or auto) without --cpu-replicas"
        )
    return True


def make_strategy(kind: str = "auto", cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `kind` (call before TensorFlow touches a device).

    auto: multi-worker if TF_CONFIG describes a cluster, mirrored if several GPUs are
    visible, else the default one-device strategy. `cpu_replicas` > 1 splits the CPU
    into that many logical devices and mirrors across them (a testing aid).
    """
    multi_worker = multi_worker_requested(kind, cpu_replicas)  # ConfigError for a contradictory request
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_replicas)])
    if multi_worker:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder (always, outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def peer_error_reason(error: tf.errors.OpError) -> str:
    """The informative part of a failed collective's message (TensorFlow's also holds a Python traceback)."""
    message = error.message or ""
    unhealthy = re.search(r"The following tasks are unhealthy[^\n]*\n\s*(/job:\S+)", message)
    if unhealthy:
        return f"{unhealthy.group(1)} stopped sending heartbeats"
    grpc = re.search(r'grpc_message:"([^"]+)"', message)
    if grpc:
        target = re.search(r"from remote target (/job:\S+)", message)
        return f"{target.group(1)}: {grpc.group(1)}" if target else grpc.group(1)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    plain = [line for line in lines if not line.endswith(":") and not line.startswith(("File ", "Detected at node"))]
    return plain[0] if plain else type(error).__name__


def worker_rank(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this process's rank, number of processes) in a multi-worker run, the chief first; (0, 1) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0, 1
    spec = resolver.cluster_spec()
    tasks = [(kind, i) for kind in ("chief", "worker") if kind in spec.jobs for i in range(spec.num_tasks(kind))]
    return tasks.index((resolver.task_type, resolver.task_id)), len(tasks)


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several processes (TF_CONFIG cluster)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def local_weights(variables: Iterable[tf.Variable], strategy: tf.distribute.Strategy) -> list[np.ndarray]:
    """The values of `variables` as this process holds them (its first replica's copy).

    Reading a distributed variable normally aggregates it across replicas, which for a
    multi-worker run is a collective op every worker must join; the copies are equal
    (mirrored variables get the same all-reduced updates, synchronized BatchNorm the
    same statistics), so the chief reads its own without waiting for the others.
    """
    return [strategy.experimental_local_results(v)[0].numpy() for v in variables]


def weights_checksum(weights: Iterable[np.ndarray]) -> str:
    """A short SHA-256 of the weights' bytes: equal on every worker of a correct multi-worker run."""
    digest = hashlib.sha256()
    for value in weights:
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def precision_policy(mixed_precision: str) -> Iterator[None]:
    """Layers built inside take Keras' mixed policy `mixed_<mixed_precision>` ("none": float32): float32
    variables, computation in bfloat16 or float16. Only construction reads the policy, so the model built
    for saving after training (train.py) is float32 whatever trained."""
    if mixed_precision == "none":
        yield
        return
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def make_optimizer(config: OptimizerConfig, schedule: ScheduleConfig):
    """(optimizer, learning-rate schedule): SGD with momentum or Adam, on the poly schedule to 0 at `schedule.steps`."""
    rate = keras.optimizers.schedules.PolynomialDecay(
        config.lr, schedule.steps, end_learning_rate=0.0, power=schedule.poly_power
    )
    if config.name == "adam":
        return keras.optimizers.Adam(learning_rate=rate), rate
    if config.name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum), rate
    raise ValueError(f"unknown optimizer {config.name!r}; valid: sgd, adam")


def write_scalars(writer, step: int, **values: float) -> None:
    """TensorBoard scalars without the `tensorboard` package (tf.summary.scalar needs it; tf.summary.write does not)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata.SerializeToString())


class Trainer:
    """Checkpointed, resumable, distributed training of one Keras model.

    Args:
        model: the model to train, built inside `strategy.scope()`.
        strategy: the tf.distribute strategy (see `make_strategy`).
        optimizer: optimiser settings (lr for the global batch, momentum, weight decay).
        schedule: the poly schedule (steps, power).
        work_dir: where `checkpoints/`, the CSV log and `tensorboard/` go.
        restore_dir: the checkpoint folder `restore` reads (default `work_dir/checkpoints`;
            non-chief workers write to a scratch folder but resume from the chief's).
        seed: seeds the dropout RNGs (data order and augmentation are seeded in `fit`).
        dropout_layers: the layers whose Dropout RNGs are seeded and checkpointed
            (default `model.layers`; QAT passes the float layers inside the tfmot wrappers).
        log_name: the CSV log's file name.
        checkpoint_every, keep_checkpoints, log_every: steps between checkpoints, how many
            to keep, steps between progress lines (the last step is always logged and saved).
        chief: whether this process writes logs (non-chief workers only checkpoint).
        log: where progress lines go.
    """

    def __init__(
        self,
        model: keras.Model,
        strategy: tf.distribute.Strategy,
        optimizer: OptimizerConfig,
        schedule: ScheduleConfig,
        *,
        work_dir: str,
        seed: int,
        dropout_layers: Iterable[keras.layers.Layer] | None = None,
        log_name: str = "train_log.csv",
        checkpoint_every: int = 500,
        keep_checkpoints: int = 3,
        log_every: int = 10,
        chief: bool = True,
        restore_dir: str | None = None,
        mixed_precision: str = "none",
        jit_compile: bool = False,
        log: Callable[[str], None] = lambda line: print(line, flush=True),
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.weight_decay = optimizer.weight_decay
        self.work_dir = work_dir
        self.log_name = log_name
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.chief = chief
        self.log = log
        self.jit_compile = jit_compile
        with strategy.scope():
            self.optimizer, self.schedule = make_optimizer(optimizer, schedule)
            if mixed_precision == "float16":  # float16 gradients underflow without a (dynamic) loss scale
                self.optimizer = keras.mixed_precision.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(model.trainable_variables)
            rng = tf.Module()
            rng.dropout = seed_dropout(model.layers if dropout_layers is None else list(dropout_layers), seed)
            self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer, rng=rng)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(work_dir, "checkpoints"), max_to_keep=keep_checkpoints, checkpoint_name="ckpt"
        )
        self.restore_dir = restore_dir or self.manager.directory
        self.restored_from: str | None = None

    def restore(self) -> int:
        """Restores the newest checkpoint of `restore_dir`; returns its step (FileNotFoundError naming the folder if none).

        The chief first deletes what a killed save left behind (see `remove_partial_checkpoints`).
        """
        if self.chief:
            remove_partial_checkpoints(self.restore_dir)
        try:
            step, self.restored_from = restore_newest(self.checkpoint, self.restore_dir, self.optimizer)
            return step
        except FileNotFoundError as error:
            if self.chief:
                raise
            raise FileNotFoundError(
                f"{error}: every worker resumes from the chief's run folder, which must be on storage all workers can read"
            ) from None

    def _train_step(self, batch_size: int) -> Callable:
        model, optimizer, strategy, weight_decay = self.model, self.optimizer, self.strategy, self.weight_decay

        def replica_step(images, labels):
            ctx = tf.distribute.get_replica_context()
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                ce_sum, count = masked_cross_entropy_sum(labels, logits)  # float32 even from mixed-precision logits
                # Mean over the valid pixels of the GLOBAL batch, so that any replica count gives the same loss.
                total = tf.maximum(ctx.all_reduce(tf.distribute.ReduceOp.SUM, count), 1.0)
                loss = ce_sum / total + weight_decay_loss(model, weight_decay) / ctx.num_replicas_in_sync
                scaled = optimizer.get_scaled_loss(loss) if loss_scaled else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            if loss_scaled:
                grads = optimizer.get_unscaled_gradients(grads)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        loss_scaled = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
        if self.jit_compile:  # the replica's step only: the input iterator cannot be compiled
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_step(iterator):
            images, labels = next(iterator)
            per_replica = strategy.run(replica_step, args=(images, labels))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        return train_step

    def fit(
        self,
        dataset: SegmentationDataset,
        *,
        batch_size: int,
        crop_size: int,
        normalization: dict[str, Any],
        data_seed: int,
        start_step: int,
        stop_step: int,
    ) -> FitResult:
        """Trains from `start_step` to `stop_step` on `dataset`'s augmented batches.

        The batches are a function of (`data_seed`, step), so a run resumed at
        `start_step` sees exactly the batches an uninterrupted run would have.
        Raises NonFiniteLoss (nothing more is saved) when the loss stops being finite.
        """
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"batch size {batch_size} is not divisible by the {replicas} replicas")
        csv_log = CsvLog(os.path.join(self.work_dir, self.log_name), LOG_COLUMNS)
        csv_log.keep_until(start_step)
        writer = tf.summary.create_file_writer(os.path.join(self.work_dir, "tensorboard"))
        loaders = []

        def input_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            ds, loader = train_batches(dataset, batch_size, crop_size, normalization, data_seed, start_step, context)
            loaders.append(loader)
            return ds

        batches = iter(self.strategy.distribute_datasets_from_function(input_pipeline))
        train_step = self._train_step(batch_size)

        run_start = time.time()
        interval_start, interval_images, timed_steps, timed_time = time.time(), 0, 0, 0.0
        step, loss = start_step, float("nan")
        while step < stop_step:
            try:
                loss = float(train_step(batches))
            except tf.errors.OpError as error:
                for loader in loaders:
                    if loader.error is not None:  # a sample that failed to decode: report it, not TensorFlow's wrapper
                        raise loader.error from None
                self._raise_if_worker_lost(step + 1, error)
                raise
            step += 1
            if not math.isfinite(loss):
                kept = self.manager.latest_checkpoint or "none (no checkpoint was written yet)"
                raise NonFiniteLoss(
                    f"the loss is {loss} at step {step}; stopping. The last good checkpoint is {kept}. "
                    "Lower the learning rate (--lr) or check the data."
                )
            interval_images += batch_size
            if step == start_step + 1:
                interval_start, interval_images = time.time(), 0  # the first step traces the graph: not timed
            last = step == stop_step
            if step % self.log_every == 0 or last:
                now = time.time()
                elapsed = now - interval_start
                speed = interval_images / elapsed if interval_images and elapsed > 0 else float("nan")
                if interval_images:
                    timed_steps += interval_images // batch_size
                    timed_time += elapsed
                lr = float(self.schedule(step - 1))
                eta = (stop_step - step) * batch_size / speed if speed == speed else 0.0
                shown = f"{speed:.2f} images/s" if speed == speed else "speed not timed yet (the first step traces the graph)"
                self.log(f"step {step}/{stop_step}  loss {loss:.4f}  lr {lr:.6f}  {shown}  ETA {format_eta(eta)}")
                if self.chief:
                    csv_log.append({"step": step, "loss": f"{loss:.6f}", "lr": f"{lr:.8f}", "images_per_s": f"{speed:.3f}",
                                    "elapsed_s": f"{now - run_start:.1f}"})  # fmt: skip
                    write_scalars(writer, step, loss=loss, learning_rate=lr, images_per_second=speed)
                interval_start, interval_images = time.time(), 0
            if step % self.checkpoint_every == 0 or last:
                try:
                    self.manager.save(checkpoint_number=step)
                except tf.errors.OpError as error:
                    self._raise_if_worker_lost(step, error)
                    raise
        writer.flush()
        speed = timed_steps * batch_size / timed_time if timed_time > 0 else None
        return FitResult(step=step, loss=loss, images_per_s=speed, wall_s=time.time() - run_start)

    def _raise_if_worker_lost(self, step: int, error: tf.errors.OpError) -> None:
        """Raises WorkerLost if `error` (at `step`) is a multi-worker collective that lost a peer, after
        removing a checkpoint it left half-written; returns otherwise."""
        if not (is_multi_worker(self.strategy) and isinstance(error, PEER_ERRORS)):
            return
        if self.chief:
            remove_partial_checkpoints(self.manager.directory)
        kept = tf.train.latest_checkpoint(self.manager.directory if self.chief else self.restore_dir)
        raise WorkerLost(
            f"lost another worker at step {step} ({peer_error_reason(error)}); stopping. "
            f"The last checkpoint is {kept or 'none (no checkpoint was written yet)'}: restart every worker with "
            "the same command plus --resume to continue from it."
        ) from None
