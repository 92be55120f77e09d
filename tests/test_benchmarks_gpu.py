"""`benchmarks/run.py --device gpu`: on this machine's adapter (in CI Mesa's llvmpipe, a software one; a
hardware GPU elsewhere), with faked software and hardware adapters, without an accelerator, and --help
and bad values on the command line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FLAGS = ("--quick", "--models", "--precisions", "--exporters", "--threads", "--input-size", "--output-stride", "--device",
         "--trained", "--check-arm", "--out", "--json")  # fmt: skip
TINY = dict(width=0.35, head_filters=16)
GPU_ARGV = ["--device", "gpu", "--models", "mobilenetv2_ksac", "--precisions", "fp32", "--input-size", "65"]


def _fast_export(model, precision, *, naive=False, calibration_steps=100, check_parity=True):
    """Stands in for the exporter: these tests are about the GPU path, not conversion (slow on a shared CPU)."""
    from benchmarks.exporters import Exported
    from benchmarks.gpu_probe import _tiny_tflite

    tflite = _tiny_tflite()
    exporter = "naive" if naive else "ksac-aware"
    return Exported(tflite, {"precision": precision, "bytes": len(tflite), "exporter": exporter})


@pytest.fixture(scope="module")
def gpu_probe(gpu_adapter):
    """`probe_gpu()` on this machine; `gpu_adapter` (conftest.py) has already FAILED the test, with the
    accelerator's reason, where no LiteRT GPU accelerator loads (CI installs Mesa's llvmpipe)."""
    from benchmarks.gpu_probe import probe_gpu

    probe = probe_gpu()
    assert probe["available"], probe
    return probe


def _small_segmenter(naive: bool) -> bytes:
    """A small random-weight segmenter (33 px, 21 classes, a rate-2 dilated 3x3 convolution) as `.tflite`.

    The ksac-aware stand-in keeps the dilation in CONV_2D, as the project's exporter does; the naive one
    writes it out with SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, as plain TFLiteConverter does for the
    zoo's models. A few seconds to convert, where a real export takes 30 s even for a tiny model.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w1, w2, w3 = (tf.constant(rng.normal(0, scale, shape).astype(np.float32))
                  for shape, scale in (((3, 3, 3, 16), 0.5), ((3, 3, 16, 16), 0.2), ((1, 1, 16, 21), 0.3)))  # fmt: skip

    @tf.function(input_signature=[tf.TensorSpec([1, 33, 33, 3], tf.float32)])
    def net(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        if naive:  # RELU6 between keeps the converter from folding it back into a dilated CONV_2D
            blocks = tf.nn.relu6(tf.space_to_batch_nd(y, [2, 2], [[0, 1], [0, 1]]))
            y = tf.batch_to_space(tf.nn.conv2d(blocks, w2, 1, "SAME"), [2, 2], [[0, 1], [0, 1]])
        else:
            y = tf.nn.conv2d(y, w2, 1, "SAME", dilations=2)
        return tf.nn.conv2d(tf.nn.relu(y), w3, 1, "SAME")

    return tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net).convert()


def _segmenter_export(model, precision, *, naive=False, calibration_steps=100, check_parity=True):
    from benchmarks.exporters import Exported

    tflite = _small_segmenter(naive)
    return Exported(tflite, {"precision": precision, "bytes": len(tflite), "exporter": "naive" if naive else "ksac-aware"})


