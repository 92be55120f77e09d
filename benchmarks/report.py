"""Reports of benchmark rows: the ratios the issue asks for, a Markdown table, PNG plots.

Rows measured on a software GPU adapter (`gpu_software`: Mesa's llvmpipe and the
like, a CPU emulating a GPU) are correctness checks: they are reported in their own
section headed "software GPU: correctness only", their latencies enter no ratio
and no latency plot, and they are never set beside CPU or hardware GPU figures.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable

from benchmarks.rows import is_software_gpu
from inference.description import PRECISIONS

Row = dict[str, Any]
_KEY = ("model", "exporter", "precision", "device", "threads", "input_size", "output_stride")


def _ok(rows: Iterable[Row]) -> list[Row]:
    return [row for row in rows if row.get("status", "ok") == "ok" and row.get("latency_ms_p50")]


def _key(row: Row, **changes: Any) -> tuple:
    values = {**{field: row[field] for field in _KEY}, **changes}
    return tuple(values[field] for field in _KEY)


def _ratio(a: Any, b: Any) -> float | None:
    return float(a) / float(b) if a is not None and b not in (None, 0) else None


def _latency_rows(rows: Iterable[Row]) -> list[Row]:
    """The "ok" rows whose latency means what it says: all but those of a software GPU adapter."""
    return [row for row in _ok(rows) if not is_software_gpu(row)]


def _deeplab_twin(model: str) -> str | None:
    """The pyramid-less DeepLab model of `model`'s backbone and width (mobilenetv2_ksac@0.5 -> mobilenetv2_deeplab@0.5),
    or None for that model itself."""
    name, at, width = model.partition("@")
    twin = name.split("_")[0] + "_deeplab"
    return None if name == twin else twin + at + width


def _pairs(rows: list[Row], select: Callable[[Row], bool], partner: Callable[[Row], dict]) -> list[tuple[Row, Row]]:
    # Software-GPU rows pair only with software-GPU rows (rows of several runs may be merged).
    index = {(_key(row), is_software_gpu(row)): row for row in rows}
    found = []
    for row in rows:
        if select(row):
            other = index.get((_key(row, **partner(row)), is_software_gpu(row)))
            if other is not None:
                found.append((row, other))
    return found


SOFTWARE_RATIO_NOTE = "software GPU, correctness only: latency ratios left out (a CPU emulating a GPU)"


def summary_ratios(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The comparisons of issue 6, from rows measured in the same run.

    Each entry has `comparison` (what is divided by what), the row coordinates it
    holds fixed, and the ratios (`bytes_ratio`, `latency_ratio` of medians,
    `memory_ratio` of `model_mem_mb`, or `speedup`):

    - "ksac/aspp": a KSAC model over its ASPP twin (separable over separable), same exporter, precision, threads.
    - "separable/regular": a separable-pyramid model over the regular one of the same backbone and head.
    - "pyramid/deeplab": a model with a pyramid over DeepLab's pyramid-less mobile head, same backbone and width.
    - "ksac-aware/naive": the project's exporter over plain TFLiteConverter, same file otherwise.
    - "fp32/int8 latency": the int8 speed-up (fp32 median latency over int8's).
    - "os8/os16": output stride 8 over 16 (how much slower and bigger OS 8 is).

    Pairs of software-GPU rows keep only `bytes_ratio` (their latency and memory
    are not a GPU's), carry `gpu_software: True` and a `note` saying so; the
    comparisons that are only about latency are left out for them.
    """
    ok = _ok(rows)
    out: list[dict[str, Any]] = []

    def entry(comparison: str, a: Row, b: Row, **ratios: float | None) -> None:
        fixed = {field: a[field] for field in _KEY}
        if is_software_gpu(a):
            ratios = {name: value for name, value in ratios.items() if name == "bytes_ratio"}
            if not ratios:
                return
            ratios.update(gpu_software=True, note=SOFTWARE_RATIO_NOTE)
        out.append({"comparison": comparison, **fixed, **ratios})

    for a, b in _pairs(  # regular KSAC over regular ASPP, separable KSAC over separable ASPP
        ok, lambda r: "_ksac" in r["model"], lambda r: {"model": r["model"].replace("_ksac", "_aspp")}
    ):
        entry(
            "ksac/aspp",
            a,
            b,
            bytes_ratio=_ratio(a["bytes"], b["bytes"]),
            latency_ratio=_ratio(a["latency_ms_p50"], b["latency_ms_p50"]),
            memory_ratio=_ratio(a.get("model_mem_mb"), b.get("model_mem_mb")),
        )
    for a, b in _pairs(ok, lambda r: _deeplab_twin(r["model"]) is not None, lambda r: {"model": _deeplab_twin(r["model"])}):
        entry(
            "pyramid/deeplab",
            a,
            b,
            bytes_ratio=_ratio(a["bytes"], b["bytes"]),
            latency_ratio=_ratio(a["latency_ms_p50"], b["latency_ms_p50"]),
            memory_ratio=_ratio(a.get("model_mem_mb"), b.get("model_mem_mb")),
        )
    for a, b in _pairs(
        ok, lambda r: r["model"].endswith("_separable"), lambda r: {"model": r["model"].removesuffix("_separable")}
    ):
        entry(
            "separable/regular",
            a,
            b,
            bytes_ratio=_ratio(a["bytes"], b["bytes"]),
            latency_ratio=_ratio(a["latency_ms_p50"], b["latency_ms_p50"]),
            memory_ratio=_ratio(a.get("model_mem_mb"), b.get("model_mem_mb")),
        )
    for a, b in _pairs(ok, lambda r: r["exporter"] == "ksac-aware", lambda r: {"exporter": "naive"}):
        entry(
            "ksac-aware/naive",
            a,
            b,
            bytes_ratio=_ratio(a["bytes"], b["bytes"]),
            latency_ratio=_ratio(a["latency_ms_p50"], b["latency_ms_p50"]),
        )
    for a, b in _pairs(ok, lambda r: r["precision"] == "int8", lambda r: {"precision": "fp32"}):
        entry("fp32/int8 latency", a, b, speedup=_ratio(b["latency_ms_p50"], a["latency_ms_p50"]))
    for a, b in _pairs(ok, lambda r: r["output_stride"] == 8, lambda r: {"output_stride": 16}):
        entry(
            "os8/os16",
            a,
            b,
            latency_ratio=_ratio(a["latency_ms_p50"], b["latency_ms_p50"]),
            memory_ratio=_ratio(a.get("model_mem_mb"), b.get("model_mem_mb")),
            peak_rss_ratio=_ratio(a.get("peak_rss_mb"), b.get("peak_rss_mb")),
        )
    return out


