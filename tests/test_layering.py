"""The packages import in one direction only (docs/architecture.md), lazily imported modules included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a package may import itself and those before it, never one after it.
LAYERS = (
    "ksac_runtime",  # what apps and boards install (its own wheel): LiteRT, preprocessing, description, CLI rules
    "common",  # atomic output files, native stderr, exit codes: the runtime's, at their earlier paths
    "inference",  # running .tflite files: the runtime's modules at their earlier paths, GPU report, ARM64 (no TensorFlow)
    "zoo",  # the models: backbones, heads, registry, weights import, saving
    "configs",  # typed experiment configs and the engine that resolves them
    "data",  # datasets, synthetic data, palette, evaluation transform and augmentation
    "evaluation",  # mIoU, predictors over .keras and .tflite, evaluate and predict commands
    "training",  # the training loop, its input pipeline, losses, run folders
    "convert",  # the KSAC-aware TFLite export
    "quantize",  # quantization-aware training, int8 comparison
    "benchmarks",
    "android_demo",
)


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


def _top_level_imports(path: Path) -> set[str]:
    """Every top-level module name `path` imports, at module level or inside functions (absolute imports)."""
    return {
        name.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
    }  # fmt: skip


# What the runtime's wheel requires (ksac-runtime/pyproject.toml), by the names they are imported as.
RUNTIME_REQUIREMENTS = {"numpy": "numpy", "ai-edge-litert": "ai_edge_litert", "flatbuffers": "flatbuffers",
                        "opencv-python-headless": "cv2"}  # fmt: skip


def test_the_runtime_imports_only_its_requirements():
    # ksac_runtime is installed alone on boards and in apps (docs/runtime.md): the standard library and the
    # wheel's four requirements, never TensorFlow nor a room of the toolkit.
    import sys
    import tomllib

    requirements = tomllib.loads((ROOT / "ksac-runtime" / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements}
    assert names == set(RUNTIME_REQUIREMENTS), names
    allowed = set(sys.stdlib_module_names) | set(RUNTIME_REQUIREMENTS.values()) | {"ksac_runtime"}
    wrong = {str(path.relative_to(ROOT)): sorted(_top_level_imports(path) - allowed)
             for path in sorted((ROOT / "ksac_runtime").rglob("*.py")) if _top_level_imports(path) - allowed}  # fmt: skip
    assert not wrong, f"ksac_runtime may import the standard library and {sorted(RUNTIME_REQUIREMENTS.values())}; found {wrong}"


def test_inference_imports_no_tensorflow():
    # It runs where TensorFlow is not installed (the GPU child process, the ARM64 worker).
    for path in sorted((ROOT / "inference").glob("*.py")):
        assert not {"tensorflow", "tf_keras"} & _top_level_imports(path), path.name


def test_no_module_shadows_the_standard_library():
    # `python PACKAGE/command.py` puts PACKAGE/ first on sys.path, where a file named like a standard
    # module (inspect.py, say) would replace it for TensorFlow and everyone else. convert/aliases/ holds
    # only `python -m convert.inspect` (reached through the package's __path__, see convert/__init__.py):
    # no command is run from that folder, so it is never put on sys.path.
    import sys

    shadows = [
        str(path.relative_to(ROOT))
        for package in LAYERS
        for path in sorted((ROOT / package).rglob("*"))
        if (path.suffix == ".py" or (path / "__init__.py").is_file()) and path.stem in sys.stdlib_module_names
        and path.parent != ROOT / "convert" / "aliases"
    ]
    assert not shadows, f"named like standard-library modules: {shadows}"


def test_no_code_edits_sys_path():
    # The packages come from the installed project (`pip install -e .`), never from a path edit.
    def uses_sys_path(path: Path) -> bool:
        return any(
            isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )  # fmt: skip

    edits = [
        str(path.relative_to(ROOT))
        for package in LAYERS + ("tests",)
        for path in sorted((ROOT / package).rglob("*.py"))
        if uses_sys_path(path)
    ]
    assert not edits, f"sys.path used in {edits}"
