"""The Android demo's plain-Java core: compile it with the machine's JDK and run its JUnit 4 tests.

Runs android_demo/core/run_tests.sh (javac --release 8, JUnitCore). Skips, saying why, only where
javac/java or the JUnit jar (Debian package junit4) is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_TESTS = ROOT / "android_demo" / "core" / "run_tests.sh"
JUNIT_JAR = Path(os.environ.get("JUNIT_JAR", "/usr/share/java/junit4.jar"))


def java_prerequisites() -> str | None:
    """Why the Java tests cannot run here, or None."""
    for tool in ("javac", "java", "bash"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (install a JDK)"
    if not JUNIT_JAR.is_file():
        return f"JUnit jar not found at {JUNIT_JAR} (apt-get install junit4, or set JUNIT_JAR)"
    return None


def run_core_tests(build_dir: Path, *classes: str, golden_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs run_tests.sh into `build_dir`; skips the calling test when Java or JUnit is missing."""
    reason = java_prerequisites()
    if reason is not None:
        print(f"SKIP Java core tests: {reason}")
        pytest.skip(reason)
    env = dict(os.environ, BUILD_DIR=str(build_dir), JUNIT_JAR=str(JUNIT_JAR))
    env.pop("GOLDEN_DIR", None)
    if golden_dir is not None:
        env["GOLDEN_DIR"] = str(golden_dir)
    return subprocess.run(["bash", str(RUN_TESTS), *classes], capture_output=True, text=True, env=env, timeout=300)


def test_java_core_compiles_and_passes(tmp_path: Path) -> None:
    proc = run_core_tests(tmp_path / "javac")
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    assert "OK (" in proc.stdout
    golden = ROOT / "android_demo" / "core" / "src" / "test" / "resources" / "golden" / "golden.json"
    if golden.exists():  # the committed golden folder must pass too
        assert "GOLDEN labels:" in proc.stdout and "fraction equal = 1.000000" in proc.stdout


def test_core_has_no_android_imports() -> None:
    sources = list((ROOT / "android_demo" / "core" / "src" / "main" / "java").rglob("*.java"))
    assert sources
    for path in sources:
        for line in path.read_text().splitlines():
            if line.startswith("import "):
                assert line.startswith(("import java.", "import dev.ksaczoo.core.")), f"{path.name}: {line}"
