"""`make web-test` (the web demo in headless Chromium): what it needs from the system."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_web_test_without_chromium_says_what_is_missing_and_installs_nothing(tmp_path: Path) -> None:
    """No Chromium: one message naming the path and how to install it, a non-zero exit, and no
    apt-get or sudo run (a test target must not install system packages; .ci/system-packages does)."""
    calls = tmp_path / "calls"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("apt-get", "apt", "sudo"):  # stand-ins that record a call and fail
        (fake_bin / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit 1\n')
        (fake_bin / tool).chmod(0o755)
    missing = tmp_path / "no" / "chromium"
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}")
    # -o: treat the virtualenv and npm stamps as up to date, so nothing is built either way.
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed",
                           "-o", "web_demo/node_modules/.installed", "web-test", f"CHROMIUM={missing}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert not calls.exists(), f"make web-test ran {calls.read_text()!r}"
    assert str(missing) in done.stderr and "apt-get install chromium" in done.stderr, done.stderr
    assert ".ci/system-packages" in done.stderr, done.stderr
