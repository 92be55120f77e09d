"""The command-line side of the configs: flags as a config layer, the shared loop flags, defaults in `--help`.

Each command keeps a `FLAGS` table (argparse dest -> dotted config field, e.g. ``{"lr": "optimizer.lr"}``)
whose flags all default to None, i.e. "not given": `flag_overrides` turns the given ones into the
top layer of `configs.resolve`, and `document_defaults` shows each field's default in `--help`.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from configs.engine import get


def flag_overrides(args: Any, flags: Mapping[str, str]) -> dict[str, Any]:
    """The nested override dict of the flags that were given (not None), by the `flags` table
    (argparse dest -> dotted config field, e.g. ``{"lr": "optimizer.lr"}``)."""
    out: dict[str, Any] = {}
    for dest, path in flags.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        *sections, name = path.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return out


def add_loop_flags(parser: argparse.ArgumentParser, log_name: str) -> None:
    """The flags of the shared training loop (`training.trainer`), as train.py and qat.py both take them."""
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (the final step is always checkpointed)")
    parser.add_argument("--log-every", type=int, help=f"steps between progress lines / {log_name} rows (the final step is always logged)")
    parser.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"),
                        help="auto: multiworker if TF_CONFIG describes a cluster (several machines, one process each; "
                        "docs/multi-machine-training.md), mirrored (with synchronized BatchNorm) if several GPUs "
                        "are visible, else one device")  # fmt: skip
    parser.add_argument("--cpu-replicas", type=int, help="split the CPU into N logical devices and mirror across them "
                        "(a testing aid for multi-replica code without GPUs)")  # fmt: skip
    parser.add_argument("--no-data-check", dest="data_check", action="store_const", const=False,
                        help="skip decoding every training sample up front (bad files then stop the run when reached)")


def document_defaults(parser: argparse.ArgumentParser, flags: Mapping[str, str], defaults: Any) -> None:
    """Appends each flag's default (from the config dataclass, their one home) and its config field to its help."""
    for action in parser._actions:
        if action.dest in flags and action.const is not False:  # not the --no-X switches
            default = get(defaults, flags[action.dest])
            shown = "" if default is None or "(none:" in (action.help or "") else f"default: {default}; "
            action.help = f"{action.help} ({shown}config field {flags[action.dest]})"
