"""Atomic output files and output paths checked first, at their earlier import path: they live in
`ksac_runtime.files` (`ksac-segment` writes with them); the same objects, not a copy."""

from ksac_runtime.files import atomic_write_bytes, atomic_write_json, atomic_write_text, check_output_path  # noqa: F401