def _fmt(value: Any, spec: str | None = None, scale: float = 1.0) -> str:
    if value is None:
        return "–"
    if spec and isinstance(value, (int, float)):
        return format(value / scale, spec)
    return str(value)


def summary_lines(ratios: list[dict[str, Any]]) -> list[str]:
    """One readable line per summary entry."""
    lines = []
    for r in ratios:
        device = "software-gpu" if r.get("gpu_software") else r["device"]
        where = (f"{r['model']} {r['exporter']} {r['precision']} {device} t={r['threads']} "
                 f"{r['input_size']}px OS{r['output_stride']}")
        figures = ", ".join(
            f"{name} {value:.3f}"
            for name, value in r.items()
            if name.endswith(("_ratio", "speedup")) and value is not None
        )
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"{r['comparison']:<18} {where}: {figures}{note}")
    return lines


COLUMNS = (
    ("model", "model", None),
    ("exporter", "exporter", None),
    ("precision", "prec", None),
    ("device", "device", None),
    ("threads", "thr", None),
    ("input_size", "input", None),
    ("output_stride", "OS", None),
    ("params", "params (M)", (".3f", 1e6)),
    ("macs", "GMAC", (".2f", 1e9)),
    ("bytes", "size (MB)", (".2f", 1e6)),
    ("latency_ms_p50", "p50 (ms)", (".1f", 1.0)),
    ("latency_ms_p90", "p90 (ms)", (".1f", 1.0)),
    ("peak_rss_mb", "peak RSS (MB)", (".0f", 1.0)),
    ("model_mem_mb", "model mem (MB)", (".0f", 1.0)),
    ("achieved_macs_per_s", "GMAC/s", (".1f", 1e9)),
    ("peak_fraction", "% of peak", (".1%", 1.0)),
    ("miou", "mIoU (%)", (".2f", 1.0)),
    ("arm_argmax_agreement", "ARM64 kernels (emulated): agreement (%)", (".2f", 1.0)),
    ("status", "status", None),
)