@pytest.mark.slow
def test_device_gpu_on_this_machines_adapter(gpu_probe, tmp_path, monkeypatch, capsys):
    """Real runs on whatever adapter loads here: rows agree with LiteRT CPU and are filed by the adapter's own
    type (software: a few runs, apart; hardware: a GPU figure); SPACE_TO_BATCH_ND is refused on either."""
    from benchmarks import exporters, run
    from benchmarks.gpu_probe import SOFTWARE_RUNS, software_note, timed_runs

    software, adapter = gpu_probe["software"], gpu_probe["adapter"]
    assert adapter and software is (gpu_probe["adapter_type"] == "CPU / Software"), gpu_probe
    monkeypatch.setattr(exporters, "export", _segmenter_export)
    out, rows_file = tmp_path / "out", tmp_path / "rows.json"
    argv = GPU_ARGV + ["--out", str(out), "--json", str(rows_file)]
    assert run.main(argv, model_overrides=TINY) == 0
    rows = json.loads(rows_file.read_text())
    assert [row["exporter"] for row in rows] == ["ksac-aware", "naive"]
    for row in rows:
        assert row["device"] == "gpu" and row["gpu_software"] is software and row["gpu_adapter"] == adapter
    ok, naive = rows
    assert ok["status"] == "ok", ok
    assert ok["argmax_agreement_vs_cpu"] > 90 and ok["gpu_precision"] == "fp16" and ok["max_abs_diff_vs_cpu"] < 1
    assert 0 < ok["latency_ms_p50"] <= ok["latency_ms_p90"]
    args = run.resolve_args(argv)
    assert (ok["warmup"], ok["runs"]) == timed_runs(software, args.warmup, args.runs)
    # Not on the GPU in full, so not timed (no CPU fallback under a GPU label).
    assert naive["status"] == "unavailable" and naive["reason"].startswith("GPU accelerator: ")
    assert naive["latency_ms_p50"] is None and naive["argmax_agreement_vs_cpu"] is None
    text = (out / "results.md").read_text()
    assert "## CPU" not in text and adapter in capsys.readouterr().out
    if software:
        assert ok["achieved_macs_per_s"] is None
        assert ok["note"] == software_note(adapter, SOFTWARE_RUNS) and naive["note"] == software_note(adapter)
        assert "## software GPU: correctness only" in text
        assert not any("latency_ratio" in r for r in json.loads((out / "summary.json").read_text()))
    else:
        assert ok["achieved_macs_per_s"] > 0
        assert ok["note"] is None and naive["note"] is None
        assert "## GPU (LiteRT GPU accelerator)" in text and "## software GPU" not in text


def _fake_report(software: bool, calls: list):
    adapter = "llvmpipe (LLVM 15.0.6, 256 bits)" if software else "NVIDIA H100 (Vulkan)"

    def gpu_report(path, images=None, *, enforce_f32=False, warmup=0, runs=0, timeout_s=600):
        calls.append((Path(path).name, warmup, runs))
        base = dict(available=True, adapter=adapter, adapter_type="CPU / Software" if software else "Discrete GPU",
                    software=software, precision="fp16")  # fmt: skip
        if "naive" in Path(path).name:
            return dict(base, fully_accelerated=False, reason="not every op of the model runs on the GPU accelerator")
        return dict(base, fully_accelerated=True, argmax_agreement=99.5, max_abs_diff=0.01, p50_ms=20.0, p90_ms=25.0,
                    mean_ms=21.0, min_ms=19.0, runs=runs, warmup=warmup, peak_rss_mb=300.0)  # fmt: skip

    return gpu_report, adapter


