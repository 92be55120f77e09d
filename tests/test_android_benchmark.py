"""benchmarks/android.py: parsing benchmark_model's summary and the adb commands, with a fake adb."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from benchmarks import android

# The documented output of TFLite's benchmark_model (tensorflow/lite/tools/benchmark), as printed on stdout.
DOCUMENTED = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/model_int8.tflite]
INFO: Loaded model /data/local/tmp/model_int8.tflite
INFO: The input model file size (MB): 3.2
INFO: Initialized session in 5.678ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=45 first=12345 curr=11000 min=10800 max=12345 avg=11111.1 std=300

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=10321 curr=9954 min=9803 max=10532 avg=10000.5 std=250

INFO: Inference timings in us: Init: 5678, First inference: 12345, Warmup (avg): 11111.1, Inference (avg): 10000.5
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.5 overall=12.25
"""

# Newer builds add percentiles and a monitored peak; logcat adds a prefix to every line.
NEWER_LOGCAT = """\
07-14 13:14:52.190 22838 22838 I tflite  : Initialized session in 92.318ms.
07-14 13:14:52.859 22838 22838 I tflite  : count=3 first=235158 curr=200386 min=199462 max=235158 avg=211669 std=16613 p5=199462 median=200386 p95=235158
07-14 13:14:56.520 22838 22838 I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533
07-14 13:14:56.521 22838 22838 I tflite  : Inference timings in us: Init: 92318, First inference: 235158, Warmup (avg): 211669, Inference (avg): 145528
07-14 13:14:56.521 22838 22838 I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
07-14 13:14:56.521 22838 22838 I tflite  : Overall peak memory footprint (MB) via periodic monitoring: 93.2383
"""


def test_parses_documented_summary() -> None:
    s = android.parse_benchmark_output(DOCUMENTED)
    assert s.init_ms == pytest.approx(5.678)
    assert s.first_inference_ms == pytest.approx(12.345)
    assert s.warmup_ms == pytest.approx(11.1111)
    assert s.latency_ms_avg == pytest.approx(10.0005)
    assert s.latency_ms_std == pytest.approx(0.25)  # the timed runs' line, not the warm-up's std=300
    assert s.runs == 50
    assert s.latency_ms_median is None and s.latency_ms_p95 is None
    assert s.memory_mb == pytest.approx(12.25)
    assert s.memory_init_mb == pytest.approx(3.5)


def test_parses_newer_logcat_summary() -> None:
    s = android.parse_benchmark_output(NEWER_LOGCAT)
    assert s.init_ms == pytest.approx(92.318)
    assert s.latency_ms_avg == pytest.approx(145.528)
    assert s.latency_ms_std == pytest.approx(13.583)
    assert s.latency_ms_median == pytest.approx(141.253)
    assert s.latency_ms_p95 == pytest.approx(187.533)
    assert s.runs == 25
    assert s.memory_mb == pytest.approx(93.2383)  # monitored peak preferred over the delta


def test_summary_without_memory_or_stats() -> None:
    s = android.parse_benchmark_output(
        "Inference timings in us: Init: 3501, First inference: 156677, Warmup (avg): 43268.1, Inference (avg): 33071.8\n"
    )
    assert s.latency_ms_avg == pytest.approx(33.0718)
    assert s.latency_ms_std is None and s.memory_mb is None


def test_failed_run_is_a_clear_error() -> None:
    with pytest.raises(android.AndroidBenchmarkError, match="no 'Inference timings in us"):
        android.parse_benchmark_output("ERROR: Failed to apply GPU delegate.\nBenchmarking failed.\n")


def test_pick_device() -> None:
    assert android.pick_device({"A1": "device"}, None) == "A1"
    assert android.pick_device({"A1": "device", "B2": "device"}, "B2") == "B2"
    with pytest.raises(android.AndroidBenchmarkError, match="no Android device attached"):
        android.pick_device({}, None)
    with pytest.raises(android.AndroidBenchmarkError, match="several devices"):
        android.pick_device({"A1": "device", "B2": "device"}, None)
    with pytest.raises(android.AndroidBenchmarkError, match="not attached"):
        android.pick_device({"A1": "device"}, "Z9")
    with pytest.raises(android.AndroidBenchmarkError, match="unauthorized"):
        android.pick_device({"A1": "unauthorized"}, "A1")


# ---------------------------------------------------------------- end to end with a fake adb

FAKE_ADB = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args == ["devices"]:
    print("List of devices attached")
    for line in os.environ.get("FAKE_ADB_DEVICES", "").split(","):
        if line:
            print(line.replace(":", "\\t"))
elif "shell" in args and "benchmark_model" in " ".join(args) and "--graph" in " ".join(args):
    sys.stdout.write(open(os.environ["FAKE_ADB_OUTPUT"]).read())
