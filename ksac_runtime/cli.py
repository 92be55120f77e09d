"""What every command line shares: its exit codes and the `--json [FILE]` flag (docs/cli.md).

Exit codes: 0 done; `USER_ERROR` (2, as argparse exits for a usage error) when the user's input or
environment is wrong (a missing or unreadable file, a file that is not a model or not an image, a bad
config section, an unknown name, an unwritable output, a bad flag value, no ARM64 environment);
`WORK_FAILED` (1) when the work itself failed (a non-finite loss, a parity or agreement check that
fails, a crash of the runtime or of a worker). Either way one `error:` line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import traceback
from typing import Any, Callable, Iterator, NoReturn, TextIO

USER_ERROR = 2
WORK_FAILED = 1
# `--json` with no FILE (or `--json -`): the JSON goes to stdout, instead of the table.
STDOUT = "-"


class UserError(ValueError):
    """The user's input or environment is wrong (exit `USER_ERROR`); the message names the value or file."""


def exit_code(error: BaseException) -> int:
    """The exit code of a command stopped by `error`.

    `USER_ERROR` for what the user can put right: `UserError` and every other ValueError (the
    project's ConfigError, DatasetError, InvalidModel, QATError, a refused output path are all
    ValueErrors) and OSError (a file that is missing, unreadable or cannot be written); `WORK_FAILED`
    for anything else (RuntimeErrors such as NonFiniteLoss, WorkerLost, ExportError, a child that crashed).
    """
    return USER_ERROR if isinstance(error, (ValueError, OSError)) else WORK_FAILED


def fail(error: BaseException | str, code: int | None = None) -> int:
    """Prints `error: MESSAGE` on stderr; returns the exit code: `code`, else `exit_code(error)`."""
    print(f"error: {error}", file=sys.stderr)
    if code is None:
        code = exit_code(error) if isinstance(error, BaseException) else USER_ERROR
    return code


def add_json_flag(parser: argparse.ArgumentParser, what: str, *, instead: str | None = "the table") -> None:
    """`--json [FILE]`: `what` (e.g. "the report") as JSON to FILE; with no FILE, or `-`, on stdout instead
    of `instead` (what the command prints otherwise; None: it prints JSON anyway)."""
    also = f", instead of {instead}" if instead else ""
    parser.add_argument("--json", nargs="?", const=STDOUT, metavar="FILE",
                        help=f"also write {what} as JSON to FILE; with no FILE (or -): print the JSON on stdout{also}")  # fmt: skip


def json_to_stdout(flag: str | None) -> bool:
    """Whether `--json` asks for the JSON on stdout (no FILE, or `-`)."""
    return flag == STDOUT


def check_output_flag(flag: str, path: str | None, *, folder: bool = False) -> None:
    """Refuses, before any work, an output `path` given with `flag` (e.g. "--out") that cannot be written:
    UserError naming the flag and the path (see `ksac_runtime.files.check_output_path`); None: nothing to check."""
    if path is None:
        return
    from ksac_runtime.files import check_output_path

    try:
        check_output_path(path, folder=folder)
    except ValueError as error:
        raise UserError(f"{flag}: {error}") from None


def check_json_path(flag: str | None) -> None:
    """Refuses a `--json FILE` that cannot be written, before any work (UserError naming --json and FILE)."""
    check_output_flag("--json", None if flag == STDOUT else flag)


def write_json(flag: str | None, obj: Any, stdout: TextIO | None = None) -> None:
    """Writes `obj` where `--json` says: FILE (atomically), or `stdout` (default sys.stdout) for `-`; nothing for None."""
    if flag is None:
        return
    if flag == STDOUT:
        print(json.dumps(obj, indent=2), file=stdout or sys.stdout, flush=True)
        return
    from ksac_runtime.files import atomic_write_json

    atomic_write_json(flag, obj)


@contextlib.contextmanager
def stdout_kept_for_json(flag: str | None) -> Iterator[TextIO]:
    """Inside the block, with `--json` on stdout, what the command prints goes to stderr, so that stdout
    holds the JSON alone; yields the real stdout (where `write_json` writes it)."""
    real = sys.stdout
    if flag != STDOUT:
        yield real
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield real


def exit_process(main: Callable[[], int]) -> NoReturn:
    """Runs a command's `main` and ends the process with its code, whatever thread failed.

    A training run that fails inside a distribution strategy's replica thread (or in any thread
    TensorFlow started) can leave a non-daemon thread waiting for its peers forever: the interpreter
    would then print the error and hang at exit, joining it. So after a failure (or an exception that
    escaped `main`, printed with its traceback as Python would) with such a thread still alive, the
    process ends at once with `os._exit`, after flushing what it printed.
    """
    try:
        code = main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else WORK_FAILED)
    except BaseException:  # noqa: BLE001 - printed as Python would, then the exit below
        traceback.print_exc()
        code = WORK_FAILED
    alive = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.main_thread()]
    if code and alive:
        print(f"exiting with {len(alive)} thread(s) still running ({', '.join(alive[:3])})", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
