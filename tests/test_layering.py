"""The packages import in one direction only (docs/architecture.md), lazily imported modules included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a package may import itself and those before it, never one after it.
LAYERS = ("inference", "zoo", "training", "convert", "quantize", "benchmarks", "android_demo")


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that `path` imports anywhere (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


@pytest.mark.parametrize("package", LAYERS)
def test_package_imports_only_lower_layers(package):
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed)
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_packages(path) - allowed
    }
    assert not wrong, f"{package} may import only {sorted(allowed)}; found {wrong}"


def test_the_runtime_and_preprocessing_import_no_tensorflow():
    # They run where TensorFlow is not installed (the GPU machine, an app's Python side).
    for module in ("runtime.py", "preprocess.py"):
        path = ROOT / "inference" / module
        if path.is_file():
            assert not {"tensorflow", "tf_keras"} & {
                name.split(".")[0]
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                             [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            }, module  # fmt: skip
