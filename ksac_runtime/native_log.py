"""What native libraries (TensorFlow, LiteRT) write to file descriptor 2: captured, filtered, passed on as it comes.

Their C++ logs bypass Python's `sys.stderr` and, for TensorFlow's start-up lines and LiteRT's
"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", ignore every log-level setting. The one
way to keep such lines out of a command's output, or to read what an accelerator said while it
loaded, is to point file descriptor 2 elsewhere for the length of the call: `native_stderr`.

It points it at a pipe read by a small child process, which passes each line on to the real
stderr as it arrives (less the dropped ones) and keeps the whole text. So progress printed
inside the block shows at once (an int8 conversion's calibration runs inside one), and when
the process dies inside the block (out of memory, a failed CHECK, SIGKILL) the lines that say
why are already out: the reader outlives it, drains the pipe and exits (a reader thread would
die with the process, and with it what it had not yet read).

Short blocks (loading a model in LiteRT) take `live=False`: the text goes to a temporary file and the
kept lines are passed on when the block ends, with no process. That is also what an application that
embeds the runtime gets where a child Python cannot be started (a frozen application; an emulated ARM64
Python under qemu-user).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from typing import Any, Iterator

# The reader, run as `python -I -S -c _READER [PATTERN FLAGS]` (a bare interpreter: a block costs about 17 ms):
# the whole text to its stdout, every line that PATTERN does not match in full to its stderr.
_READER = r"""
import os, re, signal, sys

signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; its last lines still come through
drop = re.compile(sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2 else None
alive = {1: True, 2: True}


def write(fd, data):
    while data and alive[fd]:
        try:
            data = data[os.write(fd, data):]
        except OSError:  # nobody reads it any more: keep draining the pipe, or the writer would block
            alive[fd] = False


def pass_on(line):
    if not (drop and drop.fullmatch(line.rstrip(b"\r\n").decode("utf-8", "replace"))):
        write(2, line)


rest = b""
while chunk := os.read(0, 1 << 16):
    write(1, chunk)
    *lines, rest = (rest + chunk).split(b"\n")
    for line in lines:
        pass_on(line + b"\n")
if rest:
    pass_on(rest)
"""
# How long the end of a block waits for the reader once the block's own end of the pipe is closed.
# It ends sooner unless a child process started inside the block still holds file descriptor 2.
_READER_EXIT_S = 10.0


class Captured:
    """What was written to file descriptor 2 inside a `native_stderr` block (set when the block ends)."""

    text = ""


def _start_reader(drop: re.Pattern[str] | None, sink: Any, stderr: int) -> tuple[subprocess.Popen[bytes], int] | None:
    """The reader process (its text to `sink`, the kept lines to `stderr`) and the write end of its pipe;
    None where no process can start (an emulated ARM64 Python under qemu-user without binfmt: ENOEXEC)."""
    read_end, write_end = os.pipe()
    try:
        pattern = [drop.pattern, str(drop.flags)] if drop is not None else []
        reader = subprocess.Popen([sys.executable, "-I", "-S", "-c", _READER, *pattern], stdin=read_end, stdout=sink, stderr=stderr)
    except OSError:
        os.close(write_end)
        return None
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return reader, write_end


def _pass_on(text: str, drop: re.Pattern[str] | None) -> None:
    """Writes the lines of `text` that `drop` does not match in full to file descriptor 2 (as the reader does)."""
    for line in text.splitlines(keepends=True):
        if not (drop and drop.fullmatch(line.rstrip("\r\n"))):
            data = line.encode("utf-8", "replace")
            while data:
                data = data[os.write(2, data):]


@contextlib.contextmanager
def native_stderr(drop: re.Pattern[str] | None = None, *, live: bool = True) -> Iterator[Captured]:
    """Captures file descriptor 2 inside the block, passing its lines on to stderr less those that `drop`
    matches in full; when the block ends the whole text is on the yielded object.

    Args:
        drop: the lines to keep off stderr (matched in full, without the line end).
        live: pass each line on as it is written, through a reader process: what long blocks need
            (progress shows; a process that dies inside leaves its last lines). False collects the text
            in a temporary file and passes the kept lines on when the block ends, with no process: for
            short blocks such as loading a model, and what an application embedding the runtime wants.
            A frozen application (whose `sys.executable` is not Python) and a Python that cannot start
            another (an emulated ARM64 one under qemu-user) get that too.
    """
    captured = Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            started = _start_reader(drop, sink, saved) if live and not getattr(sys, "frozen", False) else None
            reader, target = started if started is not None else (None, sink.fileno())
            os.dup2(target, 2)
            if reader is not None:
                os.close(target)
            try:
                yield captured
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                if reader is not None:
                    try:
                        reader.wait(_READER_EXIT_S)
                    except subprocess.TimeoutExpired:
                        pass  # it goes on passing that child's lines on until the child exits
                sink.seek(0)
                captured.text = sink.read().decode("utf-8", "replace")
                if reader is None:
                    _pass_on(captured.text, drop)
    finally:
        os.close(saved)
