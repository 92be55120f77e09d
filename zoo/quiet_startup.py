"""Imports TensorFlow without its C++ start-up log lines.

TensorFlow 2.21 logs through absl before absl's logging is initialised, and such lines
ignore TF_CPP_MIN_LOG_LEVEL (abseil/abseil-cpp#1957): every process that imports it
prints "All log messages before absl::InitializeLog() ...", "oneDNN custom operations
are on", "Could not find cuda drivers" and, at the first device query on a machine
without a GPU, "E0000 ... failed call to cuInit: ... CUDA error", which a newcomer
reads as a failure. No TensorFlow or absl setting silences them, so `import_tensorflow`
captures file descriptor 2 while TensorFlow loads and lists its devices
(`common.native_log`), then writes every other line back to stderr: a real error
still shows.
`zoo/__init__.py` calls it before anything imports TensorFlow, so every command and
library user that goes through `zoo` gets it. TF_CPP_MIN_LOG_LEVEL=0 (a user asking
for TensorFlow's logs) keeps them.

This module must not import TensorFlow at module level.
"""

from __future__ import annotations

import os
import re
import sys

from common.native_log import native_stderr

# The lines TensorFlow prints on every start (sources seen with TF 2.21 on CPU-only machines).
STARTUP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ (port|cudart_stub|cuda_platform|cpu_feature_guard|cuda_dnn|cuda_fft|cuda_blas)\.cc:\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."  # cpu_feature_guard's 2nd line
)


def import_tensorflow() -> None:
    """Imports TensorFlow and queries its devices (where CUDA probing logs) without the start-up lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own later INFO/WARNING lines
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    with native_stderr(drop=STARTUP_LINE):
        import tensorflow as tf

        # Lists devices without initialising the runtime: strategies and virtual devices can still be set up.
        tf.config.list_physical_devices()
