"""Imports TensorFlow without its C++ start-up log lines.

TensorFlow 2.21 logs through absl before absl's logging is initialised, and such lines
ignore TF_CPP_MIN_LOG_LEVEL (abseil/abseil-cpp#1957): every process that imports it
prints "All log messages before absl::InitializeLog() ...", "oneDNN custom operations
are on", "Could not find cuda drivers" and, at the first device query on a machine
without a GPU, "E0000 ... failed call to cuInit: ... CUDA error", which a newcomer
reads as a failure. No TensorFlow or absl setting silences them, so `import_tensorflow`
captures file descriptor 2 while TensorFlow loads and lists its devices
(`common.native_log`), and passes every other line on to stderr: a real error
still shows.
The CUDA lines are dropped only on a machine without an NVIDIA driver, where they say
no more than "no GPU here". Where a driver is present the same lines may say why its GPU
is not used (e.g. `CUDA_ERROR_SYSTEM_DRIVER_MISMATCH`), and they pass through: otherwise
training would run on the CPU without a word.
`zoo/__init__.py` calls it before anything imports TensorFlow, so every command and
library user that goes through `zoo` gets it. TF_CPP_MIN_LOG_LEVEL=0 (a user asking
for TensorFlow's logs) keeps them.

This module must not import TensorFlow at module level.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from typing import Sequence

from common.native_log import native_stderr

_TF_LOG = r"[IWE]\d{4} [\d:.]+ +\d+ "  # absl's prefix: severity, date, time, thread

# The lines TensorFlow prints on every start, GPU or not (sources seen with TF 2.21).
_EVERY_START = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _TF_LOG + r"(port|cpu_feature_guard)\.cc:\d+\] .*",
    r"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.",  # cpu_feature_guard's 2nd line
)
# What its CUDA probing prints where it finds no driver: the exact messages, so that even a
# driver the probe missed cannot hide another error.
_NO_DRIVER = (
    _TF_LOG + r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
    _TF_LOG + r"cuda_platform\.cc:\d+\] failed call to cuInit: .*(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE\b.*)",
    _TF_LOG + r"cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register cu\w+ factory: Attempting to register factory "
    r"for plugin cu\w+ when one has already been registered",
)

# Where an NVIDIA driver shows itself: its kernel module, its device files; WSL has neither but its libcuda.
NVIDIA_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0")
NVIDIA_DRIVER_LIBRARY = "libcuda.so.1"  # the name TensorFlow loads


def nvidia_driver_present(files: Sequence[str] = NVIDIA_DRIVER_FILES, library: str | None = NVIDIA_DRIVER_LIBRARY) -> bool:
    """Whether this machine has an NVIDIA driver: one of `files` exists, or `library` loads (as TensorFlow would load it)."""
    if any(os.path.exists(path) for path in files):
        return True
    if library is None:
        return False
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def startup_lines(nvidia_driver: bool) -> re.Pattern[str]:
    """The start-up lines to drop (matched in full): TensorFlow's every-start lines, and its CUDA
    probing's "no GPU" lines only where there is no NVIDIA driver (`nvidia_driver` False)."""
    return re.compile("|".join(_EVERY_START if nvidia_driver else _EVERY_START + _NO_DRIVER))


# What a CPU-only machine drops: every line TensorFlow's start-up prints there.
STARTUP_LINE = startup_lines(nvidia_driver=False)


def import_tensorflow(nvidia_driver: bool | None = None) -> None:
    """Imports TensorFlow and queries its devices (where CUDA probing logs) without the start-up lines.

    `nvidia_driver`: whether the machine has an NVIDIA driver (None: `nvidia_driver_present()`).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own later INFO/WARNING lines
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    if nvidia_driver is None:
        nvidia_driver = nvidia_driver_present()
    with native_stderr(drop=startup_lines(nvidia_driver)):
        import tensorflow as tf

        # Lists devices without initialising the runtime: strategies and virtual devices can still be set up.
        tf.config.list_physical_devices()
