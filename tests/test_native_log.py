"""`ksac_runtime.native_log.native_stderr` (also `common.native_log`) passes lines on as they are written: progress shows while the block runs
(an int8 export's calibration), and the last lines of a process that dies inside the block are not lost."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time

import pytest

from common.native_log import native_stderr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARMLESS = re.compile(r"harmless .*")


def wait_for(capfd, text: str, seconds: float = 20.0) -> str:
    """What reached the captured stderr until `text` did (or `seconds` passed)."""
    seen = ""
    deadline = time.monotonic() + seconds
    while text not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
        seen += capfd.readouterr().err
    return seen


def test_a_line_passes_through_before_the_block_ends(capfd):
    with native_stderr(drop=HARMLESS) as captured:
        os.write(2, b"harmless chatter\nstep 1/2\n")
        seen_inside = wait_for(capfd, "step 1/2\n")
        os.write(2, b"step 2/2")  # an unfinished last line comes out too
    assert seen_inside == "step 1/2\n"
    assert capfd.readouterr().err == "step 2/2"
    assert captured.text == "harmless chatter\nstep 1/2\nstep 2/2"  # the whole text, dropped lines too


@pytest.mark.parametrize(
    "death, returncode",
    [("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL), ("os.abort()", -signal.SIGABRT), ("os._exit(3)", 3)],
    ids=["sigkill", "abort", "exit"],  # the out-of-memory killer, a failed CHECK, an exit that skips `finally`
)
def test_a_process_that_dies_inside_the_block_leaves_its_last_lines(death, returncode, tmp_path):
    code = ("import os, re, signal; from common.native_log import native_stderr\n"
            "with native_stderr(drop=re.compile(r'harmless .*')):\n"
            "    os.write(2, b'harmless chatter\\nthe reason it died\\n')\n"
            f"    {death}\n")  # fmt: skip
    no_core_file = lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # noqa: E731
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                            text=True, timeout=60, preexec_fn=no_core_file)  # fmt: skip
    assert result.returncode == returncode
    assert result.stderr.splitlines() == ["the reason it died"]


@pytest.mark.parametrize("why", ["live=False", "no Python can be started"])
def test_without_a_reader_process_the_kept_lines_come_out_at_the_end(capfd, monkeypatch, why):
    """Short blocks (a model's load in the runtime) and Pythons that cannot start another (an emulated ARM64
    one under qemu-user: ENOEXEC; a frozen application) capture into a file instead of a reader process."""
    import ksac_runtime.native_log as native_log

    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(args)
        if why == "no Python can be started":
            raise OSError(8, "Exec format error")
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(native_log.subprocess, "Popen", popen)
    with native_stderr(drop=HARMLESS, live=why != "live=False") as captured:
        os.write(2, b"harmless chatter\nkept line\n")
        assert capfd.readouterr().err == ""  # nothing passed on inside the block
    assert capfd.readouterr().err == "kept line\n"
    assert captured.text == "harmless chatter\nkept line\n"
    assert len(started) == (0 if why == "live=False" else 1)


@pytest.mark.slow
def test_calibration_progress_shows_while_the_converter_runs(capfd, make_tiny_export_model):
    from convert.export import export_tflite

    shown_in_time, outer = {}, []

    def log(message: str) -> None:
        step = re.fullmatch(r"calibrating (\d+)/3", message)
        if step and int(step.group(1)) > 1:  # inside converter.convert(): has the previous step's line come out?
            previous = f"calibrating {int(step.group(1)) - 1}/3\n"
            outer.append(wait_for(capfd, previous))
            shown_in_time[previous.strip()] = previous in outer[-1]
        os.write(2, f"{message}\n".encode())  # as to_tflite's log (sys.stderr; pytest moves it off fd 2)

    export_tflite(make_tiny_export_model(), "int8", calibration_steps=3, check_parity=False, log=log)
    assert shown_in_time == {"calibrating 1/3": True, "calibrating 2/3": True}
    outer.append(capfd.readouterr().err)
    assert "calibrating 3/3" in outer[-1] and "fully_quantize" not in "".join(outer)  # the quantizer's settings line is still dropped
