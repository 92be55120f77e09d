"""common.cli.exit_process: a command that fails ends its process, whatever thread is still running."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A command whose failure leaves a non-daemon thread blocked forever (as a distribution strategy's replica
# thread waits for a peer that failed): without exit_process the interpreter hangs at exit, joining it.
PROGRAM = textwrap.dedent("""
    import sys, threading
    from common.cli import exit_process

    def main():
        threading.Thread(target=threading.Event().wait, name="replica_1", daemon=False).start()
        if sys.argv[1] == "raise":
            raise RuntimeError("the step failed in a replica")
        return int(sys.argv[1])

    exit_process(main)
""")


@pytest.mark.parametrize("how, code", [("1", 1), ("2", 2), ("raise", 1)])
def test_a_failing_command_exits_with_a_thread_still_waiting(how, code):
    proc = subprocess.run([sys.executable, "-c", PROGRAM, how], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert "exiting with 1 thread(s) still running (replica_1)" in proc.stderr
    if how == "raise":
        assert "RuntimeError: the step failed in a replica" in proc.stderr


def test_a_command_that_succeeds_exits_normally():
    program = "from common.cli import exit_process\nexit_process(lambda: 0)"
    proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
