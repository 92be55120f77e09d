"""Finding exported `.tflite` files, with clear errors (their description: `inference.description.read_description`)."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

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
