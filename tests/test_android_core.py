"""The Android demo's plain-Java core: compile it with the machine's JDK and run its JUnit 4 tests.

Runs android_demo/core/run_tests.sh (javac --release 8, JUnitCore) through conftest's `run_core_tests`
fixture. Skips, saying why, only where javac/java or the JUnit jar (Debian package junit4) is missing.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_java_core_compiles_and_passes(run_core_tests, tmp_path: Path) -> None:
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