# What names a GPU file and what it is (shared by both GPU tables): no threads, memory or CPU peak.
_GPU_FILE_COLUMNS = (
    ("input_size", "input", None),
    ("output_stride", "OS", None),
    ("params", "params (M)", (".3f", 1e6)),
    ("macs", "GMAC", (".2f", 1e9)),
    ("bytes", "size (MB)", (".2f", 1e6)),
    ("gpu_precision", "GPU arith", None),
)
_NAME_COLUMNS = (("model", "model", None), ("exporter", "exporter", None), ("precision", "prec", None))

# GPU rows: the GPU's arithmetic, its latency, its agreement with LiteRT CPU, the adapter.
GPU_COLUMNS = _NAME_COLUMNS + (("device", "device", None),) + _GPU_FILE_COLUMNS + (
    ("latency_ms_p50", "p50 (ms)", (".1f", 1.0)),
    ("latency_ms_p90", "p90 (ms)", (".1f", 1.0)),
    ("achieved_macs_per_s", "GMAC/s", (".1f", 1e9)),
    ("argmax_agreement_vs_cpu", "arg-max = CPU (%)", (".2f", 1.0)),
    ("gpu_adapter", "adapter", None),
    ("miou", "mIoU (%)", (".2f", 1.0)),
    ("status", "status", None),
)

# Software-GPU rows: correctness first; the latency column says it is not GPU speed.
SOFTWARE_GPU_COLUMNS = _NAME_COLUMNS + _GPU_FILE_COLUMNS + (
    ("argmax_agreement_vs_cpu", "arg-max = CPU (%)", (".2f", 1.0)),
    ("max_abs_diff_vs_cpu", "max abs diff vs CPU", (".3g", 1.0)),
    ("latency_ms_p50", "p50 (ms, emulated: not GPU speed)", (".0f", 1.0)),
    ("runs", "timed runs", None),
    ("gpu_adapter", "adapter", None),
    ("status", "status", None),
)

# Sections of the report, in order: (group, heading, columns).
GROUPS = (
    ("cpu", "CPU (LiteRT, XNNPACK)", COLUMNS),
    ("gpu", "GPU (LiteRT GPU accelerator)", GPU_COLUMNS),
    ("software-gpu", "software GPU: correctness only", SOFTWARE_GPU_COLUMNS),
)


def row_group(row: Row) -> str:
    """"cpu", "gpu" (a hardware adapter, or none loaded) or "software-gpu" (a CPU emulating a GPU)."""
    if row.get("device") != "gpu":
        return "cpu"
    return "software-gpu" if is_software_gpu(row) else "gpu"


def markdown_table(rows: Iterable[Row], columns: tuple = COLUMNS) -> str:
    """The rows as a Markdown table (a row that is not "ok" shows its reason in the status column)."""
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for field, _, spec in columns:
            value = row.get(field)
            if field == "status" and value not in (None, "ok"):
                value = f"{value}: {row.get('reason') or ''}"
            cells.append(_fmt(value, *spec) if spec else _fmt(value))
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def software_gpu_caveat(rows: list[Row]) -> str:
    """The paragraph under the "software GPU: correctness only" heading."""
    adapters = sorted({row["gpu_adapter"] for row in rows if row.get("gpu_adapter")}) or ["a software adapter"]
    return (
        f"These rows ran on {', '.join(adapters)}: a CPU emulating a GPU (Vulkan in software). They show "
        "whether each file runs fully on the LiteRT GPU accelerator and how often its arg-max equals LiteRT "
        "CPU's; their latencies are NOT GPU speed, enter no ratio or plot, and must not be compared with the "
        "CPU or hardware GPU figures."
    )


def markdown_sections(rows: list[Row]) -> str:
    """The rows as one Markdown table per group (CPU, GPU, software GPU), each under its heading."""
    parts = []
    for group, heading, columns in GROUPS:
        members = [row for row in rows if row_group(row) == group]
        if not members:
            continue
        parts += [f"## {heading}", ""]
        if group == "software-gpu":
            parts += [software_gpu_caveat(members), ""]
        parts.append(markdown_table(members, columns))
    return "\n".join(parts)


