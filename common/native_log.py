"""What native libraries (TensorFlow, LiteRT) write to file descriptor 2: captured, filtered, passed on.

Their C++ logs bypass Python's `sys.stderr` and, for TensorFlow's start-up lines and LiteRT's
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", ignore every log-level setting. The one
way to keep such lines out of a command's output, or to read what an accelerator said while it
loaded, is to point file descriptor 2 at a file for the length of the call: `native_stderr`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator


class Captured:
    """What was written to file descriptor 2 inside a `native_stderr` block (set when the block ends)."""

    text = ""


@contextlib.contextmanager
def native_stderr(drop: re.Pattern[str] | None = None) -> Iterator[Captured]:
    """Captures file descriptor 2 inside the block; afterwards writes it back to stderr, less the lines
    that `drop` matches in full, and leaves the whole text on the yielded object."""
    captured = Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
            lines = captured.text.splitlines(keepends=True)
            kept = "".join(line for line in lines if not (drop and drop.fullmatch(line.rstrip("\r\n"))))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
