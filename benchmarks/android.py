#!/usr/bin/env python3
"""Benchmarks a `.tflite` file on an Android phone over adb with TFLite's `benchmark_model` binary.

    python benchmarks/android.py --model runs/latest/model_int8.tflite --benchmark-binary ./android_aarch64_benchmark_model

Pushes the model and the binary to /data/local/tmp, runs the binary there, parses its summary (init
time, warm-up, average and standard deviation of inference, memory footprint) into a benchmark row
and appends it to a results JSON (default benchmarks/results/android.json). Model name, precision,
input size and output stride come from the metadata embedded in the file.

The binary is the prebuilt `benchmark_model` for the phone's ABI (e.g. android_aarch64_benchmark_model
from the TensorFlow/LiteRT nightly builds); nothing is downloaded here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from common.cli import USER_ERROR, WORK_FAILED, fail

if TYPE_CHECKING:
    from inference.description import ModelDescription

DEVICE_DIR = "/data/local/tmp"
DEVICE_BINARY = f"{DEVICE_DIR}/benchmark_model"
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "android.json"
BINARY_ENV = "BENCHMARK_MODEL_BINARY"


class AndroidBenchmarkError(RuntimeError):
    """A failure the user can fix (no adb, no device, no binary, a failed run); the message says how."""


class AndroidRunFailed(AndroidBenchmarkError):
    """The benchmark itself failed on the phone (a push, the run, or output without timings): exit 1, not 2."""


# ---------------------------------------------------------------- parsing benchmark_model's output

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}"
)
_STATS = re.compile(r"count=(\d+)((?:\s+[a-z0-9_]+=" + _NUM + r")+)")
_KEYVAL = re.compile(rf"([a-z0-9_]+)={_NUM}")
_MEMORY_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}")
_PEAK_MONITORED = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_PEAK = re.compile(rf"Peak memory footprint \(MB\): init={_NUM} overall={_NUM}")
_INIT_SESSION = re.compile(rf"Initialized session in {_NUM}\s*ms")


@dataclass
class BenchmarkSummary:
    """What benchmark_model reported; times in milliseconds, memory in MB (None where not printed)."""

    init_ms: float
    first_inference_ms: float
    warmup_ms: float
    latency_ms_avg: float
    latency_ms_std: float | None
    latency_ms_median: float | None
    latency_ms_p95: float | None
    runs: int | None
    memory_mb: float | None
    memory_init_mb: float | None


def parse_benchmark_output(text: str) -> BenchmarkSummary:
    """Parses the summary benchmark_model prints (stdout or logcat, any log prefix).

    The documented lines are::

        count=50 first=10321 curr=9954 min=9803 max=10532 avg=10000.5 std=250 [p5=... median=... p95=...]
        Inference timings in us: Init: 5678, First inference: 12345, Warmup (avg): 11111.1, Inference (avg): 10000.5
        Memory footprint delta from the start of the tool (MB): init=3.5 overall=12.25
        Overall peak memory footprint (MB) via periodic monitoring: 14.5   (newer binaries)

    The `count=` line of the timed runs is the last one before the timings line (the first is the
    warm-up). Memory is the periodically monitored peak when printed, else the overall delta.
    """
    timings = list(_TIMINGS.finditer(text))
    if not timings:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise AndroidBenchmarkError(
            "benchmark_model printed no 'Inference timings in us: ...' summary; did the run fail?\n"
            f"last lines of its output:\n{tail}"
        )
    match = timings[-1]
    init_us, first_us, warmup_us, avg_us = (float(g) for g in match.groups())
    stats = [m for m in _STATS.finditer(text) if m.start() < match.start()]
    std = median = p95 = None
    runs = None
    if stats:
        fields = {k: float(v) for k, v in _KEYVAL.findall(stats[-1].group(0))}
        runs = int(stats[-1].group(1))
        std = fields.get("std")
        median = fields.get("median")
        p95 = fields.get("p95")
    memory = memory_init = None
    if delta := list(_MEMORY_DELTA.finditer(text)):
        memory_init, memory = (float(g) for g in delta[-1].groups())
    if peak := list(_PEAK.finditer(text)):
        memory_init, memory = (float(g) for g in peak[-1].groups())
    if monitored := list(_PEAK_MONITORED.finditer(text)):
        memory = float(monitored[-1].group(1))

    def ms(us: float | None) -> float | None:
        return None if us is None else us / 1000.0

    return BenchmarkSummary(
        init_ms=init_us / 1000.0,
        first_inference_ms=first_us / 1000.0,
        warmup_ms=warmup_us / 1000.0,
        latency_ms_avg=avg_us / 1000.0,
        latency_ms_std=ms(std),
        latency_ms_median=ms(median),
        latency_ms_p95=ms(p95),
        runs=runs,
        memory_mb=memory,
        memory_init_mb=memory_init,
    )


# ---------------------------------------------------------------- adb

def find_adb(adb: str | None = None) -> str:
    """The adb executable (given path, $ADB, or adb on PATH); AndroidBenchmarkError if there is none."""
    candidate = adb or os.environ.get("ADB") or "adb"
    found = shutil.which(candidate)
    if found is None:
        raise AndroidBenchmarkError(
            f"adb not found ({candidate!r} is not an executable on PATH); install Android platform-tools "
            "(e.g. apt-get install adb, or the SDK's platform-tools) or pass --adb PATH"
        )
    return found


def _run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AndroidBenchmarkError(f"timed out after {timeout:.0f} s: {shlex.join(cmd)}") from None
    if proc.returncode != 0:
        raise AndroidBenchmarkError(
            f"command failed with exit status {proc.returncode}: {shlex.join(cmd)}\n{(proc.stdout + proc.stderr).strip()}"
        )
    return proc


def list_devices(adb: str) -> dict[str, str]:
    """Serial -> state ("device", "unauthorized", "offline", ...) from `adb devices`."""
    out = _run([adb, "devices"], timeout=30).stdout
    devices: dict[str, str] = {}
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            devices[parts[0]] = parts[1]
    return devices


def pick_device(devices: dict[str, str], serial: str | None) -> str:
    """The serial to use: `serial` if attached and ready, else the only ready device."""
    ready = [s for s, state in devices.items() if state == "device"]
    if serial is not None:
        if serial not in devices:
            attached = ", ".join(f"{s} ({st})" for s, st in devices.items()) or "none"
            raise AndroidBenchmarkError(f"device {serial!r} is not attached; attached: {attached}")
        if devices[serial] != "device":
            raise AndroidBenchmarkError(
                f"device {serial!r} is {devices[serial]!r}, not ready; unlock it and accept the USB debugging prompt"
            )
        return serial
    if not ready:
        others = ", ".join(f"{s} ({st})" for s, st in devices.items())
        raise AndroidBenchmarkError(
            "no Android device attached (adb devices lists none ready"
            + (f"; seen: {others}" if others else "")
            + "); connect a phone with USB debugging enabled"
        )
    if len(ready) > 1:
        raise AndroidBenchmarkError(f"several devices attached ({', '.join(ready)}); choose one with --serial ID")
    return ready[0]


def benchmark_command(device_model: str, threads: int, use_gpu: bool, num_runs: int, warmup_runs: int) -> list[str]:
    """The benchmark_model command line run on the phone."""
    cmd = [
        DEVICE_BINARY,
        f"--graph={device_model}",
        f"--num_threads={threads}",
        f"--warmup_runs={warmup_runs}",
        f"--num_runs={num_runs}",
    ]
    if use_gpu:
        cmd.append("--use_gpu=true")
    return cmd


def adb_commands(
    adb: str, serial: str, model: Path, binary: Path, threads: int, use_gpu: bool, num_runs: int, warmup_runs: int
) -> list[list[str]]:
    """Every adb invocation, in order: push the model, push the binary, chmod it, run it."""
    device_model = f"{DEVICE_DIR}/{model.name}"
    return [
        [adb, "-s", serial, "push", str(model), device_model],
        [adb, "-s", serial, "push", str(binary), DEVICE_BINARY],
        [adb, "-s", serial, "shell", "chmod", "755", DEVICE_BINARY],
        [adb, "-s", serial, "shell", shlex.join(benchmark_command(device_model, threads, use_gpu, num_runs, warmup_runs))],
    ]


# ---------------------------------------------------------------- rows and results

def make_row(model: Path, description: ModelDescription, summary: BenchmarkSummary, serial: str, threads: int, use_gpu: bool) -> dict[str, Any]:
    """The benchmark row (same schema as benchmarks/run.py rows, plus Android-only fields)."""
    height, width = description.input_size
    input_size: Any = height if height == width else [height, width]
    return {
        "model": description.name,
        "exporter": description.exporter or "ksac-aware",
        "precision": description.precision,
        "device": f"android:{serial}",
        "threads": threads,
        "input_size": input_size,
        "output_stride": description.output_stride,
        "params": None,  # not recorded in the file (benchmarks/run.py rows count them on the Keras model)
        "bytes": model.stat().st_size,
        # benchmark_model prints no percentiles in older builds: p50 is its median when printed, else its average
        "latency_ms_p50": summary.latency_ms_median if summary.latency_ms_median is not None else summary.latency_ms_avg,
        "latency_ms_p90": None,
        "init_ms": summary.init_ms,
        "warmup_ms": summary.warmup_ms,
        "latency_ms_avg": summary.latency_ms_avg,
        "latency_ms_std": summary.latency_ms_std,
        "memory_mb": summary.memory_mb,
        "first_inference_ms": summary.first_inference_ms,
        "latency_ms_p95": summary.latency_ms_p95,
        "runs": summary.runs,
        "accelerator": "gpu" if use_gpu else "cpu",
        "file": str(model),
        "tool": "benchmark_model (adb)",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_rows(results: Path) -> list[dict[str, Any]]:
    """The rows already in the results JSON ([] when it does not exist yet); AndroidBenchmarkError naming
    it when it cannot take another row (not a JSON list, a directory, a path under a file)."""
    from common.files import check_output_path

    try:
        check_output_path(str(results))
    except ValueError as err:
        raise AndroidBenchmarkError(f"--results: {err}") from None
    if not results.exists():
        return []
    try:
        rows = json.loads(results.read_text() or "[]")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AndroidBenchmarkError(f"{results} is not valid JSON ({err}); move it away or pass --results FILE") from None
    if not isinstance(rows, list):
        raise AndroidBenchmarkError(f"{results} holds a JSON {type(rows).__name__}, expected a list of rows")
    return rows


def append_row(results: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Appends `row` to the JSON list in `results` (created if absent), atomically."""
    from common.files import atomic_write_json

    rows = read_rows(results) + [row]
    atomic_write_json(str(results), rows)
    return rows


