"""Run folders: the default name, the `runs/latest` link, the CSV log, dropout RNGs and checkpoint restore."""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from typing import Any, Sequence

from common.files import atomic_write_text


def default_run_dir(model_name: str, root: str = "runs") -> str:
    """`runs/<model>-<timestamp>/` (a suffix is added if that exists already)."""
    base = os.path.join(root, f"{model_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def point_latest(run_dir: str) -> str | None:
    """Makes `<parent of run_dir>/latest` a relative symlink to `run_dir`, atomically; returns the
    link's previous target (None if there was no link)."""
    parent = os.path.dirname(os.path.abspath(run_dir))
    link = os.path.join(parent, "latest")
    previous = os.readlink(link) if os.path.islink(link) else None
    replace_symlink(link, os.path.basename(os.path.abspath(run_dir)))
    return previous


def remove_run_folder(run_dir: str, latest_before: str | None) -> None:
    """Deletes a run folder that holds no checkpoint, and points `latest` back where it pointed before
    (`latest_before`, what `point_latest` returned; the link is removed if it was None and now names
    `run_dir`)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = os.path.dirname(os.path.abspath(run_dir))
    link = os.path.join(parent, "latest")
    if os.path.islink(link) and os.readlink(link) == os.path.basename(os.path.abspath(run_dir)):
        if latest_before is None:
            os.unlink(link)
        else:
            replace_symlink(link, latest_before)


def replace_symlink(link: str, target: str) -> None:
    """Makes `link` a symlink to `target`, atomically (a new link renamed over the old one)."""
    tmp = os.path.join(os.path.dirname(link), f".{os.path.basename(link)}.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


class CsvLog:
    """`train_log.csv`: a header, then one row per logged step (`step` first), rewritten atomically."""

    def __init__(self, path: str, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = list(columns)
        self.rows: list[dict[str, Any]] = []

    def keep_until(self, step: int) -> None:
        """Loads an existing log, dropping rows after `step` (a resumed run logs them again)."""
        if not os.path.isfile(self.path):
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            self.rows = [row for row in csv.DictReader(f) if int(row["step"]) <= step]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def seed_dropout(layers: Sequence[Any], seed: int) -> list:
    """Gives every dropout layer its own seeded, checkpointed random generator.

    Keras' default dropout uses stateful legacy ops whose state cannot be saved;
    a `tf.random.Generator` is a variable, so the checkpoint restores it and a
    resumed run draws the same masks as an uninterrupted one. Returns the
    generators, which the caller must add to its checkpoint (Keras does not
    track them through the layer).
    """
    import tf_keras as keras
    from tf_keras.src.backend import RandomGenerator

    generators = []
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0:
            layer._random_generator = RandomGenerator(seed=seed * 7919 + i, rng_type="stateful")
            layer._random_generator._maybe_init()
            generators.append(layer._random_generator._generator)
    return generators


def restore_newest(checkpoint, directory: str, optimizer) -> tuple[int, str]:
    """Restores the newest checkpoint in `directory` into `checkpoint`; returns (the step it was at, its path).

    Raises FileNotFoundError (naming the folder) when there is none, for `--resume`.
    """
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {directory}")
    checkpoint.restore(latest).assert_existing_objects_matched()
    return int(optimizer.iterations.numpy()), latest


def remove_partial_checkpoints(directory: str) -> list[str]:
    """Deletes what an interrupted `CheckpointManager.save` left in `directory`; returns the removed paths.

    TensorFlow writes a checkpoint into `<prefix>_temp/` and then moves it into place;
    the `checkpoint` state file names it only once that finished (an atomic rename).
    A process killed in between leaves the temp folder, or files of a checkpoint the
    state file does not list yet: neither can ever be restored.
    """
    import shutil

    import tensorflow as tf

    if not os.path.isdir(directory):
        return []
    state = tf.train.get_checkpoint_state(directory)
    listed = {os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])}
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        prefix = name.split(".")[0]
        if name.endswith("_temp") or (prefix.startswith("ckpt-") and prefix not in listed):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            removed.append(path)
    return removed
