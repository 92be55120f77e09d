"""What every command line shares, its exit codes and `--json [FILE]` (docs/cli.md), at its earlier import
path: it lives in `ksac_runtime.cli` (`ksac-segment` follows the same rule); the same objects, not a copy."""

from ksac_runtime.cli import (  # noqa: F401
    STDOUT,
    USER_ERROR,
    WORK_FAILED,
    UserError,
    add_json_flag,
    check_json_path,
    check_output_flag,
    exit_code,
    exit_process,
    fail,
    json_to_stdout,
    stdout_kept_for_json,
    write_json,
)