@pytest.mark.parametrize("software", [True, False], ids=["software-adapter", "hardware-adapter"])
def test_device_gpu_rows_by_adapter_kind(software, tmp_path, monkeypatch):
    """What the accelerator says becomes rows: fewer runs and apart on a software adapter, a GPU figure on hardware."""
    from benchmarks import exporters, run

    calls: list = []
    fake, adapter = _fake_report(software, calls)
    monkeypatch.setattr(exporters, "export", _fast_export)
    monkeypatch.setattr("benchmarks.gpu_probe.probe_gpu", lambda: {"available": True, "adapter": adapter, "software": software})
    monkeypatch.setattr("inference.gpu.gpu_report", fake)
    assert run.main(GPU_ARGV + ["--out", str(tmp_path)], model_overrides=TINY) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    ok, naive = rows
    assert [c[1:] for c in calls] == ([(1, 3)] * 2 if software else [(3, 30)] * 2)
    assert ok["status"] == "ok" and ok["gpu_adapter"] == adapter and ok["gpu_software"] is software
    assert ok["argmax_agreement_vs_cpu"] == 99.5 and ok["latency_ms_p50"] == 20.0
    assert naive["status"] == "unavailable" and "not every op" in naive["reason"] and naive["latency_ms_p50"] is None
    text = (tmp_path / "results.md").read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    if software:
        assert ok["note"] == "software GPU (llvmpipe): correctness only; 3 timed runs"
        assert ok["achieved_macs_per_s"] is None
        assert "## software GPU: correctness only" in text and "## GPU" not in text
        assert "NOT GPU speed" in text and "(software: a CPU emulating a GPU" in text
    else:
        assert ok["note"] is None and ok["achieved_macs_per_s"] > 0
        assert "## GPU (LiteRT GPU accelerator)" in text and "## software GPU" not in text
    assert not any("latency_ratio" in r for r in summary if r.get("gpu_software"))
    assert "latency_threads.png" not in {p.name for p in tmp_path.iterdir()}  # threads: CPU rows only


def test_device_gpu_without_accelerator_gives_unavailable_rows(tmp_path, monkeypatch, capsys):
    from benchmarks import exporters, run

    monkeypatch.setattr(exporters, "export", _fast_export)
    monkeypatch.setattr("benchmarks.gpu_probe.probe_gpu",
                        lambda: {"available": False, "reason": "no adapters found", "adapter": None, "software": None})
    monkeypatch.setattr("inference.gpu.gpu_report", lambda *a, **k: pytest.fail("no accelerator: nothing to run"))
    out, rows_file = tmp_path / "out", tmp_path / "rows.json"
    status = run.main(GPU_ARGV + ["--out", str(out), "--json", str(rows_file)], model_overrides=TINY)
    assert status == 0
    rows = json.loads(rows_file.read_text())
    assert [row["exporter"] for row in rows] == ["ksac-aware", "naive"]
    for row in rows:
        assert row["device"] == "gpu" and row["status"] == "unavailable"
        assert row["reason"] == "GPU accelerator: no adapters found"
        assert row["latency_ms_p50"] is None and row["bytes"] > 0 and row["params"] > 0
        assert row["gpu_adapter"] is None and row["gpu_software"] is None and row["note"] is None
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


def test_quick_defaults(tmp_path):
    from benchmarks.run import resolve_args

    args = resolve_args(["--quick", "--out", str(tmp_path / "never-written")])  # (--out must be writable)
    assert args.models == ["mobilenetv2_ksac", "mobilenetv2_aspp"]
    assert args.precisions == ["fp32", "int8"] and args.input_size == 257 and args.threads == [1, 2]
    assert args.output_stride == [] and args.device == "cpu"  # []: each model's own (16; MobileNetV3's 32) and args.exporters == ["ksac-aware", "naive"]
    args = resolve_args(["--exporters", "ksac-aware", "--models", "mobilenetv2_ksac_separable", "--out", str(tmp_path / "x")])
    assert args.exporters == ["ksac-aware"] and args.models == ["mobilenetv2_ksac_separable"]


def test_failed_conversion_gives_error_rows_and_exit_1(tmp_path, monkeypatch):
    from benchmarks import exporters, run

    def failing_export(model, precision, **kwargs):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(exporters, "export", failing_export)
    monkeypatch.setattr("benchmarks.gpu_probe.probe_gpu", lambda: pytest.fail("no file converted: nothing to probe"))
    argv = ["--device", "gpu", "--models", "mobilenetv2_ksac", "--precisions", "int8", "--input-size", "65",
            "--out", str(tmp_path)]  # fmt: skip
    assert run.main(argv, model_overrides=dict(width=0.35, head_filters=16)) == 1
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 2 and all(row["status"] == "error" for row in rows)
    assert "converter exploded" in rows[0]["reason"]
