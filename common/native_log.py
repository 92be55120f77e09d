"""Native libraries' stderr, at its earlier import path: it lives in `ksac_runtime.native_log` (the runtime
loads models with it); the same objects, not a copy."""

from ksac_runtime.native_log import Captured, native_stderr  # noqa: F401
