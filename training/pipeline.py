"""The training input pipeline: a tf.data stream of augmented batches, a function of (seed, step).

Sample position k (the k-th sample the run consumes, k = step * global_batch + i)
reads dataset index `permutation(seed, epoch)[k % n]` with epoch = k // n, and is
augmented with the stateless seed (seed, k). Starting the stream at
`start_step` therefore yields exactly the batches an uninterrupted run would
have seen from that step on: that is what makes `--resume` exact.

Under `tf.distribute`, each input pipeline (one per worker) reads only the positions
of its own replicas' share of every global batch, so no worker decodes the whole
dataset, and the global batch at a step is the same whatever the number of workers
or replicas (augmentation is seeded by position, not by worker).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow as tf

from data.datasets import DatasetError, SegmentationDataset
from data.transforms import train_augment


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The shuffled order of dataset indices in `epoch`."""
    return np.random.RandomState((seed * 1_000_003 + epoch) % (2**32)).permutation(size)


def sample_index(seed: int, position: int, size: int) -> int:
    """The dataset index read at sample position `position` of a run."""
    return int(epoch_order(seed, position // size, size)[position % size])


class SampleLoader:
    """Loads samples by position for `tf.numpy_function`, keeping the first DatasetError.

    TensorFlow turns an exception raised inside the pipeline into an opaque
    `OpError`; the training loop asks `error` for the original, readable one.
    """

    def __init__(self, dataset: SegmentationDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.error: DatasetError | None = None

    def __call__(self, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self.dataset.load(sample_index(self.seed, int(position), len(self.dataset)))
        except DatasetError as err:
            self.error = self.error or err
            raise


def train_batches(
    dataset: SegmentationDataset,
    global_batch: int,
    crop_size: int,
    normalization: dict[str, Any],
    seed: int,
    start_step: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tuple[tf.data.Dataset, SampleLoader]:
    """An endless tf.data.Dataset of (float32 [b, S, S, 3] images, int32 [b, S, S] labels) from `start_step`.

    Without `input_context`, b is the global batch. With it (from
    `strategy.distribute_datasets_from_function`), the dataset is this input
    pipeline's: one batch per local replica and step, in replica order, each of the
    per-replica batch size, holding the positions of that replica's slice of the
    global batch.

    Returns the dataset and its `SampleLoader` (whose `.error` explains a pipeline failure).
    """
    loader = SampleLoader(dataset, seed)
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline = input_context.input_pipeline_id if input_context else 0
    if global_batch % pipelines:
        raise ValueError(f"batch size {global_batch} is not divisible by the {pipelines} input pipelines (workers)")
    share = global_batch // pipelines  # this pipeline's samples per step
    batch = input_context.get_per_replica_batch_size(global_batch) if input_context else global_batch

    def position(slot: tf.Tensor) -> tf.Tensor:
        # slot counts this pipeline's samples from step 0; position counts the run's samples.
        return slot // share * global_batch + pipeline * share + slot % share

    def load(position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image, mask = tf.numpy_function(loader, [position], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        return image, mask, position

    def augment(image: tf.Tensor, mask: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return train_augment(image, mask, tf.stack([tf.constant(seed, tf.int64), position]), crop_size, normalization)

    ds = tf.data.Dataset.range(start_step * share, 2**62).map(position)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch, drop_remainder=True).prefetch(2)
    options = tf.data.Options()
    options.deterministic = True
    # Sharding is done above, by position: tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options), loader
