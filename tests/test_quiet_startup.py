"""Commands print no TensorFlow C++ start-up lines (zoo/quiet_startup.py), and nothing else is lost:
where an NVIDIA driver is present its CUDA lines pass through, and training names its devices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.native_log import native_stderr
from zoo.quiet_startup import STARTUP_LINE, nvidia_driver_present, startup_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEN = [  # as TensorFlow 2.21 printed them on a CPU-only machine
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795981787.380862   27419 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.",
    "I0000 00:00:1795981787.381178   27419 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1795981790.701236   27419 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
# A driver that does not match its libcuda, in the same format (the error's name and text are CUDA's).
MISMATCH = ("E0000 00:00:1795981790.701236   27419 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
            "Failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver / cuda driver combination")  # fmt: skip


def test_only_the_start_up_lines_are_dropped(capfd):
    with native_stderr(drop=STARTUP_LINE) as captured:
        os.write(2, ("\n".join(SEEN) + "\nF0000 00:00:1.0   1 op_kernel.cc:9] a real failure\nTraceback: ours\n").encode())
        print("from Python", file=sys.stderr)
    err = capfd.readouterr().err
    # (sorted: under pytest's capture, Python's sys.stderr bypasses file descriptor 2)
    assert sorted(err.splitlines()) == ["F0000 00:00:1.0   1 op_kernel.cc:9] a real failure", "Traceback: ours", "from Python"]
    assert all(STARTUP_LINE.fullmatch(line) for line in SEEN)
    assert "a real failure" in captured.text and SEEN[1] in captured.text  # the whole text stays readable


@pytest.mark.parametrize("driver", [False, True], ids=["no-driver", "driver"])
def test_cuda_lines_are_dropped_only_without_an_nvidia_driver(capfd, driver):
    with native_stderr(drop=startup_lines(nvidia_driver=driver)):
        os.write(2, ("\n".join([*SEEN, MISMATCH]) + "\n").encode())
    err = capfd.readouterr().err.splitlines()
    # A real cuInit failure shows either way; the "no GPU here" lines only where a GPU could be.
    assert err == ([*SEEN[2:], MISMATCH] if driver else [MISMATCH])


def test_the_driver_probe(tmp_path):
    (tmp_path / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.00\n")
    assert nvidia_driver_present([str(tmp_path / "version")], library=None)
    assert not nvidia_driver_present([str(tmp_path / "missing")], library=None)
    assert not nvidia_driver_present([], library="libksac-no-such-library.so.1")


def test_with_a_driver_tensorflows_cuda_lines_pass_through():
    # zoo/quiet_startup.py by its path: `import zoo` would import TensorFlow (with the probe's answer) first.
    code = ("import importlib.util; spec = importlib.util.spec_from_file_location('quiet_startup', 'zoo/quiet_startup.py'); "
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); module.import_tensorflow(nvidia_driver=True)")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(env, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "InitializeLog" not in result.stderr and "port.cc" not in result.stderr, result.stderr[-2000:]
    if not nvidia_driver_present():  # what TensorFlow says here, where it finds no driver
        assert "cudart_stub.cc" in result.stderr and "failed call to cuInit" in result.stderr, result.stderr[-2000:]


def test_training_names_its_devices(tmp_path, capsys):
    import tensorflow as tf

    from training import train as train_cli

    tiny = ["--backbone", "mobilenetv2", "--head", "ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "33",
            "--batch-size", "1", "--steps", "1", "--out", str(tmp_path / "run")]  # fmt: skip
    assert train_cli.main(tiny) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("training on: ")]
    if not tf.config.list_physical_devices("GPU"):
        assert printed == ["training on: CPU:0 (1 replica)"]
        line = train_cli.devices_line(tf.distribute.get_strategy(), nvidia_driver=True)
        assert line.startswith("training on: CPU:0 (1 replica); an NVIDIA driver is present but TensorFlow sees no GPU")
    else:
        assert len(printed) == 1 and printed[0].startswith("training on: GPU:0 ("), printed


@pytest.mark.parametrize(
    "command",
    [["training/train.py", "--help"], ["convert/to_tflite.py", "--help"], ["-m", "zoo", "list"],
     ["-c", "import zoo, tensorflow as tf; print(tf.constant(1.0) + 1)"]],
    ids=["train-help", "to_tflite-help", "zoo-list", "first-op"],
)
def test_commands_print_no_tensorflow_start_up_lines(command):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=dict(env, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "InitializeLog" not in result.stderr and ".cc:" not in result.stderr, result.stderr[-2000:]


def test_loading_a_model_in_litert_prints_nothing(one_conv_tflite, tmp_path):
    path = tmp_path / "one_conv.tflite"
    path.write_bytes(one_conv_tflite)
    code = f"import numpy as np; from inference.runtime import TFLiteModel; m = TFLiteModel({str(path)!r}); m.run(np.zeros(m.inputs[0].shape, np.float32))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == "", result.stderr  # was LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
