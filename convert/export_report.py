"""The export report as a side-by-side text table (printed by convert/to_tflite.py and quantize/qat.py)."""

from __future__ import annotations


def format_report(reports: list[dict]) -> str:
    """A side-by-side text table of export reports."""
    rows = [
        ("exporter", lambda r: r["exporter"]),
        ("precision", lambda r: r["precision"]),
        ("bytes", lambda r: f"{r['bytes']:,}"),
        ("params", lambda r: f"{r['params']:,}"),
        ("weight buffers", lambda r: r["weight_buffers"]),
        ("shared kernel buffers", lambda r: r.get("shared_kernel_buffers", "-")),
        ("negative-scale channels", lambda r: r.get("negative_scale_channels", "-")),
        ("SPACE_TO_BATCH_ND", lambda r: r["ops"].get("SPACE_TO_BATCH_ND", 0)),
        ("CONV_2D", lambda r: r["ops"].get("CONV_2D", 0)),
        ("ops", lambda r: sum(r["ops"].values())),
        ("argmax agreement", lambda r: "-" if r["argmax_agreement"] is None else f"{100 * r['argmax_agreement']:.3f}%"),
        ("max |logit diff|", lambda r: "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3g}"),
        ("GPU fully accelerated", lambda r: _gpu(r, "gpu_fully_accelerated", lambda v: "yes" if v else "no")),
        ("GPU arg-max agreement", lambda r: _gpu(r, "gpu_argmax_agreement", lambda v: f"{v:.3f}%")),
        ("GPU adapter", lambda r: _gpu(r, "gpu_adapter", lambda v: v.split(" (")[0] + (" (software)" if r.get("gpu_software") else ""))),
        ("ARM64 arg-max (emul.)", lambda r: f"{r['arm_argmax_agreement']:.3f}%" if "arm_argmax_agreement" in r else "-"),
        ("ARM64 max |diff|", lambda r: f"{r['arm_max_abs_diff']:.3g}" if "arm_max_abs_diff" in r else "-"),
        ("standard metadata", lambda r: {True: "yes", False: "no"}.get(r.get("standard_metadata"), "-")),
        ("seconds", lambda r: r["seconds"]),
    ]
    if not any("gpu_fully_accelerated" in r for r in reports):
        rows = [row for row in rows if not row[0].startswith("GPU ")]
    if not any("arm_argmax_agreement" in r for r in reports):
        rows = [row for row in rows if not row[0].startswith("ARM64 ")]
    lines = []
    for label, get in rows:
        lines.append(f"{label:<24}" + "".join(f"{str(get(r)):>16}" for r in reports))
    return "\n".join(lines)


def _gpu(report: dict, key: str, show) -> str:
    """A GPU field for the table: "-" when not checked, "no adapter" when none loaded."""
    if "gpu_fully_accelerated" not in report:
        return "-"
    if report["gpu_fully_accelerated"] is None:
        return "no adapter"
    value = report.get(key)
    return "-" if value is None else show(value)