def markdown_report(rows: list[Row], ratios: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The whole Markdown report: how it was measured, the tables (CPU, GPU, software GPU apart), the ratios."""
    parts = ["# Benchmark results", ""]
    for name in ("command", "machine", "gpu_adapter", "note", "latency_method", "memory_method", "peak_method",
                 "exporter"):  # fmt: skip
        if meta.get(name):
            parts.append(f"- **{name.replace('_', ' ')}**: {meta[name]}")
    parts += ["", markdown_sections(rows), "## Ratios (same run)", "", "```"]
    parts += summary_lines(ratios) or ["(no pairs of rows to compare)"]
    parts += ["```", ""]
    return "\n".join(parts)


_PRECISION_COLORS = {"fp32": "tab:blue", "fp16": "tab:green", "int8": "tab:orange"}


def plots(rows: list[Row]) -> dict[str, bytes]:
    """PNG plots by file name: size per model and precision; latency against threads; OS 8 vs 16 (if both).

    No latency of a software-GPU row is plotted: it is a CPU emulating a GPU.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, bytes] = {}

    def save(fig) -> bytes:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        return buffer.getvalue()

    files = {}
    for row in rows:
        if row.get("bytes"):  # a file that failed to convert has none
            files.setdefault((row["model"], row["output_stride"], row["exporter"], row["precision"]), row["bytes"])
    if files:
        labels = sorted({(m, os_) for m, os_, _, _ in files})
        series = sorted({(e, p) for _, _, e, p in files}, key=lambda s: (s[0], PRECISIONS.index(s[1])))
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) * max(1, len(series)) / 3), 4))
        width = 0.8 / max(1, len(series))
        for i, (exporter, precision) in enumerate(series):
            values = [files.get((m, os_, exporter, precision), 0) / 1e6 for m, os_ in labels]
            ax.bar([x + i * width for x in range(len(labels))], values, width, label=f"{precision} {exporter}",
                   color=_PRECISION_COLORS[precision], edgecolor="black", linewidth=0.5,
                   hatch="//" if exporter == "naive" else None)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))])
        ax.set_xticklabels([f"{m}\nOS{os_}" for m, os_ in labels], fontsize=8)
        ax.set_ylabel(".tflite size (MB)")
        ax.set_title("File size per model and precision")
        ax.legend(fontsize=7)
        images["size.png"] = save(fig)

    ok = [row for row in _ok(rows) if row["device"] == "cpu"]  # threads are a CPU notion; no GPU row here
    if ok:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        lines: dict[tuple, list[tuple[int, float]]] = {}
        for row in ok:
            lines.setdefault((row["model"], row["output_stride"], row["exporter"], row["precision"]), []).append(
                (row["threads"], row["latency_ms_p50"])
            )
        for (model, os_, exporter, precision), points in sorted(lines.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    linestyle="--" if exporter == "naive" else "-", label=f"{model} OS{os_} {precision} {exporter}")
        ax.set_xlabel("threads")
        ax.set_xticks(sorted({row["threads"] for row in ok}))
        ax.set_ylabel("median latency (ms)")
        ax.set_title("Latency against threads (LiteRT, XNNPACK)")
        ax.legend(fontsize=6)
        images["latency_threads.png"] = save(fig)

    # Software-GPU rows have no os8/os16 entry (summary_ratios), so none of their latencies is plotted here.
    pairs = [r for r in summary_ratios(rows) if r["comparison"] == "os8/os16" and not r.get("gpu_software")]
    if pairs:
        index = {_key(row): row for row in _latency_rows(rows)}
        fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(pairs) + 2), 4.5))
        labels = [f"{p['model'].replace('mobilenetv2', 'mnv2').replace('xception65', 'xc65')} {p['precision']}\n"
                  f"{p['exporter']} " + ("GPU" if p["device"] == "gpu" else f"t={p['threads']}") for p in pairs]
        panels = ((axes[0], "latency_ms_p50", "median latency (ms)"), (axes[1], "model_mem_mb", "model memory (MB)"))
        for ax, field, title in panels:
            for i, stride in enumerate((8, 16)):
                values = [index[_key(p, output_stride=stride)].get(field) or 0 for p in pairs]
                ax.bar([x + i * 0.4 for x in range(len(pairs))], values, 0.4, label=f"OS {stride}")
            ax.set_xticks([x + 0.2 for x in range(len(pairs))])
            ax.set_xticklabels(labels, fontsize=6, rotation=45, ha="right")
            ax.set_title(title)
            ax.legend(fontsize=7)
        images["os_8_vs_16.png"] = save(fig)
    return images
