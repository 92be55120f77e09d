"""Every command refuses bad input the same way (issue 23): the exit code of the rule in docs/cli.md (2: the
user's input or environment is wrong; 1: the work itself failed), one `error:` message that names the file or
value and says why, no Python traceback, and nothing written (no output file, no run folder).

One table drives every command as a user runs it (a subprocess, in a folder of its own), with what
users actually get wrong: a file that is not what the flag wants (text, empty, random bytes, a
truncated or garbled model), a config file whose sections are not mappings, an output path that is a
directory or lies under a file, a limit of 0, an empty dataset, an unknown name, a missing file, a
missing environment. Each row states its exit code and the words its message must hold: the bad value
and the reason (an argparse usage line alone does not pass). The rows run two at a time (each starts
Python, most import TensorFlow: about 3.5 s of CPU a row), so the table keeps to one row per mistake and
command; rows that only guard what already worked are few.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo.quiet_startup import STARTUP_LINE

ROOT = Path(__file__).resolve().parents[1]

# How each command is started (relative to the checkout; `-m` runs a module).
COMMANDS = {
    "train": ["training/train.py"],
    "evaluate": ["evaluation/evaluate.py"],
    "predict": ["evaluation/predict.py"],
    "to_tflite": ["convert/to_tflite.py"],
    "qat": ["quantize/qat.py"],
    "benchmarks": ["benchmarks/run.py"],
    "android_bench": ["benchmarks/android.py"],
    "inspect": ["-m", "convert.inspect"],
    "gpu": ["-m", "inference.gpu"],
    "arm": ["-m", "inference.arm"],
    "zoo": ["-m", "zoo"],
    "prepare_assets": ["android_demo/prepare_assets.py"],
    "make_golden": ["-m", "android_demo.make_golden"],
    "tiny_model": ["android_demo/tiny_model.py"],
    "segment": ["-m", "ksac_runtime.segment"],  # ksac-segment, the runtime's command (no TensorFlow)
}
# The smallest training run (what the rows that get past the config would train).
TINY_TRAIN = ("--model", "mobilenetv2_ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "65",
              "--batch-size", "2", "--steps", "1", "--out", "run")  # fmt: skip
IMAGE = ("--image", "{in}/image.png")
USER, FAILED = 2, 1  # the exit codes of the rule (common/cli.py)
# Why a file is not a model, in the words of the reader that finds out.
NOT_TFLITE, DAMAGED = "is not a TFLite model", "is not a valid TFLite model"
NOT_KERAS = "not a Keras model"
NOT_MAPPING = "must be a mapping"
UNDER_A_FILE, A_DIRECTORY = "is a file, not a directory", "is a directory; give a file name"
NOT_A_FOLDER = "exists and is not a directory"


@dataclass(frozen=True)
class Row:
    """One bad input: `args` ({in}: the shared inputs folder) run in a fresh folder holding `setup`.

    `code` is the exit code the rule gives; `says` the texts the error message must hold ({in} as in
    `args`): the file or value the user got wrong, and the words of the reason that tell this mistake from
    another. `setup` maps a name in the row's folder to a file's text, or to None for an (empty) folder;
    `env` sets environment variables of the command ({in} as in `args`).
    """

    command: str
    case: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    setup: dict[str, str | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


TABLE = [
    # -- a .tflite that is not one
    Row("inspect", "text file as .tflite", ("{in}/text.tflite",), USER, ("{in}/text.tflite", NOT_TFLITE)),
    Row("inspect", "empty .tflite", ("{in}/empty.tflite",), USER, ("{in}/empty.tflite", "is empty")),
    Row("inspect", "random bytes as .tflite", ("{in}/random.tflite",), USER, ("{in}/random.tflite", NOT_TFLITE)),
    Row("inspect", "TFL3 + garbage", ("{in}/tfl3.tflite",), USER, ("{in}/tfl3.tflite", DAMAGED)),
    Row("inspect", "truncated .tflite", ("{in}/truncated.tflite",), USER, ("{in}/truncated.tflite", DAMAGED)),
    Row("predict", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite", *IMAGE, "--out", "o.png"), USER,
        ("{in}/tfl3.tflite", DAMAGED)),  # fmt: skip
    Row("predict", "--model truncated .tflite", ("--model", "{in}/truncated.tflite", *IMAGE, "--out", "o.png"), USER,
        ("{in}/truncated.tflite", DAMAGED)),  # fmt: skip
    Row("evaluate", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite",), USER, ("{in}/tfl3.tflite", DAMAGED)),
    Row("gpu", "text file as model", ("{in}/text.tflite",), USER, ("{in}/text.tflite", DAMAGED)),
    Row("gpu", "TFL3 + garbage", ("{in}/tfl3.tflite",), USER, ("{in}/tfl3.tflite", DAMAGED)),
    Row("prepare_assets", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite", "--assets", "assets"), USER,
        ("{in}/tfl3.tflite", DAMAGED)),  # fmt: skip
    Row("make_golden", "--model truncated .tflite", ("--model", "{in}/truncated.tflite", "--out", "golden"), USER,
        ("{in}/truncated.tflite", DAMAGED)),  # fmt: skip
    Row("segment", "--model text file", ("--model", "{in}/text.tflite", "{in}/image.png"), USER, ("{in}/text.tflite", NOT_TFLITE)),
    Row("segment", "--model truncated .tflite", ("--model", "{in}/truncated.tflite", "{in}/image.png"), USER,
        ("{in}/truncated.tflite", DAMAGED)),  # fmt: skip
    Row("segment", "a text file as IMAGE", ("--model", "{in}/described.tflite", "{in}/text.keras"), USER,
        ("{in}/text.keras", "is not an image")),  # fmt: skip
    Row("segment", "a missing IMAGE", ("--model", "{in}/described.tflite", "nowhere.png"), USER, ("nowhere.png", "not found")),
    Row("segment", "--out under a file", ("--model", "{in}/described.tflite", "{in}/image.png", "--out", "afile/out"), USER,
        ("--out", "afile/out", UNDER_A_FILE), {"afile": "x"}),  # fmt: skip
    Row("segment", "--camera that is not there", ("--model", "{in}/described.tflite", "--camera", "97"), USER, ("no camera 97",)),
    Row("android_bench", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite", "--benchmark-binary", "{in}/text.tflite",
                                                    "--results", "rows.json"), USER, ("{in}/tfl3.tflite", DAMAGED)),  # fmt: skip
    # -- a .keras that is not one
    Row("predict", "--model text .keras", ("--model", "{in}/text.keras", *IMAGE, "--out", "o.png"), USER,
        ("{in}/text.keras", NOT_KERAS)),  # fmt: skip
    Row("predict", "--model empty .keras", ("--model", "{in}/empty.keras", *IMAGE, "--out", "o.png"), USER,
        ("{in}/empty.keras", NOT_KERAS)),  # fmt: skip
    Row("to_tflite", "--model text .keras", ("--model", "{in}/text.keras", "--out", "m.tflite"), USER,
        ("{in}/text.keras", NOT_KERAS)),  # fmt: skip
    Row("to_tflite", "--model empty .keras", ("--model", "{in}/empty.keras", "--out", "m.tflite"), USER,
        ("{in}/empty.keras", NOT_KERAS)),  # fmt: skip
    Row("evaluate", "--model text .keras", ("--model", "{in}/text.keras",), USER, ("{in}/text.keras", NOT_KERAS)),
    Row("qat", "--model text .keras", ("--model", "{in}/text.keras", "--out", "q"), USER, ("{in}/text.keras", NOT_KERAS)),
    Row("benchmarks", "--trained folder with a text model.keras", ("--trained", "trained", "--out", "b"), USER,
        ("trained/model.keras", NOT_KERAS), {"trained": None, "trained/model.keras": "not a model\n"}),  # fmt: skip
    # -- config files whose sections are not mappings
    Row("train", "config `model: foo`", ("--config", "{in}/model_foo.yaml", "--out", "run"), USER,
        ("{in}/model_foo.yaml", "model", NOT_MAPPING)),  # fmt: skip
    Row("train", "config `export: 7`", ("--config", "{in}/export_7.yaml", "--out", "run"), USER,
        ("{in}/export_7.yaml", "export", NOT_MAPPING)),  # fmt: skip
    Row("train", "config `training:` empty + --resume", ("--config", "{in}/training_empty.yaml", "--resume"), USER,
        ("--resume", "runs/latest/config.yaml not found")),  # fmt: skip
    Row("to_tflite", "config `export: 7`", ("--model", "{in}/good.keras", "--config", "{in}/export_7.yaml", "--out", "m.tflite"),
        USER, ("{in}/export_7.yaml", "export", NOT_MAPPING)),  # fmt: skip
    Row("to_tflite", "config `model: foo`", ("--model", "{in}/good.keras", "--config", "{in}/model_foo.yaml", "--out", "m.tflite"),
        USER, ("{in}/model_foo.yaml", "model", NOT_MAPPING)),  # fmt: skip
    Row("to_tflite", "config is a YAML list", ("--model", "{in}/good.keras", "--config", "{in}/list.yaml", "--out", "m.tflite"),
        USER, ("{in}/list.yaml", "expected a mapping of sections, got list")),  # fmt: skip
    Row("evaluate", "config `data: foo`", ("--model", "{in}/good.keras", "--config", "{in}/data_foo.yaml"), USER,
        ("{in}/data_foo.yaml", "data", NOT_MAPPING)),  # fmt: skip
    Row("evaluate", "config `model: foo`", ("--model", "{in}/good.keras", "--config", "{in}/model_foo.yaml"), USER,
        ("{in}/model_foo.yaml", "model", NOT_MAPPING)),  # fmt: skip
    Row("qat", "config `qat: foo`", ("--model", "{in}/good.keras", "--config", "{in}/qat_foo.yaml", "--out", "q"), USER,
        ("{in}/qat_foo.yaml", "qat", NOT_MAPPING)),  # fmt: skip
    Row("qat", "config `data: 7`", ("--model", "{in}/good.keras", "--config", "{in}/data_7.yaml", "--out", "q"), USER,
        ("{in}/data_7.yaml", "data", NOT_MAPPING)),  # fmt: skip
    Row("benchmarks", "config `benchmark: 7`", ("--config", "{in}/benchmark_7.yaml", "--out", "b"), USER,
        ("{in}/benchmark_7.yaml", "benchmark", NOT_MAPPING)),  # fmt: skip
    # -- weights whose checkpoint index is not one
    Row("train", "--weights with a garbage .index", (*TINY_TRAIN, "--weights", "{in}/garbage.ckpt"), USER,
        ("--weights", "{in}/garbage.ckpt", "checkpoint")),  # fmt: skip
    Row("train", "--weights with an empty .index", (*TINY_TRAIN, "--weights", "{in}/empty.ckpt"), USER,
        ("--weights", "{in}/empty.ckpt", "checkpoint")),  # fmt: skip
    Row("train", "--weights checkpoint without its .data file", (*TINY_TRAIN, "--weights", "{in}/nodata/model.ckpt"), USER,
        ("{in}/nodata/model.ckpt", ".data")),  # fmt: skip
    # -- outputs that cannot be written: checked before any work
    Row("predict", "--out an existing directory", ("--model", "{in}/good.keras", *IMAGE, "--out", "taken"), USER,
        ("--out", "taken", A_DIRECTORY), {"taken": None}),  # fmt: skip
    Row("predict", "--out under a file", ("--model", "{in}/good.keras", *IMAGE, "--out", "afile/o.png"), USER,
        ("--out", "afile/o.png", UNDER_A_FILE), {"afile": "x"}),  # fmt: skip
    Row("to_tflite", "--out an existing directory", ("--model", "{in}/good.keras", "--out", "taken"), USER,
        ("--out", "taken", A_DIRECTORY), {"taken": None}),  # fmt: skip
    Row("to_tflite", "--out under a file (missing folder in a file)", ("--model", "{in}/good.keras", "--out", "afile/new/m.tflite"),
        USER, ("--out", "afile/new/m.tflite", UNDER_A_FILE), {"afile": "x"}),  # fmt: skip
    Row("to_tflite", "--json under a file", ("--model", "{in}/good.keras", "--out", "m.tflite", "--json", "afile/r.json"),
        USER, ("--json", "afile/r.json", UNDER_A_FILE), {"afile": "x"}),  # fmt: skip
    Row("evaluate", "--json under a file", ("--model", "{in}/good.keras", "--json", "afile/r.json"), USER,
        ("--json", "afile/r.json", UNDER_A_FILE), {"afile": "x"}),  # fmt: skip
    Row("train", "--out an existing file", (*TINY_TRAIN[:-2], "--out", "afile"), USER, ("--out", "afile", NOT_A_FOLDER), {"afile": "x"}),
    Row("qat", "--out an existing file", ("--model", "{in}/good.keras", "--out", "afile"), USER, ("--out", "afile", NOT_A_FOLDER),
        {"afile": "x"}),  # fmt: skip
    Row("benchmarks", "--out an existing file", ("--models", "mobilenetv2_ksac", "--precisions", "fp32", "--threads", "1",
                                                 "--input-size", "33", "--out", "afile"), USER, ("--out", "afile", NOT_A_FOLDER),
        {"afile": "x"}),  # fmt: skip
    Row("prepare_assets", "--assets an existing file", ("--model", "{in}/described.tflite", "--assets", "afile"), USER,
        ("afile", NOT_A_FOLDER), {"afile": "x"}),  # fmt: skip
    Row("make_golden", "--out an existing file", ("--model", "{in}/described.tflite", "--out", "afile"), USER,
        ("afile", NOT_A_FOLDER), {"afile": "x"}),  # fmt: skip
    Row("tiny_model", "--out under a file", ("--out", "afile/m.tflite", "--precision", "fp32"), USER,
        ("afile/m.tflite", UNDER_A_FILE), {"afile": "x"}),  # fmt: skip
    Row("android_bench", "--results a directory", ("--model", "{in}/described.tflite", "--benchmark-binary", "{in}/text.tflite",
                                                   "--results", "taken"), USER, ("--results", "taken", A_DIRECTORY),
        {"taken": None}),  # fmt: skip
    Row("android_bench", "--results not a list of rows", ("--model", "{in}/described.tflite", "--benchmark-binary",
                                                          "{in}/text.tflite", "--results", "rows.json"), USER,
        ("rows.json", "expected a list of rows"), {"rows.json": '{"not": "a list"}'}),  # fmt: skip
    # -- numbers and data that leave nothing to do
    Row("evaluate", "--limit 0", ("--model", "{in}/good.keras", "--limit", "0"), USER, ("--limit", "must be at least 1, got 0")),
    Row("evaluate", "--limit -3", ("--model", "{in}/good.keras", "--limit", "-3"), USER, ("--limit", "must be at least 1, got -3")),
    Row("evaluate", "empty dataset folder", ("--model", "{in}/good.keras", "--data", "folder:{in}/emptydir"), USER,
        ("{in}/emptydir", "images folder not found")),  # fmt: skip
    Row("zoo", "summary --input-size 0", ("summary", "mobilenetv2_ksac", "--input-size", "0"), USER, ("input", "got 0")),
    Row("tiny_model", "--input-size 0", ("--out", "m.tflite", "--input-size", "0"), USER, ("input", "got 0")),
    Row("gpu", "--inputs of the wrong shape", ("{in}/described.tflite", "--inputs", "{in}/wrong_shape.npy"), USER,
        ("--inputs {in}/wrong_shape.npy", "want [n, H, W, C]")),  # fmt: skip
    Row("gpu", "--images not a .npy", ("{in}/described.tflite", "--images", "{in}/text.tflite"), USER,
        ("--images {in}/text.tflite", "not a .npy array")),  # fmt: skip
    Row("gpu", "--images not uint8 RGB", ("{in}/described.tflite", "--images", "{in}/int_images.npy"), USER,
        ("--images {in}/int_images.npy", "want uint8 RGB images")),  # fmt: skip
    # -- datasets as DeepLab users hold them: its TFRecord shards, Cityscapes' tree (make_data_inputs)
    Row("train", "tfrecord: truncated shard", (*TINY_TRAIN, "--data", "tfrecord:{in}/truncated_shards"), USER,
        ("{in}/truncated_shards/train-00000-of-00001.tfrecord", "is truncated")),
    Row("evaluate", "tfrecord: label of another size", ("--model", "{in}/good.keras", "--data",
        "tfrecord:{in}/small_label_shards?dataset=pascal_voc_seg"), USER,
        ("{in}/small_label_shards/val-00000-of-00001.tfrecord", "small_label", "differs from image size")),
    Row("evaluate", "tfrecord: class id past the count", ("--model", "{in}/good.keras", "--data",
        "tfrecord:{in}/class_shards?dataset=pascal_voc_seg"), USER,
        ("{in}/class_shards/val-00000-of-00001.tfrecord", "class_30", "label 30 outside [0, 21)")),
    Row("train", "cityscapes: image without its label", (*TINY_TRAIN, "--data", "cityscapes:{in}/cityscapes_nolabel"), USER,
        ("{in}/cityscapes_nolabel/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", "no label")),
    # -- unknown names, missing files, a missing environment
    Row("train", "unknown model", ("--model", "resnet50_ksac", "--out", "run"), USER, ("resnet50_ksac", "invalid choice")),
    Row("to_tflite", "missing --model", ("--model", "{in}/missing.keras",), USER, ("{in}/missing.keras", "not found")),
    Row("arm", "no ARM64 environment", ("{in}/described.tflite",), USER, ("no emulated ARM64 environment", "make arm-env"),
        env={"KSAC_ARM_ENV": "{in}/emptydir"}),  # fmt: skip
    # -- good input, failed work: exit 1 (the run folder, which has no checkpoint yet, is removed)
    Row("train", "--lr 1e30: the loss diverges", (*TINY_TRAIN[:-4], "--steps", "3", "--lr", "1e30", "--out", "run"), FAILED,
        ("the loss is", "Lower the learning rate (--lr)")),  # fmt: skip
]


def _snapshot(folder: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under `folder` with (is a folder, size, modification time)."""
    out = {}
    for path in folder.rglob("*"):
        stat = path.lstat()
        out[str(path.relative_to(folder))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
    return out


@dataclass(frozen=True)
class Outcome:
    """What one row did: `problems` ("ok", else what went wrong), its exit code (None: timed out) and its
    error message (from its last `error:` line on)."""

    problems: str
    code: int | None
    message: str


def error_message(output: str) -> str:
    """A command's error message: from its last `error:` line (ours, or argparse's `PROG: error:`) to the end."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ") or ": error: " in line]
    return "\n".join(lines[starts[-1] :]).strip() if starts else ""


def run_row(row: Row, folder: Path, root: Path, inputs: Path) -> Outcome:
    """Runs one row in `folder` (made here) and checks it against the row."""
    folder.mkdir(parents=True)
    for name, text in row.setup.items():
        (folder / name).mkdir() if text is None else (folder / name).write_text(text)
    before = _snapshot(folder)
    args = [arg.replace("{in}", str(inputs)) for arg in row.args]
    command = COMMANDS[row.command]
    if command[0] != "-m":
        command = [str(root / command[0])]
    env = dict(os.environ, **{name: value.replace("{in}", str(inputs)) for name, value in row.env.items()})
    env.pop("TF_CONFIG", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs them
    if root != ROOT:  # another checkout (e.g. an older one, to see what a row did before a fix)
        env["PYTHONPATH"] = str(root)
    try:
        done = subprocess.run([sys.executable, *command, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return Outcome("timed out", None, "")
    output = done.stdout + done.stderr
    message = error_message(output)
    problems = []
    if done.returncode != row.code:
        problems.append(f"exit {done.returncode}, not {row.code}")
    if "Traceback" in output:
        last = [line for line in output.splitlines() if line.strip()][-1]
        problems.append(f"traceback: {last[:120]}")
    else:
        missing = [text for text in row.says if text.replace("{in}", str(inputs)) not in message]
        if missing:
            shown = message or ([line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"])[0]
            problems.append(f"message does not say {missing!r}: {shown[:200]}")
    noise = [line for line in output.splitlines() if STARTUP_LINE.fullmatch(line)]
    if noise:  # TensorFlow's C++ start-up lines bury the one error line (zoo/quiet_startup.py)
        problems.append(f"TensorFlow start-up lines: {noise[0][:80]}")
    left = sorted(set(_snapshot(folder).items()) - set(before.items()))
    if left:
        problems.append(f"left {', '.join(sorted({name for name, _ in left}))[:120]}")
    return Outcome("; ".join(problems) or "ok", done.returncode, message.replace(str(inputs), "{in}"))


def make_inputs(folder: Path, description: Any) -> Path:
    """The shared inputs: bad files of every kind, and the few good ones the rows need beside them
    (`description`: the `ModelDescription` the one-convolution model carries)."""
    import tf_keras as keras

    from convert.export import plain_converter
    from convert.tflite_file import add_metadata

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    (folder / "text.tflite").write_text("this is not a model\n")
    (folder / "empty.tflite").write_bytes(b"")
    (folder / "random.tflite").write_bytes(b"\x00" * 4 + b"ZZZZ" + rng.bytes(4088))
    (folder / "tfl3.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + rng.bytes(4088))
    (folder / "text.keras").write_text("this is not a model\n")
    (folder / "empty.keras").write_bytes(b"")
    (folder / "garbage.ckpt.index").write_bytes(rng.bytes(512))
    (folder / "empty.ckpt.index").write_bytes(b"")
    (folder / "emptydir").mkdir()
    sections = {"model_foo": "model: foo\n", "export_7": "export: 7\n", "list": "- model\n- data\n", "data_foo": "data: foo\n",
                "qat_foo": "qat: foo\n", "data_7": "data: 7\n", "benchmark_7": "benchmark: 7\n", "training_empty": "training:\n"}  # fmt: skip
    for name, text in sections.items():
        (folder / f"{name}.yaml").write_text(text)
    np.save(folder / "wrong_shape.npy", np.zeros((2, 3), np.float32))
    np.save(folder / "int_images.npy", np.zeros((1, 9, 9, 3), np.int32))
    import cv2

    cv2.imwrite(str(folder / "image.png"), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    # A real one-convolution model (9x9x3 -> 2 classes) with our description, and a copy cut in half.
    inputs = keras.Input((9, 9, 3), batch_size=1)
    plain = plain_converter(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))).convert()
    described = add_metadata(plain, description)
    (folder / "described.tflite").write_bytes(described)
    (folder / "truncated.tflite").write_bytes(described[: len(described) // 2])
    from zoo import build_model
    from zoo.tf1_checkpoint import export_tf1_checkpoint

    model = build_model("mobilenetv2_ksac", input_size=65, width=0.35, head_filters=16)
    model.save(str(folder / "good.keras"))
    export_tf1_checkpoint(model, str(folder / "nodata" / "model.ckpt"))  # a real checkpoint, its .data file then lost
    for data in (folder / "nodata").glob("model.ckpt.data-*"):
        data.unlink()
    make_data_inputs(folder)
    return folder


def make_data_inputs(folder: Path) -> None:
    """Broken DeepLab shards (DeepLab's feature keys) and a Cityscapes tree missing a label, for the `--data` rows."""
    import cv2
    import tensorflow as tf

    def example(image_h: int, label_h: int, label_value: int, name: str) -> bytes:
        encoded = cv2.imencode(".jpg", np.full((image_h, 48, 3), 128, np.uint8))[1].tobytes()
        label = cv2.imencode(".png", np.full((label_h, 48), label_value, np.uint8))[1].tobytes()
        feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value])) for key, value in (
            ("image/encoded", encoded), ("image/format", b"jpeg"), ("image/filename", name.encode()),
            ("image/segmentation/class/encoded", label), ("image/segmentation/class/format", b"png"))}  # fmt: skip
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    def shards(name: str, split: str, records: list[bytes]) -> Path:
        (folder / name).mkdir()
        path = folder / name / f"{split}-00000-of-00001.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record)
        return path

    truncated = shards("truncated_shards", "train", [example(40, 40, 1, "good_0"), example(40, 40, 2, "good_1")])
    truncated.write_bytes(truncated.read_bytes()[:-10])
    (folder / "truncated_shards" / "labels.txt").write_text("background\nthing\nstuff\n")
    shards("small_label_shards", "val", [example(40, 20, 1, "small_label")])
    shards("class_shards", "val", [example(40, 40, 30, "class_30")])
    city = folder / "cityscapes_nolabel"
    (city / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    (city / "gtFine" / "train" / "aachen").mkdir(parents=True)
    cv2.imwrite(str(city / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"),
                np.zeros((32, 64, 3), np.uint8))


def run_table(root: Path, inputs: Path, work: Path, workers: int = 2) -> list[tuple[Row, Outcome]]:
    """Every row of TABLE against the checkout at `root` (another one shows what the rows did before a
    fix); (row, outcome) in table order."""
    with ThreadPoolExecutor(workers) as pool:
        outcomes = pool.map(lambda i: run_row(TABLE[i], work / f"{TABLE[i].command}-{i}", root, inputs), range(len(TABLE)))
        return list(zip(TABLE, outcomes))


def markdown_table(results: list[tuple[Row, Outcome]]) -> str:
    """The rows as they ran: command | case | exit code | the first line of the message (| where not ok: what went wrong)."""
    lines = ["| command | case | exit code | message excerpt |", "|---|---|---|---|"]
    for row, outcome in results:
        first = outcome.message.splitlines()[0] if outcome.message else ""
        excerpt = ((first[:137] + "...") if len(first) > 140 else first).replace("|", "\\|")
        wrong = "" if outcome.problems == "ok" else f" **{outcome.problems[:200]}**"
        lines.append(f"| {row.command} | {row.case} | {outcome.code} | `{excerpt}`{wrong} |".replace("``", ""))
    return "\n".join(lines)


@pytest.mark.slow
def test_every_command_refuses_bad_input_with_one_clear_error(tmp_path, make_description):
    inputs = make_inputs(tmp_path / "inputs", make_description(name="one_conv"))
    shared = _snapshot(inputs)
    results = run_table(ROOT, inputs, tmp_path / "rows")
    print(f"\n{markdown_table(results)}")  # (pytest -s shows it)
    failed = [f"{row.command}: {row.case}: {outcome.problems}" for row, outcome in results if outcome.problems != "ok"]
    assert not failed, "\n".join(failed)
    assert _snapshot(inputs) == shared, "a row wrote beside its inputs"


def test_damaged_tflite_files_give_one_value_error_naming_them(one_conv_tflite, make_description, tmp_path):
    """The one reader of .tflite files: every cut and many garbled copies of a real model either read
    or raise ValueError naming the file, never a struct.error/TypeError/IndexError from deep inside."""
    from convert.summary import summarize
    from convert.tflite_file import add_metadata
    from inference.description import read_description, read_metadata

    good = add_metadata(one_conv_tflite, make_description(name="one_conv"))
    rng = np.random.default_rng(0)
    damaged = [good[:n] for n in range(8, len(good), 7)]
    for _ in range(200):
        flipped = bytearray(good)
        for at in rng.integers(8, len(good), 4):
            flipped[at] = int(rng.integers(0, 256))
        damaged.append(bytes(flipped))
    path = tmp_path / "damaged.tflite"
    for data in damaged:
        path.write_bytes(data)
        for read in (read_metadata, read_description, summarize):
            try:
                read(str(path))
            except ValueError as error:
                assert str(path) in str(error)
