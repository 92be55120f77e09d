"""`benchmarks/run.py`: --device gpu without a GPU accelerator, --help, and bad values on the command line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FLAGS = ("--quick", "--models", "--precisions", "--threads", "--input-size", "--output-stride", "--device",
         "--trained", "--out", "--json")  # fmt: skip


def _fast_export(model, precision, *, naive=False, calibration_steps=100, check_parity=True):
    """Stands in for the exporter: this test is about the GPU path, not conversion (slow on a shared CPU)."""
    from benchmarks.export import Exported
    from benchmarks.gpu import _tiny_tflite

    tflite = _tiny_tflite()
    exporter = "naive" if naive else "ksac-aware"
    return Exported(tflite, {"precision": precision, "bytes": len(tflite), "exporter": exporter})


def test_device_gpu_without_gpu_gives_unavailable_rows(tmp_path, monkeypatch, capsys):
    from benchmarks import export, run
    from benchmarks.gpu import probe_gpu

    if probe_gpu()["available"]:
        pytest.skip("a LiteRT GPU accelerator loads on this machine")
    monkeypatch.setattr(export, "export", _fast_export)
    out, rows_file = tmp_path / "out", tmp_path / "rows.json"
    argv = ["--device", "gpu", "--models", "mobilenetv2_ksac", "--precisions", "fp32", "--input-size", "65",
            "--out", str(out), "--json", str(rows_file)]  # fmt: skip
    status = run.main(argv, model_overrides=dict(width=0.35, head_filters=16))
    assert status == 0
    rows = json.loads(rows_file.read_text())
    assert [row["exporter"] for row in rows] == ["ksac-aware", "naive"]
    for row in rows:
        assert row["device"] == "gpu" and row["status"] == "unavailable"
        assert row["reason"].startswith("GPU accelerator:") and len(row["reason"]) > len("GPU accelerator: ")
        assert row["latency_ms_p50"] is None and row["bytes"] > 0 and row["params"] > 0
    assert json.loads((out / "rows.json").read_text()) == rows
    assert {"results.md", "summary.json", "meta.json", "size.png"} <= {p.name for p in out.iterdir()}
    assert "unavailable" in capsys.readouterr().out


def test_help_explains_every_flag():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--help"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0
    for flag in FLAGS:
        assert flag in done.stdout


@pytest.mark.parametrize(
    "argv, bad",
    [
        (["--precisions", "fp64"], "fp64"),
        (["--models", "resnet_aspp"], "resnet_aspp"),
        (["--output-stride", "12"], "12"),
        (["--threads", "0"], "0"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_bad_values_are_named(argv, bad, capsys):
    from benchmarks.run import resolve_args

    with pytest.raises(SystemExit) as exit_info:
        resolve_args(argv + ["--out", "/nonexistent/never-written"])
    assert exit_info.value.code == 2
    assert bad in capsys.readouterr().err


def test_quick_defaults():
    from benchmarks.run import resolve_args

    args = resolve_args(["--quick", "--out", "/nonexistent/never-written"])
    assert args.models == ["mobilenetv2_ksac", "mobilenetv2_aspp"]
    assert args.precisions == ["fp32", "int8"] and args.input_size == 257 and args.threads == [1, 2]
    assert args.output_stride == [16] and args.device == "cpu"


def test_failed_conversion_gives_error_rows_and_exit_1(tmp_path, monkeypatch):
    from benchmarks import export, run

    def failing_export(model, precision, **kwargs):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(export, "export", failing_export)
    monkeypatch.setattr("benchmarks.gpu.probe_gpu", lambda: {"available": False, "reason": "not probed in this test"})
    argv = ["--device", "gpu", "--models", "mobilenetv2_ksac", "--precisions", "int8", "--input-size", "65",
            "--out", str(tmp_path)]  # fmt: skip
    assert run.main(argv, model_overrides=dict(width=0.35, head_filters=16)) == 1
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 2 and all(row["status"] == "error" for row in rows)
    assert "converter exploded" in rows[0]["reason"]