def run_android_benchmark(
    model: Path,
    binary: Path | None,
    serial: str | None = None,
    threads: int = 4,
    use_gpu: bool = False,
    results: Path = DEFAULT_RESULTS,
    num_runs: int = 50,
    warmup_runs: int = 1,
    adb: str | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Runs the whole benchmark; returns the row appended to `results`."""
    from inference.description import read_description  # no TensorFlow needed to read it

    if not model.is_file():
        raise AndroidBenchmarkError(f"model file not found: {model}")
    if binary is None:
        env = os.environ.get(BINARY_ENV)
        if not env:
            raise AndroidBenchmarkError(
                f"no benchmark_model binary given: pass --benchmark-binary PATH (or set ${BINARY_ENV}) to the "
                "prebuilt android_aarch64_benchmark_model (or android_arm_...) for your phone"
            )
        binary = Path(env)
    if not binary.is_file():
        raise AndroidBenchmarkError(f"benchmark_model binary not found: {binary}")
    if threads < 1:
        raise AndroidBenchmarkError(f"--threads must be at least 1, got {threads}")
    try:
        description = read_description(str(model))
    except (FileNotFoundError, ValueError) as err:  # the message names the file
        raise AndroidBenchmarkError(str(err)) from None
    read_rows(results)  # a results file that cannot take the row is refused before the phone runs
    adb_path = find_adb(adb)
    device = pick_device(list_devices(adb_path), serial)
    output = ""
    try:
        for cmd in adb_commands(adb_path, device, model, binary, threads, use_gpu, num_runs, warmup_runs):
            output = _run(cmd, timeout).stdout
        summary = parse_benchmark_output(output)
    except AndroidBenchmarkError as err:
        raise AndroidRunFailed(str(err)) from None
    row = make_row(model, description, summary, device, threads, use_gpu)
    append_row(results, row)
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/android.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, metavar="FILE.tflite", help="exported model with embedded metadata")
    parser.add_argument("--serial", metavar="ID", help="adb serial of the phone (default: the only device attached)")
    parser.add_argument(
        "--benchmark-binary",
        metavar="PATH",
        help=f"benchmark_model built for the phone's ABI, pushed to {DEVICE_BINARY} (default: ${BINARY_ENV})",
    )
    parser.add_argument("--threads", type=int, default=4, metavar="N", help="CPU threads, --num_threads (default: %(default)s)")
    parser.add_argument("--use-gpu", action="store_true", help="run with the GPU delegate (--use_gpu=true)")
    parser.add_argument(
        "--results", metavar="FILE", default=str(DEFAULT_RESULTS), help="results JSON to append the row to (default: %(default)s)"
    )
    parser.add_argument("--num-runs", type=int, default=50, metavar="N", help="timed runs, --num_runs (default: %(default)s)")
    parser.add_argument("--warmup-runs", type=int, default=1, metavar="N", help="warm-up runs, --warmup_runs (default: %(default)s)")
    parser.add_argument("--adb", metavar="PATH", help="adb executable (default: $ADB, else adb on PATH)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        row = run_android_benchmark(
            Path(args.model),
            Path(args.benchmark_binary) if args.benchmark_binary else None,
            serial=args.serial,
            threads=args.threads,
            use_gpu=args.use_gpu,
            results=Path(args.results),
            num_runs=args.num_runs,
            warmup_runs=args.warmup_runs,
            adb=args.adb,
        )
    except AndroidBenchmarkError as err:  # common/cli.py: the phone's run failed (1), else the input or setup (2)
        return fail(err, WORK_FAILED if isinstance(err, AndroidRunFailed) else USER_ERROR)
    print(json.dumps(row, indent=2))
    print(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
