"""Finding exported `.tflite` files and reading their embedded description, with clear errors."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = REPO_ROOT / "runs"


def newest_export(pattern: str = "*int8*.tflite", runs_dir: str | os.PathLike[str] = DEFAULT_RUNS) -> Path:
    """The newest (by modification time) `runs/**/<pattern>` file; FileNotFoundError if there is none."""
    found = [Path(p) for p in glob.glob(os.path.join(os.fspath(runs_dir), "**", pattern), recursive=True)]
    found = [p for p in found if p.is_file()]
    if not found:
        raise FileNotFoundError(
            f"no exported model matching {pattern!r} under {runs_dir}; export one with convert/to_tflite.py "
            "(e.g. runs/latest/model_int8.tflite) or pass --model FILE.tflite"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def parser_with_model_flag(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the `--model FILE.tflite` flag both Android scripts take."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        metavar="FILE.tflite",
        help="exported model with embedded metadata (default: the newest runs/**/*int8*.tflite by modification time)",
    )
    return parser


def resolve_model(model: str | None) -> Path:
    """`model` as an existing file, or the newest int8 export when `model` is None."""
    if model is None:
        return newest_export()
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path


def read_description(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The description embedded in a `.tflite` file; ValueError naming the file if it has none or is no TFLite file."""
    from inference.description import read_metadata  # no TensorFlow needed to read it

    description = read_metadata(os.fspath(path))  # its errors name the file
    for key in ("input_size", "normalization"):
        if key not in description:
            raise ValueError(f"{path}: the embedded metadata has no {key!r}; re-export the model with convert/to_tflite.py")
    if "num_classes" not in description and "label_names" not in description:
        raise ValueError(f"{path}: the embedded metadata has neither 'num_classes' nor 'label_names'")
    return description


def input_hw(description: dict[str, Any]) -> tuple[int, int]:
    """(height, width) from a description's `input_size` (a list of two, or one side)."""
    size = description["input_size"]
    if isinstance(size, int):
        return size, size
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"input_size must be [height, width] or an int, got {size!r}")
    return int(size[0]), int(size[1])
