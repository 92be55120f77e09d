"""Every command refuses bad input the same way (issue 23): a non-zero exit, a message that names the
file or value, no Python traceback, and nothing written (no output file, no run folder).

One table drives every command as a user runs it (a subprocess, in a folder of its own), with what
users actually get wrong: a file that is not what the flag wants (text, empty, random bytes, a
truncated or garbled model), a config file whose sections are not mappings, an output path that is a
directory or lies under a file, a limit of 0, an empty dataset, an unknown name, a missing file.
The rows run two at a time (each starts Python, most import TensorFlow: about 3.5 s of CPU a row), so
the table keeps to one row per mistake and command; rows that only guard what already worked are few.
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
    "zoo": ["-m", "zoo"],
    "prepare_assets": ["android_demo/prepare_assets.py"],
    "make_golden": ["-m", "android_demo.make_golden"],
    "tiny_model": ["android_demo/tiny_model.py"],
}
# The smallest training run (what the rows that get past the config would train).
TINY_TRAIN = ("--model", "mobilenetv2_ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "65",
              "--batch-size", "2", "--steps", "1", "--out", "run")  # fmt: skip
IMAGE = ("--image", "{in}/image.png")


@dataclass(frozen=True)
class Row:
    """One bad input: `args` ({in}: the shared inputs folder) run in a fresh folder holding `setup`.

    `names` is the text the message must contain (the file or value the user got wrong); `setup`
    maps a name in the row's folder to a file's text, or to None for an (empty) folder.
    """

    command: str
    case: str
    args: tuple[str, ...]
    names: str
    setup: dict[str, str | None] = field(default_factory=dict)


TABLE = [
    # -- a .tflite that is not one
    Row("inspect", "text file as .tflite", ("{in}/text.tflite",), "{in}/text.tflite"),
    Row("inspect", "empty .tflite", ("{in}/empty.tflite",), "{in}/empty.tflite"),
    Row("inspect", "random bytes as .tflite", ("{in}/random.tflite",), "{in}/random.tflite"),
    Row("inspect", "TFL3 + garbage", ("{in}/tfl3.tflite",), "{in}/tfl3.tflite"),
    Row("inspect", "truncated .tflite", ("{in}/truncated.tflite",), "{in}/truncated.tflite"),
    Row("predict", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite", *IMAGE, "--out", "o.png"), "{in}/tfl3.tflite"),
    Row("predict", "--model truncated .tflite", ("--model", "{in}/truncated.tflite", *IMAGE, "--out", "o.png"), "{in}/truncated.tflite"),
    Row("evaluate", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite",), "{in}/tfl3.tflite"),
    Row("gpu", "text file as model", ("{in}/text.tflite",), "{in}/text.tflite"),
    Row("gpu", "TFL3 + garbage", ("{in}/tfl3.tflite",), "{in}/tfl3.tflite"),
    Row("prepare_assets", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite", "--assets", "assets"), "{in}/tfl3.tflite"),
    Row("make_golden", "--model truncated .tflite", ("--model", "{in}/truncated.tflite", "--out", "golden"), "{in}/truncated.tflite"),
    Row("android_bench", "--model TFL3 + garbage", ("--model", "{in}/tfl3.tflite", "--benchmark-binary", "{in}/text.tflite",
                                                    "--results", "rows.json"), "{in}/tfl3.tflite"),  # fmt: skip
    # -- a .keras that is not one
    Row("predict", "--model text .keras", ("--model", "{in}/text.keras", *IMAGE, "--out", "o.png"), "{in}/text.keras"),
    Row("predict", "--model empty .keras", ("--model", "{in}/empty.keras", *IMAGE, "--out", "o.png"), "{in}/empty.keras"),
    Row("to_tflite", "--model text .keras", ("--model", "{in}/text.keras", "--out", "m.tflite"), "{in}/text.keras"),
    Row("to_tflite", "--model empty .keras", ("--model", "{in}/empty.keras", "--out", "m.tflite"), "{in}/empty.keras"),
    Row("evaluate", "--model text .keras", ("--model", "{in}/text.keras",), "{in}/text.keras"),
    Row("benchmarks", "--trained folder with a text model.keras", ("--trained", "trained", "--out", "b"), "trained",
        {"trained": None, "trained/model.keras": "not a model\n"}),
    # -- config files whose sections are not mappings
    Row("train", "config `model: foo`", ("--config", "{in}/model_foo.yaml", "--out", "run"), "{in}/model_foo.yaml"),
    Row("train", "config `export: 7`", ("--config", "{in}/export_7.yaml", "--out", "run"), "{in}/export_7.yaml"),
    Row("train", "config `training:` empty + --resume", ("--config", "{in}/training_empty.yaml", "--resume"), "runs/latest"),
    Row("to_tflite", "config `export: 7`", ("--model", "{in}/good.keras", "--config", "{in}/export_7.yaml", "--out", "m.tflite"), "{in}/export_7.yaml"),
    Row("to_tflite", "config `model: foo`", ("--model", "{in}/good.keras", "--config", "{in}/model_foo.yaml", "--out", "m.tflite"), "{in}/model_foo.yaml"),
    Row("to_tflite", "config is a YAML list", ("--model", "{in}/good.keras", "--config", "{in}/list.yaml", "--out", "m.tflite"), "{in}/list.yaml"),
    Row("evaluate", "config `data: foo`", ("--model", "{in}/good.keras", "--config", "{in}/data_foo.yaml"), "{in}/data_foo.yaml"),
    Row("evaluate", "config `model: foo`", ("--model", "{in}/good.keras", "--config", "{in}/model_foo.yaml"), "{in}/model_foo.yaml"),
    Row("qat", "config `qat: foo`", ("--model", "{in}/good.keras", "--config", "{in}/qat_foo.yaml", "--out", "q"), "{in}/qat_foo.yaml"),
    Row("qat", "config `data: 7`", ("--model", "{in}/good.keras", "--config", "{in}/data_7.yaml", "--out", "q"), "{in}/data_7.yaml"),
    Row("benchmarks", "config `benchmark: 7`", ("--config", "{in}/benchmark_7.yaml", "--out", "b"), "{in}/benchmark_7.yaml"),
    # -- weights whose checkpoint index is not one
    Row("train", "--weights with a garbage .index", (*TINY_TRAIN, "--weights", "{in}/garbage.ckpt"), "{in}/garbage.ckpt"),
    Row("train", "--weights with an empty .index", (*TINY_TRAIN, "--weights", "{in}/empty.ckpt"), "{in}/empty.ckpt"),
    Row("train", "--weights checkpoint without its .data file", (*TINY_TRAIN, "--weights", "{in}/nodata/model.ckpt"),
        "{in}/nodata/model.ckpt"),  # fmt: skip
    # -- outputs that cannot be written: checked before any work
    Row("predict", "--out an existing directory", ("--model", "{in}/good.keras", *IMAGE, "--out", "taken"), "taken", {"taken": None}),
    Row("predict", "--out under a file", ("--model", "{in}/good.keras", *IMAGE, "--out", "afile/o.png"), "afile", {"afile": "x"}),
    Row("to_tflite", "--out an existing directory", ("--model", "{in}/good.keras", "--out", "taken"), "taken", {"taken": None}),
    Row("to_tflite", "--out under a file (missing folder in a file)", ("--model", "{in}/good.keras", "--out", "afile/new/m.tflite"),
        "afile", {"afile": "x"}),  # fmt: skip
    Row("to_tflite", "--json under a file", ("--model", "{in}/good.keras", "--out", "m.tflite", "--json", "afile/r.json"),
        "afile", {"afile": "x"}),  # fmt: skip
    Row("train", "--out an existing file", (*TINY_TRAIN[:-2], "--out", "afile"), "afile", {"afile": "x"}),
    Row("qat", "--out an existing file", ("--model", "{in}/good.keras", "--out", "afile"), "afile", {"afile": "x"}),
    Row("benchmarks", "--out an existing file", ("--models", "mobilenetv2_ksac", "--precisions", "fp32", "--threads", "1",
                                                 "--input-size", "33", "--out", "afile"), "afile", {"afile": "x"}),  # fmt: skip
    Row("prepare_assets", "--assets an existing file", ("--model", "{in}/described.tflite", "--assets", "afile"), "afile", {"afile": "x"}),
    Row("make_golden", "--out an existing file", ("--model", "{in}/described.tflite", "--out", "afile"), "afile", {"afile": "x"}),
    Row("tiny_model", "--out under a file", ("--out", "afile/m.tflite", "--precision", "fp32"), "afile", {"afile": "x"}),
    Row("android_bench", "--results a directory", ("--model", "{in}/described.tflite", "--benchmark-binary", "{in}/text.tflite",
                                                   "--results", "taken"), "taken", {"taken": None}),  # fmt: skip
    Row("android_bench", "--results not a list of rows", ("--model", "{in}/described.tflite", "--benchmark-binary",
                                                          "{in}/text.tflite", "--results", "rows.json"), "rows.json",
        {"rows.json": '{"not": "a list"}'}),  # fmt: skip
    # -- numbers and data that leave nothing to do
    Row("evaluate", "--limit 0", ("--model", "{in}/good.keras", "--limit", "0"), "--limit"),
    Row("evaluate", "--limit -3", ("--model", "{in}/good.keras", "--limit", "-3"), "-3"),
    Row("evaluate", "empty dataset folder", ("--model", "{in}/good.keras", "--data", "folder:{in}/emptydir"), "{in}/emptydir"),
    Row("zoo", "summary --input-size 0", ("summary", "mobilenetv2_ksac", "--input-size", "0"), "got 0"),
    Row("tiny_model", "--input-size 0", ("--out", "m.tflite", "--input-size", "0"), "got 0"),
    Row("gpu", "--images of the wrong shape", ("{in}/described.tflite", "--images", "{in}/wrong_shape.npy"), "{in}/wrong_shape.npy"),
    Row("gpu", "--images not a .npy", ("{in}/described.tflite", "--images", "{in}/text.tflite"), "{in}/text.tflite"),
    # -- unknown names, missing files
    Row("train", "unknown model", ("--model", "resnet50_ksac", "--out", "run"), "resnet50_ksac"),
    Row("to_tflite", "missing --model", ("--model", "{in}/missing.keras",), "{in}/missing.keras"),
]


def _snapshot(folder: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under `folder` with (is a folder, size, modification time)."""
    out = {}
    for path in folder.rglob("*"):
        stat = path.lstat()
        out[str(path.relative_to(folder))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
    return out


def run_row(row: Row, folder: Path, root: Path, inputs: Path) -> str:
    """Runs one row in `folder` (made here); returns "ok" or what went wrong."""
    folder.mkdir(parents=True)
    for name, text in row.setup.items():
        (folder / name).mkdir() if text is None else (folder / name).write_text(text)
    before = _snapshot(folder)
    args = [arg.replace("{in}", str(inputs)) for arg in row.args]
    command = COMMANDS[row.command]
    if command[0] != "-m":
        command = [str(root / command[0])]
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs them
    if root != ROOT:  # another checkout (e.g. an older one, to see what a row did before a fix)
        env["PYTHONPATH"] = str(root)
    try:
        done = subprocess.run([sys.executable, *command, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timed out"
    output = done.stdout + done.stderr
    problems = []
    if done.returncode == 0:
        problems.append("exit 0")
    if "Traceback" in output:
        last = [line for line in output.splitlines() if line.strip()][-1]
        problems.append(f"traceback: {last[:120]}")
    elif row.names.replace("{in}", str(inputs)) not in output:
        tail = [line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"]
        problems.append(f"message does not name {row.names!r}: {tail[0][:120]}")
    noise = [line for line in output.splitlines() if STARTUP_LINE.fullmatch(line)]
    if noise:  # TensorFlow's C++ start-up lines bury the one error line (zoo/quiet_startup.py)
        problems.append(f"TensorFlow start-up lines: {noise[0][:80]}")
    left = sorted(set(_snapshot(folder).items()) - set(before.items()))
    if left:
        problems.append(f"left {', '.join(sorted({name for name, _ in left}))[:120]}")
    return "; ".join(problems) or "ok"


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
    return folder


def run_table(root: Path, inputs: Path, work: Path, workers: int = 2) -> list[tuple[Row, str]]:
    """Every row of TABLE against the checkout at `root` (another one shows what the rows did before a
    fix); (row, outcome) in table order."""
    with ThreadPoolExecutor(workers) as pool:
        outcomes = pool.map(lambda i: run_row(TABLE[i], work / f"{TABLE[i].command}-{i}", root, inputs), range(len(TABLE)))
        return list(zip(TABLE, outcomes))


@pytest.mark.slow
def test_every_command_refuses_bad_input_with_one_clear_error(tmp_path, make_description):
    inputs = make_inputs(tmp_path / "inputs", make_description(name="one_conv"))
    shared = _snapshot(inputs)
    results = run_table(ROOT, inputs, tmp_path / "rows")
    table = "\n".join(f"{row.command:<15} {row.case:<48} {outcome}" for row, outcome in results)
    print(f"\n{table}")
    failed = [f"{row.command}: {row.case}: {outcome}" for row, outcome in results if outcome != "ok"]
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
