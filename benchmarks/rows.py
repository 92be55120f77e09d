"""The benchmark row: one model file measured one way (exporter, precision, device, threads).

Rows are plain dicts so they go to JSON as they are; `new_row` fills every field
(None where not measured) and `check_row` validates one.
"""

from __future__ import annotations

from typing import Any, Iterable

from inference.description import EXPORTERS, PRECISIONS  # noqa: F401  (EXPORTERS: defined once, there)

# Fields the issue requires of every row (checks outside the project read these).
REQUIRED_FIELDS = (
    "model",
    "exporter",
    "precision",
    "device",
    "threads",
    "input_size",
    "output_stride",
    "params",
    "bytes",
    "latency_ms_p50",
    "latency_ms_p90",
)

# Further fields, None where not measured.
EXTRA_FIELDS = (
    "status",  # "ok", "unavailable" (device missing) or "error"
    "reason",  # why a row is not "ok"
    "macs",  # multiply-accumulates of one run (zoo.count_macs)
    "latency_ms_mean",
    "latency_ms_min",
    "runs",  # timed runs behind the latency figures
    "warmup",
    "peak_rss_mb",  # peak resident set of a fresh process that loads and runs the file
    "model_mem_mb",  # peak_rss_mb minus the bare runtime's baseline
    "achieved_macs_per_s",  # macs / latency_ms_p50
    "peak_macs_per_s",  # measured dense-convolution peak of this CPU at these threads (benchmarks/peak.py)
    "peak_fraction",  # achieved / peak
    "weight_buffers",
    "shared_kernel_buffers",
    "argmax_agreement",  # exporter's parity check against the Keras model
    "max_abs_diff",
    "ops",  # op name -> count
    "miou",  # percent, from evaluation/evaluate.py
    "miou_reason",
    "file",
    # --device gpu rows (None on CPU rows):
    "gpu_adapter",  # the adapter the LiteRT GPU accelerator selected, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
    "gpu_software",  # True when that adapter is a CPU emulating a GPU (llvmpipe...): latency is not GPU speed
    "gpu_precision",  # GPU arithmetic: "fp16" (the accelerator's default) or "fp32"
    "argmax_agreement_vs_cpu",  # percent of pixels whose arg-max on the GPU equals LiteRT CPU's (smooth input)
    "max_abs_diff_vs_cpu",  # max |GPU - CPU| of float outputs on that input
    "note",  # a caveat on how the row was measured, e.g. "software GPU (llvmpipe): correctness only; 3 timed runs"
    # --check-arm: the file on LiteRT's ARM64 kernels under emulation (inference/arm.py) against x86 LiteRT
    "arm_argmax_agreement",  # percent of pixels with the same arg-max, the minimum over the emulated CPU models
    "arm_max_abs_diff",  # the largest output difference over them
)

FIELDS = REQUIRED_FIELDS + EXTRA_FIELDS
DEVICES = ("cpu", "gpu")
STATUSES = ("ok", "unavailable", "error")


def new_row(**values: Any) -> dict[str, Any]:
    """A row with every field of `FIELDS`, None unless given; unknown field names are an error."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown row fields: {', '.join(unknown)}; valid fields: {', '.join(FIELDS)}")
    row = {field: None for field in FIELDS}
    row.update(values)
    return row


def check_row(row: dict[str, Any]) -> None:
    """Raises ValueError naming the first field of `row` that breaks the schema."""
    missing = [field for field in REQUIRED_FIELDS if field not in row]
    if missing:
        raise ValueError(f"row lacks required fields: {', '.join(missing)}")
    if row["exporter"] not in EXPORTERS:
        raise ValueError(f"row exporter {row['exporter']!r} is not one of {EXPORTERS}")
    if row["device"] not in DEVICES:
        raise ValueError(f"row device {row['device']!r} is not one of {DEVICES}")
    if row["precision"] not in PRECISIONS:
        raise ValueError(f"row precision {row['precision']!r} is not fp32, fp16 or int8")
    status = row.get("status", "ok")
    if status not in STATUSES:
        raise ValueError(f"row status {status!r} is not one of {STATUSES}")
    positive = ("params", "input_size", "output_stride") + (() if status == "error" else ("bytes",))
    for field in positive:  # a file that failed to convert has no bytes
        if not isinstance(row[field], int) or row[field] <= 0:
            raise ValueError(f"row {field} must be a positive int, got {row[field]!r}")
    if status == "ok":
        for field in ("latency_ms_p50", "latency_ms_p90"):
            if not isinstance(row[field], (int, float)) or row[field] <= 0:
                raise ValueError(f"row {field} must be a positive number in an 'ok' row, got {row[field]!r}")
        if row["latency_ms_p90"] < row["latency_ms_p50"]:
            raise ValueError("row latency_ms_p90 is below latency_ms_p50")
    elif not row.get("reason"):
        raise ValueError(f"a row with status {status!r} must say why in 'reason'")
    _check_gpu_fields(row)


def _check_gpu_fields(row: dict[str, Any]) -> None:
    for field in ("gpu_adapter", "note"):
        if row.get(field) is not None and not isinstance(row[field], str):
            raise ValueError(f"row {field} must be a string or None, got {row[field]!r}")
    if row.get("gpu_software") is not None and not isinstance(row["gpu_software"], bool):
        raise ValueError(f"row gpu_software must be true, false or None, got {row['gpu_software']!r}")
    if row.get("gpu_precision") not in (None, "fp16", "fp32"):
        raise ValueError(f"row gpu_precision {row['gpu_precision']!r} is not fp16, fp32 or None")
    agreement = row.get("argmax_agreement_vs_cpu")
    if agreement is not None and (isinstance(agreement, bool) or not isinstance(agreement, (int, float))
                                  or not 0.0 <= agreement <= 100.0):  # fmt: skip
        raise ValueError(f"row argmax_agreement_vs_cpu must be a percent in [0, 100], got {agreement!r}")
    if row.get("device") == "cpu":
        for field in ("gpu_adapter", "gpu_software", "gpu_precision", "argmax_agreement_vs_cpu"):
            if row.get(field) is not None:
                raise ValueError(f"row {field} is set on a cpu row")


def check_rows(rows: Iterable[dict[str, Any]]) -> None:
    """`check_row` on each row."""
    for index, row in enumerate(rows):
        try:
            check_row(row)
        except ValueError as error:
            raise ValueError(f"row {index}: {error}") from None


def is_software_gpu(row: dict[str, Any]) -> bool:
    """Whether `row` was measured on a software GPU adapter (a CPU emulating a GPU): correctness only."""
    return row.get("device") == "gpu" and row.get("gpu_software") is True
