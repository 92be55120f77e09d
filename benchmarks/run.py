"""Benchmarks ASPP vs KSAC as deployed: `.tflite` size, latency, memory (and mIoU) in LiteRT.

    python benchmarks/run.py --quick
    python benchmarks/run.py --models mobilenetv2_ksac --output-stride 8,16 --precisions int8 --threads 1,2

Every model is converted with the project's KSAC-aware exporter and, for
comparison, with the plain TFLiteConverter (what `from_keras_model` gives; `convert.export.plain_converter`) (rows with exporter
"naive"); each file is then timed in LiteRT (XNNPACK on CPU, round-robin with the
other files of its backbone), its peak memory is taken in a fresh process, and its
achieved MACs/s is set beside a measured dense-convolution peak of this CPU. The
Markdown table, JSON rows, ratios and PNG plots go to `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

import zoo  # noqa: F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)
from common.cli import (
    USER_ERROR, add_json_flag, check_json_path, check_output_flag, fail, json_to_stdout, stdout_kept_for_json, write_json,
)
from configs import QUICK_BENCHMARK, BenchmarkConfig, ConfigError, find_config, read_file, resolve

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = BenchmarkConfig()
# argparse dests that set a BenchmarkConfig field of the same name (None: not given).
FLAGS = ("models", "precisions", "exporters", "threads", "input_size", "output_stride", "widths", "device", "trained",
         "check_arm", "out", "json")
GPU_NOTE = (
    "each file runs in its own child process (inference.gpu); on a software adapter (llvmpipe...: a CPU "
    "emulating a GPU) the rows are correctness checks, reported apart, and their latencies are not GPU speed"
)
CPU_SHARED_NOTE = (
    "timings on a shared or busy CPU are noisy; compare ratios taken within one run "
    "(files are timed round-robin, so load from other processes falls on all of them alike)"
)


def _csv(kind: str, cast=str):
    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{kind} list is empty: {text!r}")
        try:
            return [cast(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {kind} list {text!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of issue 6."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "--quick sets MobileNetV2 KSAC and ASPP, fp32 and int8, input 257, both exporters, 16 calibration "
            "steps (100 otherwise), no exporter parity check and 20 timed runs (30 otherwise), to finish in "
            "about 5 minutes on an idle 2-core CPU; flags given explicitly override it. Outputs: results.md, "
            "rows.json, summary.json (the ratios), meta.json (machine, methods, CPU peak), size.png, "
            "latency_threads.png, os_8_vs_16.png (when both strides run) and tflite/*.tflite."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="the small, fast benchmark (see below)")
    parser.add_argument("--config", metavar="FILE", help="a YAML or JSON file whose `benchmark` section sets any "
                        "BenchmarkConfig field (configs/experiments.py); flags override it")
    parser.add_argument(
        "--models",
        type=_csv("model"),
        default=None,
        help=f"comma-separated model names (default: {','.join(DEFAULTS.models)}; xception65_* are slow to convert)",
    )
    parser.add_argument(
        "--precisions",
        type=_csv("precision"),
        default=None,
        help=f"comma-separated precisions among fp32,fp16,int8 (default: {','.join(DEFAULTS.precisions)})",
    )
    parser.add_argument(
        "--exporters",
        type=_csv("exporter"),
        default=None,
        help=f"comma-separated exporters among ksac-aware,naive (default: {','.join(DEFAULTS.exporters)}); "
        "naive is the plain TFLiteConverter baseline",
    )
    parser.add_argument(
        "--threads",
        type=_csv("thread count", int),
        default=None,
        help="comma-separated CPU thread counts to time at (default: 1,2); ignored on --device gpu",
    )
    parser.add_argument(
        "--input-size", type=int, default=None, help=f"side of the square input (default: {DEFAULTS.input_size})"
    )
    parser.add_argument(
        "--output-stride",
        type=_csv("output stride", int),
        default=None,
        help="output stride, or a comma-separated list such as 8,16 to compare them (default: each model's own: 16, MobileNetV3 32)",
    )
    parser.add_argument(
        "--widths",
        type=_csv("width", float),
        default=None,
        help="backbone width multipliers, e.g. 1,0.5: every model at each (rows of width w != 1 are named MODEL@w; default: 1)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default=None,
        help="cpu (default): LiteRT with XNNPACK; gpu: the LiteRT GPU accelerator (rows say 'unavailable' where none "
        "loads; on a software adapter such as llvmpipe they are correctness checks, reported apart)",
    )
    parser.add_argument(
        "--trained",
        metavar="DIR",
        default=None,
        help="a training run folder (DIR/model.keras): benchmark that trained model instead of random-weight "
        "ones and also measure each file's mIoU on the data it was trained on",
    )
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output folder (default: benchmarks/results/<timestamp>/)"
    )
    add_json_flag(parser, "the rows")
    parser.add_argument("--check-arm", action="store_const", const=True, default=None,
                        help="also run every file on LiteRT's ARM64 kernels under qemu-user (`make arm-env`; inference/arm.py) "
                        "against x86 LiteRT: column 'ARM64 kernels (emulated): agreement' (correctness, never a speed)")  # fmt: skip
    return parser


def resolve_args(argv: Sequence[str] | None = None) -> BenchmarkConfig:
    """The benchmark's config: defaults, then --quick's, then --config's `benchmark` section, then flags.

    A bad value (`BenchmarkConfig.validate`, run by `resolve`) or output path is a usage error (exit 2).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        file_layer = (read_file(find_config(args.config)).get("benchmark") or {}) if args.config else {}
        flags = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
        quick = args.quick or bool(file_layer.get("quick"))
        config = resolve(BenchmarkConfig, QUICK_BENCHMARK if quick else {}, file_layer, flags, {"quick": quick},
                         where=f"{args.config}: benchmark" if args.config else "benchmark")
    except ConfigError as error:
        parser.error(str(error))
    if config.check_arm:
        from inference.arm import ArmEnvironment, ArmEnvironmentMissing

        try:
            ArmEnvironment.find()
        except ArmEnvironmentMissing as error:
            parser.error(f"--check-arm: {error}")
    if config.trained is not None and not (Path(config.trained) / "model.keras").is_file():
        parser.error(f"--trained {config.trained!r}: no model.keras in that folder")
    try:  # here, not after the conversions
        check_output_flag("--out", config.out, folder=True)
        check_json_path(config.json)
    except ValueError as error:
        parser.error(str(error))
    config.models = list(dict.fromkeys(config.models))
    config.precisions = list(dict.fromkeys(config.precisions))
    config.exporters = list(dict.fromkeys(config.exporters))
    config.threads = sorted(set(config.threads))
    config.output_stride = sorted(set(config.output_stride))
    if config.out is None:
        config.out = str(REPO / "benchmarks" / "results" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return config


def _machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _log(message: str) -> None:
    print(message, flush=True)


def _file_name(model: str, stride: int, precision: str, exporter: str) -> str:
    return f"{model}_os{stride}_{precision}_{exporter}.tflite".replace("@", "_w")


def model_label(name: str, width: float) -> str:
    """A row's model: the registry name, with `@width` where the width multiplier is not 1 (mobilenetv2_deeplab@0.5)."""
    return name if width == 1.0 else f"{name}@{width:g}"


def registry_name(label: str) -> str:
    """The registry model of a row's `model_label`."""
    return label.partition("@")[0]


def load_trained(args: BenchmarkConfig) -> Any:
    """The `--trained` run's model.keras (None without --trained); ValueError naming it if it does not load."""
    if args.trained is None:
        return None
    from zoo.saving import load_keras_model

    path = str(Path(args.trained) / "model.keras")
    model = load_keras_model(path, compile=True)
    try:
        zoo.describe(model)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return model


def convert_all(args: BenchmarkConfig, model_overrides: dict[str, Any] | None, trained: Any = None) -> list[dict[str, Any]]:
    """Builds and converts every (model, stride, precision, exporter), or the `trained` model (see
    `load_trained`) in each precision; returns one entry per file."""
    import tf_keras as keras

    from benchmarks.exporters import export
    from benchmarks.realistic_weights import benchmark_model
    from zoo import count_macs, default_output_stride, describe
    from common.files import atomic_write_bytes

    entries = []
    if trained is not None:
        description = describe(trained)
        plan = [(description.name, description.output_stride, 1.0)]  # the model as trained, under its own name
        args.input_size = description.input_size[0]
        _log(f"--trained: benchmarking {description.name} at {args.input_size} px, OS{plan[0][1]} from "
             f"{args.trained} (--models, --input-size and --output-stride are taken from the model)")
    else:
        plan = [(m, s, w) for m in args.models for s in (args.output_stride or [default_output_stride(m)]) for w in args.widths]
    total = len(plan) * len(args.precisions) * len(args.exporters)
    done = 0
    for registered, stride, width in plan:
        name = model_label(registered, width)
        overrides = {**(model_overrides or {}), **({"width": width} if width != 1.0 else {})}
        model = trained if trained is not None else benchmark_model(registered, args.input_size, stride, overrides=overrides)
        params, macs = int(model.count_params()), int(count_macs(model))
        for precision in args.precisions:
            for exporter in args.exporters:
                done += 1
                _log(f"[{done}/{total}] converting {name} OS{stride} {precision} ({exporter}) ...")
                entry = {"model": name, "output_stride": stride, "precision": precision, "exporter": exporter,
                         "params": params, "macs": macs, "input_size": args.input_size}
                start = time.perf_counter()
                try:
                    result = export(model, precision, naive=exporter == "naive",
                                    calibration_steps=args.calibration_steps, check_parity=args.check_parity)
                except Exception as error:  # one failed conversion must not lose the others' rows
                    entry["error"] = f"conversion failed: {type(error).__name__}: {error}"[:500]
                    _log(f"    {entry['error']}")
                    entries.append(entry)
                    continue
                path = Path(args.out) / "tflite" / _file_name(name, stride, precision, exporter)
                atomic_write_bytes(str(path), result.tflite)
                entry.update(file=str(path), tflite=result.tflite, report=result.report)
                _log(f"    {len(result.tflite) / 1e6:.2f} MB in {time.perf_counter() - start:.1f} s")
                entries.append(entry)
        del model
        keras.backend.clear_session()
    return entries


def _base_row(entry: dict[str, Any], device: str, threads: int | None) -> dict[str, Any]:
    from benchmarks.rows import new_row

    report = entry.get("report") or {}
    return new_row(
        model=entry["model"],
        exporter=entry["exporter"],
        precision=entry["precision"],
        device=device,
        threads=threads,
        input_size=entry["input_size"],
        output_stride=entry["output_stride"],
        params=entry["params"],
        macs=entry["macs"],
        bytes=len(entry["tflite"]) if "tflite" in entry else None,
        weight_buffers=report.get("weight_buffers"),
        shared_kernel_buffers=report.get("shared_kernel_buffers"),
        argmax_agreement=report.get("argmax_agreement"),
        max_abs_diff=report.get("max_abs_diff"),
        ops=report.get("ops"),
        file=entry.get("file"),
    )


def measure_cpu(
    args: BenchmarkConfig, entries: list[dict[str, Any]], peak_files: dict[str, bytes], peak: dict[str, dict]
) -> list[dict[str, Any]]:
    """Times every converted file at every thread count and takes its memory.

    The files of one backbone are timed round-robin together with the conv-only peak
    models (`peak_files`, precision -> bytes), so each row's fraction of peak compares
    runs taken under the same load; `peak` (precision -> threads -> MACs/s) collects
    the best peak seen at each thread count.
    """
    from benchmarks.latency import measure_interleaved
    from benchmarks.memory import measure_memory
    from benchmarks.peak import peak_macs_per_s
    from zoo.registry import model_spec

    rows = []
    good = [e for e in entries if "tflite" in e]
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in good:
        groups.setdefault(model_spec(registry_name(entry["model"])).backbone, []).append(entry)
    for threads in args.threads:
        for backbone, members in groups.items():
            _log(f"timing {len(members)} {backbone} files at {threads} thread(s), round-robin "
                 f"({args.warmup} warm-up + {args.runs} timed runs each)")
            files: dict[Any, bytes] = {i: e["tflite"] for i, e in enumerate(members)}
            files.update({("peak", precision): data for precision, data in peak_files.items()})
            stats = measure_interleaved(files, threads, warmup=args.warmup, runs=args.runs, progress=True)
            group_peak = {precision: peak_macs_per_s(stats[("peak", precision)].min_ms) for precision in peak_files}
            for precision, value in group_peak.items():
                best = peak.setdefault(precision, {})
                best[threads] = max(best.get(threads, 0.0), value)
            _log("    conv-only peak in this round-robin: "
                 + ", ".join(f"{p} {v / 1e9:.1f} GMAC/s" for p, v in group_peak.items()))
            for i, entry in enumerate(members):
                stat = stats[i]
                row = _base_row(entry, "cpu", threads)
                row.update(status="ok", latency_ms_p50=stat.p50_ms, latency_ms_p90=stat.p90_ms,
                           latency_ms_mean=stat.mean_ms, latency_ms_min=stat.min_ms, runs=stat.runs,
                           warmup=args.warmup)
                try:
                    row.update(measure_memory(entry["file"], threads))
                except RuntimeError as error:
                    _log(f"    memory of {entry['file']}: {error}")
                row["achieved_macs_per_s"] = row["macs"] / (stat.p50_ms / 1000.0)
                family = "int8" if entry["precision"] == "int8" else "fp32"
                peak_value = group_peak.get(family)
                if peak_value:
                    row["peak_macs_per_s"] = peak_value
                    row["peak_fraction"] = row["achieved_macs_per_s"] / peak_value
                rows.append(row)
                _log(f"    {entry['model']} OS{entry['output_stride']} {entry['precision']} {entry['exporter']} "
                     f"t={threads}: p50 {stat.p50_ms:.1f} ms, p90 {stat.p90_ms:.1f} ms, "
                     f"peak RSS {row['peak_rss_mb'] or 0:.0f} MB")
    return rows


def add_arm_agreement(entries: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Sets `arm_argmax_agreement` and `arm_max_abs_diff` on every row of each converted file: the file on
    LiteRT's ARM64 kernels under emulation against x86 LiteRT (inference/arm.py, every CPU model, one frame)."""
    from inference.arm import check_files

    files = [e["file"] for e in entries if "file" in e]
    if not files:
        return
    _log(f"checking {len(files)} file(s) on LiteRT's ARM64 kernels under emulation (correctness, not speed) ...")
    by_file = {report["file"]: report for report in check_files(files, frames=1, log=_log)}
    for row in rows:
        report = by_file.get(row.get("file"))
        if report is not None:
            row.update(arm_argmax_agreement=report["argmax_agreement"], arm_max_abs_diff=report["max_abs_diff"])


def measure_gpu(args: BenchmarkConfig, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checks and times every file on the LiteRT GPU accelerator (`inference.gpu.gpu_report`, a child per file).

    A file that does not run fully on the GPU, or every file when no accelerator
    loads, gets an `unavailable` row with the reason. On a software adapter
    (llvmpipe...) the rows are correctness checks with a few timed runs, marked
    `gpu_software` and with a `note` saying so.
    """
    from benchmarks.gpu_probe import probe_gpu, software_note, timed_runs
    from inference.gpu import gpu_report

    good = [e for e in entries if "tflite" in e]
    if not good:
        return []
    probe = probe_gpu()
    if not probe["available"]:
        _log(f"GPU accelerator unavailable: {probe.get('reason')}")
    warmup, runs = timed_runs(probe.get("software"), args.warmup, args.runs)
    if probe["available"]:
        kind = "a SOFTWARE adapter (a CPU emulating a GPU): correctness only" if probe.get("software") else "hardware"
        _log(f"GPU accelerator on {probe.get('adapter')}, {kind}; {warmup} warm-up + {runs} timed runs per file")
    rows = []
    for entry in good:
        row = _base_row(entry, "gpu", None)
        result = gpu_report(entry["file"], warmup=warmup, runs=runs) if probe["available"] else probe
        software = result.get("software")
        row.update(gpu_adapter=result.get("adapter"), gpu_software=None if software is None else bool(software),
                   gpu_precision=result.get("precision") if result.get("available") else None)
        label = f"    {entry['model']} OS{entry['output_stride']} {entry['precision']} {entry['exporter']}:"
        if result.get("available") and result.get("fully_accelerated") and result.get("p50_ms"):
            row.update(status="ok", latency_ms_p50=result["p50_ms"], latency_ms_p90=result["p90_ms"],
                       latency_ms_mean=result["mean_ms"], latency_ms_min=result["min_ms"], runs=result["runs"],
                       warmup=result.get("warmup", warmup), peak_rss_mb=result.get("peak_rss_mb"),
                       argmax_agreement_vs_cpu=result.get("argmax_agreement"),
                       max_abs_diff_vs_cpu=result.get("max_abs_diff"))  # fmt: skip
            if software:
                row["note"] = software_note(result.get("adapter"), result["runs"])
                _log(f"{label} runs on {result.get('adapter')} [software GPU: correctness only], arg-max agreement "
                     f"with LiteRT CPU {row['argmax_agreement_vs_cpu']:.2f}%, "
                     f"p50 {result['p50_ms']:.0f} ms (not GPU speed)")
            else:
                row["achieved_macs_per_s"] = row["macs"] / (result["p50_ms"] / 1000.0)
                _log(f"{label} GPU p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, arg-max agreement "
                     f"with LiteRT CPU {row['argmax_agreement_vs_cpu']:.2f}%")
        else:
            row.update(status="unavailable", reason=f"GPU accelerator: {result.get('reason') or 'unknown'}")
            if software:
                row["note"] = software_note(result.get("adapter"))
            _log(f"{label} unavailable: {row['reason']}")
        rows.append(row)
    return rows


def error_rows(args: BenchmarkConfig, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for files that failed to convert."""
    rows = []
    for entry in (e for e in entries if "error" in e):
        for threads in args.threads if args.device == "cpu" else [None]:
            row = _base_row(entry, args.device, threads)
            row.update(status="error", reason=entry["error"])
            rows.append(row)
    return rows


def add_miou(entries: list[dict[str, Any]], rows: list[dict[str, Any]], trained: bool) -> None:
    """Fills `miou` (or `miou_reason`) of every row, measuring each file once."""
    from benchmarks.accuracy import measure_miou

    by_file: dict[str, tuple] = {}
    for entry in (e for e in entries if "file" in e):
        if trained:
            _log(f"measuring mIoU of {Path(entry['file']).name} ...")
            by_file[entry["file"]] = measure_miou(entry["file"])
        else:
            by_file[entry["file"]] = (None, "random-weight model; pass --trained DIR to measure mIoU")
    for row in rows:
        miou, reason = by_file.get(row["file"], (None, "no file"))
        row["miou"], row["miou_reason"] = miou, reason


def write_outputs(args: BenchmarkConfig, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Writes results.md, rows.json, summary.json, meta.json and the plots into --out; returns the Markdown."""
    from benchmarks.report import markdown_report, plots, summary_ratios
    from common.files import atomic_write_bytes, atomic_write_json, atomic_write_text

    out = Path(args.out)
    ratios = summary_ratios(rows)
    text = markdown_report(rows, ratios, meta)
    atomic_write_json(str(out / "rows.json"), rows)
    atomic_write_json(str(out / "summary.json"), ratios)
    atomic_write_json(str(out / "meta.json"), meta)
    atomic_write_text(str(out / "results.md"), text)
    if args.json and not json_to_stdout(args.json):
        atomic_write_json(args.json, rows)
    for name, png in plots(rows).items():
        atomic_write_bytes(str(out / name), png)
    return text


def main(argv: Sequence[str] | None = None, *, model_overrides: dict[str, Any] | None = None) -> int:
    """Runs the benchmark; returns the exit status (common/cli.py: 0, 1 when a file failed to convert, 2 for bad input).

    Args:
        argv: command-line arguments (default: sys.argv[1:]).
        model_overrides: extra `zoo.build_model` keyword arguments (tests use tiny models).
    """
    args = resolve_args(argv)
    with stdout_kept_for_json(args.json) as stdout:  # `--json` alone: stdout holds the JSON rows only
        return benchmark(args, argv, model_overrides, stdout)


def benchmark(args: BenchmarkConfig, argv: Sequence[str] | None, model_overrides: dict[str, Any] | None, stdout: TextIO) -> int:
    """The benchmark of `main` (the resolved `args`; `stdout`: where `--json` alone prints the rows); its exit status."""
    started = time.perf_counter()
    try:
        trained = load_trained(args)
    except (OSError, ValueError) as error:
        return fail(f"--trained {args.trained}: {error}", USER_ERROR)
    from benchmarks.gpu_probe import SOFTWARE_RUNS, SOFTWARE_WARMUP
    from benchmarks.rows import check_rows

    meta: dict[str, Any] = {
        "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": _machine(),
        "load_average_start": _load(),
        "note": CPU_SHARED_NOTE if args.device == "cpu" else GPU_NOTE,
        "latency_method": (
            f"ai_edge_litert Interpreter (XNNPACK default delegate, num_threads), {args.warmup} warm-up + "
            f"{args.runs} timed invoke() per file, files of one backbone timed round-robin; p50/p90 of wall time"
            if args.device == "cpu"
            else "python -m inference.gpu per file (a child process): ai_edge_litert CompiledModel on "
            "HardwareAccelerator.GPU (no CPU fallback), its arg-max compared with LiteRT CPU on one smooth image "
            f"(argmax_agreement_vs_cpu), then {args.warmup} warm-up + {args.runs} timed runs on a hardware adapter, "
            f"{SOFTWARE_WARMUP} + {SOFTWARE_RUNS} on a software one (llvmpipe...: correctness only, not GPU "
            "speed); p50/p90 of wall time"
        ),
        "memory_method": (
            "GPU: peak resident set of the GPU child, which also runs the file on LiteRT CPU for the comparison"
            if args.device == "gpu"
            else "fresh child process per (file, threads) importing only numpy and ai_edge_litert: peak resident set "
            "(VmHWM) after loading and running the file 3 times (peak_rss_mb); model_mem_mb subtracts the peak "
            "of the bare runtime after its imports"
        ),
        "exporter": (
            "convert.export.export_tflite (ksac-aware rows; naive=True for naive rows), "
            f"{args.calibration_steps} calibration images for int8, parity check {'on' if args.check_parity else 'off'}"
        ),
        "quick": args.quick,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    _log(f"benchmarks -> {args.out}\n{meta['machine']}; load average {meta['load_average_start']}")
    _log(f"exporter: {meta['exporter']}")

    entries = convert_all(args, model_overrides, trained)
    if args.device == "cpu":
        from benchmarks.peak import conv_only_macs, conv_only_tflite

        peak_files = {precision: conv_only_tflite(precision) for precision in ("fp32", "int8")}
        peak: dict[str, dict] = {}
        rows = measure_cpu(args, entries, peak_files, peak)
        meta["peak_method"] = (
            f"fastest run of a CONV_2D-only LiteRT model ({conv_only_macs() / 1e9:.2f} GMAC/run; benchmarks/peak.py), "
            "fp32 and int8, timed in the same round-robin as the rows; fp32/fp16 rows are set against the fp32 "
            "peak, int8 rows against the int8 peak"
        )
        meta["peak_macs_per_s"] = peak
    else:
        rows = measure_gpu(args, entries)
        adapters = sorted({row["gpu_adapter"] for row in rows if row.get("gpu_adapter")})
        meta["gpu_adapter"] = ", ".join(adapters) or None
        if any(row.get("gpu_software") for row in rows):
            meta["gpu_adapter"] += " (software: a CPU emulating a GPU; its latencies are not GPU speed)"
    rows += error_rows(args, entries)
    add_miou(entries, rows, trained=args.trained is not None)
    arm_failed = False
    if args.check_arm:
        from inference.arm import ArmRunError

        try:
            add_arm_agreement(entries, rows)
        except ArmRunError as error:  # the table is still written, without the ARM64 column; the run exits 1
            _log(f"error: --check-arm: {error}")
            arm_failed = True
    check_rows(rows)
    meta["load_average_end"] = _load()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    text = write_outputs(args, rows, meta)
    if json_to_stdout(args.json):
        write_json(args.json, rows, stdout)
    else:
        print(text, flush=True)
    _log(f"wrote {args.out} in {meta['seconds']} s")
    return 1 if arm_failed or any(row["status"] == "error" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