"""


@pytest.fixture(scope="module")
def tiny_tflite(one_conv_tflite: bytes, make_description, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-convolution .tflite carrying the project's metadata (fast to make)."""
    from convert.tflite_file import add_metadata

    path = tmp_path_factory.mktemp("model") / "model_int8.tflite"
    path.write_bytes(add_metadata(one_conv_tflite, make_description(precision="int8", output_stride=16)))
    return path


@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    output = tmp_path / "benchmark_output.txt"
    output.write_text(DOCUMENTED)
    log = tmp_path / "adb_log.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(output))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "PHONE123:device")
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.delenv(android.BINARY_ENV, raising=False)
    return log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_adb_commands_and_row(fake_adb: Path, tiny_tflite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    results = tmp_path / "results" / "android.json"
    code = android.main(
        ["--model", str(tiny_tflite), "--benchmark-binary", str(binary), "--threads", "2", "--use-gpu", "--results", str(results)]
    )
    assert code == 0
    calls = _calls(fake_adb)
    assert calls[0] == ["devices"]
    assert calls[1] == ["-s", "PHONE123", "push", str(tiny_tflite), "/data/local/tmp/model_int8.tflite"]
    assert calls[2] == ["-s", "PHONE123", "push", str(binary), "/data/local/tmp/benchmark_model"]
    assert calls[3] == ["-s", "PHONE123", "shell", "chmod", "755", "/data/local/tmp/benchmark_model"]
    assert calls[4] == [
        "-s",
        "PHONE123",
        "shell",
        "/data/local/tmp/benchmark_model --graph=/data/local/tmp/model_int8.tflite --num_threads=2 "
        "--warmup_runs=1 --num_runs=50 --use_gpu=true",
    ]
    assert len(calls) == 5

    rows = json.loads(results.read_text())
    assert len(rows) == 1
    row = rows[0]
    for key in ("model", "exporter", "precision", "device", "threads", "input_size", "output_stride", "params", "bytes",
                "latency_ms_p50", "latency_ms_p90", "init_ms", "warmup_ms", "latency_ms_avg", "latency_ms_std", "memory_mb"):
        assert key in row, key
    assert row["model"] == "mobilenetv2_ksac"
    assert row["exporter"] == "ksac-aware"
    assert row["precision"] == "int8"
    assert row["device"] == "android:PHONE123"
    assert row["threads"] == 2
    assert row["input_size"] == 9
    assert row["output_stride"] == 16
    assert row["params"] is None
    assert row["bytes"] == tiny_tflite.stat().st_size
    assert row["latency_ms_p50"] == pytest.approx(10.0005)
    assert row["latency_ms_p90"] is None
    assert row["init_ms"] == pytest.approx(5.678)
    assert row["warmup_ms"] == pytest.approx(11.1111)
    assert row["latency_ms_std"] == pytest.approx(0.25)
    assert row["memory_mb"] == pytest.approx(12.25)
    assert row["accelerator"] == "gpu"

    # a second run appends, and --serial picks among several devices; no --use-gpu: no flag
    monkeypatch.setenv("FAKE_ADB_DEVICES", "OTHER:device,PHONE123:device")
    assert android.main(["--model", str(tiny_tflite), "--benchmark-binary", str(binary), "--serial", "PHONE123",
                         "--results", str(results)]) == 0
    assert len(json.loads(results.read_text())) == 2
    last = _calls(fake_adb)[-1]
    assert last[:3] == ["-s", "PHONE123", "shell"] and "--use_gpu" not in last[3] and "--num_threads=4" in last[3]


def test_clear_errors(fake_adb: Path, tiny_tflite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"x")
    results = tmp_path / "r.json"

    assert android.main(["--model", str(tiny_tflite), "--benchmark-binary", str(tmp_path / "nope"), "--results", str(results)]) == 2
    assert "benchmark_model binary not found" in capsys.readouterr().err

    assert android.main(["--model", str(tiny_tflite), "--results", str(results)]) == 2
    assert "--benchmark-binary" in capsys.readouterr().err

    assert android.main(["--model", str(tmp_path / "missing.tflite"), "--benchmark-binary", str(binary)]) == 2
    assert "model file not found" in capsys.readouterr().err

    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    assert android.main(["--model", str(tiny_tflite), "--benchmark-binary", str(binary), "--results", str(results)]) == 2
    assert "no Android device attached" in capsys.readouterr().err

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert android.main(["--model", str(tiny_tflite), "--benchmark-binary", str(binary), "--results", str(results)]) == 2
    assert "adb not found" in capsys.readouterr().err
    assert not results.exists()  # nothing appended on failure


def test_help_names_every_flag() -> None:
    text = android.build_parser().format_help()
    for flag in ("--model", "--serial", "--benchmark-binary", "--threads", "--use-gpu", "--results"):
        assert flag in text
