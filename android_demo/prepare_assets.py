#!/usr/bin/env python3
"""Copies an exported model into the Android app's assets, with its metadata beside it.

    python android_demo/prepare_assets.py --model runs/latest/model_int8.tflite

writes `android_demo/app/src/main/assets/model.tflite` and `model.json` (the description embedded
in the `.tflite` file: input size, normalisation, label names, output kind, precision). The app reads
`model.json` instead of hard-coding any of it. Both files are git-ignored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from android_demo.model_files import parser_with_model_flag, resolve_model
from common.files import atomic_write_bytes, atomic_write_text, check_output_path
from inference.description import ModelDescription, read_description

DEFAULT_ASSETS = Path(__file__).resolve().parent / "app" / "src" / "main" / "assets"


def prepare_assets(model: str | None, assets_dir: str | Path = DEFAULT_ASSETS) -> tuple[Path, Path]:
    """Copies `model` (default: newest int8 export) to `assets_dir/model.tflite` and writes `model.json`.

    Returns the two paths written. Raises FileNotFoundError for a missing file and ValueError for a
    file without the project's metadata.
    """
    check_output_path(str(assets_dir), folder=True)
    source = resolve_model(model)
    description = read_description(source)  # its errors name the file
    assets = Path(assets_dir)
    model_out, json_out = assets / "model.tflite", assets / "model.json"
    atomic_write_bytes(str(model_out), source.read_bytes())
    atomic_write_text(str(json_out), description.to_json(indent=2) + "\n")
    return model_out, json_out


def build_parser() -> argparse.ArgumentParser:
    parser = parser_with_model_flag(__doc__)
    parser.add_argument(
        "--assets",
        metavar="DIR",
        default=str(DEFAULT_ASSETS),
        help="the app's assets folder to write model.tflite and model.json into (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from common.cli import fail

    args = build_parser().parse_args(argv)
    try:
        model_out, json_out = prepare_assets(args.model, args.assets)
    except (FileNotFoundError, ValueError) as err:  # exit 2 (common/cli.py): a missing or unreadable file, a bad output
        return fail(err)
    description = ModelDescription.from_json(json_out.read_text())
    print(f"wrote {model_out} ({model_out.stat().st_size} bytes) and {json_out}")
    print(
        f"model {description.name}, precision {description.precision or '?'}, "
        f"input {list(description.input_size)}, output {description.output or 'logits'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
