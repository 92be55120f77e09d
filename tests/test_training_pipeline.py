"""The training stream is a function of (seed, step): sharded across workers, every input pipeline
decodes only its replicas' slices of each global batch, and together they give the same global
batch, bit for bit, whatever the number of workers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data.datasets import SegmentationDataset
from training.pipeline import sample_index, train_batches

NORM = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}
GLOBAL_BATCH, STEPS, SEED, SIZE = 8, 3, 4, 500


class RecordingDataset(SegmentationDataset):
    """Distinct little images; remembers which indices were decoded."""

    def __init__(self) -> None:
        super().__init__("recording", "recording", "train", ["a", "b"])
        self.decoded: set[int] = set()

    def __len__(self) -> int:
        return SIZE

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        self.decoded.add(index)
        rng = np.random.RandomState(index)
        return rng.randint(0, 256, (40, 36, 3)).astype(np.uint8), rng.randint(0, 2, (40, 36)).astype(np.uint8)


def global_batches(workers: int, start_step: int = 0) -> tuple[list[np.ndarray], list[set[int]]]:
    """Each step's global batch of images, put together from `workers` input pipelines (one replica
    each), and the dataset indices each pipeline decoded."""
    per_worker, decoded = [], []
    for worker in range(workers):
        dataset = RecordingDataset()
        context = tf.distribute.InputContext(workers, worker, workers)
        ds, _ = train_batches(dataset, GLOBAL_BATCH, 33, NORM, SEED, start_step, context)
        per_worker.append([images.numpy() for images, _ in ds.take(STEPS)])
        decoded.append(dataset.decoded)
    return [np.concatenate([batches[step] for batches in per_worker]) for step in range(STEPS)], decoded


def test_workers_share_each_global_batch_and_decode_only_their_slice():
    one, (everything,) = global_batches(1)
    for workers in (2, 4):
        batches, decoded = global_batches(workers)
        assert all(np.array_equal(a, b) for a, b in zip(one, batches)), f"{workers} workers change the data"
        share = GLOBAL_BATCH // workers
        for worker, indices in enumerate(decoded):
            # Its slots of every step (the prefetch may read a few steps ahead).
            mine = {sample_index(SEED, step * GLOBAL_BATCH + worker * share + i, SIZE) for step in range(STEPS + 8) for i in range(share)}
            assert indices <= mine and len(indices) >= STEPS * share, (worker, sorted(indices - mine))
        assert not set.intersection(*decoded)


def test_a_stream_started_at_a_step_continues_the_uninterrupted_one():
    batches, _ = global_batches(2)
    later, _ = global_batches(2, start_step=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches[1:], later))
