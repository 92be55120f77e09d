"""Benchmark rows: the schema, the ratios of issue 6, the Markdown table and the plots."""

import pytest

from benchmarks.report import markdown_table, plots, summary_ratios
from benchmarks.rows import FIELDS, REQUIRED_FIELDS, check_row, check_rows, new_row


def _row(**changes):
    values = dict(model="mobilenetv2_ksac", exporter="ksac-aware", precision="int8", device="cpu", threads=1,
                  input_size=257, output_stride=16, params=2_952_533, bytes=3_000_000, latency_ms_p50=10.0,
                  latency_ms_p90=12.0, status="ok", model_mem_mb=50.0)
    values.update(changes)
    return new_row(**values)


def test_new_row_has_every_required_field():
    row = new_row(model="m")
    assert set(REQUIRED_FIELDS) <= set(row)
    assert set(row) == set(FIELDS)
    assert row["latency_ms_p50"] is None


def test_new_row_rejects_unknown_field():
    with pytest.raises(ValueError, match="latency_p50"):
        new_row(latency_p50=1.0)


def test_check_row_accepts_ok_and_unavailable_rows():
    check_row(_row())
    check_row(_row(device="gpu", threads=None, status="unavailable", reason="no GPU",
                   latency_ms_p50=None, latency_ms_p90=None))
    check_row(_row(status="error", reason="conversion failed", bytes=None, latency_ms_p50=None,
                   latency_ms_p90=None))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"exporter": "fancy"}, "exporter"),
        ({"device": "tpu"}, "device"),
        ({"precision": "fp64"}, "precision"),
        ({"bytes": 0}, "bytes"),
        ({"latency_ms_p50": None}, "latency_ms_p50"),
        ({"latency_ms_p90": 5.0}, "p90"),
        ({"status": "unavailable", "reason": None}, "reason"),
    ],
)
def test_check_row_names_the_bad_field(changes, message):
    with pytest.raises(ValueError, match=message):
        check_row(_row(**changes))


def test_check_rows_names_the_row():
    with pytest.raises(ValueError, match="row 1"):
        check_rows([_row(), _row(device="tpu")])


def test_summary_ratios_pair_rows_of_the_same_run():
    rows = [
        _row(),
        _row(model="mobilenetv2_aspp", bytes=4_000_000, latency_ms_p50=10.0, latency_ms_p90=11.0),
        _row(exporter="naive", bytes=6_000_000, latency_ms_p50=20.0, latency_ms_p90=25.0),
        _row(precision="fp32", bytes=12_000_000, latency_ms_p50=30.0, latency_ms_p90=31.0),
        _row(output_stride=8, latency_ms_p50=40.0, latency_ms_p90=41.0, model_mem_mb=200.0),
    ]
    found = summary_ratios(rows)
    assert sorted(r["comparison"] for r in found) == ["fp32/int8 latency", "ksac-aware/naive", "ksac/aspp", "os8/os16"]
    ratios = {r["comparison"]: r for r in found}
    assert ratios["ksac/aspp"]["bytes_ratio"] == pytest.approx(0.75)
    assert ratios["ksac/aspp"]["latency_ratio"] == pytest.approx(1.0)
    assert ratios["ksac-aware/naive"]["bytes_ratio"] == pytest.approx(0.5)
    assert ratios["ksac-aware/naive"]["latency_ratio"] == pytest.approx(0.5)
    assert ratios["fp32/int8 latency"]["speedup"] == pytest.approx(3.0)
    assert ratios["os8/os16"]["latency_ratio"] == pytest.approx(4.0)
    assert ratios["os8/os16"]["memory_ratio"] == pytest.approx(4.0)


def test_summary_ratios_compare_separable_pyramids_with_regular_ones_and_with_each_other():
    rows = [
        _row(),
        _row(model="mobilenetv2_ksac_separable", bytes=2_000_000, latency_ms_p50=8.0),
        _row(model="mobilenetv2_aspp_separable", bytes=2_500_000, latency_ms_p50=8.0),
    ]
    found = {(r["comparison"], r["model"]): r for r in summary_ratios(rows)}
    assert sorted(found) == [("ksac/aspp", "mobilenetv2_ksac_separable"), ("separable/regular", "mobilenetv2_ksac_separable")]
    assert found["separable/regular", "mobilenetv2_ksac_separable"]["latency_ratio"] == pytest.approx(0.8)
    assert found["ksac/aspp", "mobilenetv2_ksac_separable"]["bytes_ratio"] == pytest.approx(0.8)


def test_summary_ratios_compare_pyramids_with_deeplabs_mobile_head_at_the_same_width():
    rows = [
        _row(model="mobilenetv2_deeplab", bytes=2_000_000, latency_ms_p50=8.0),
        _row(model="mobilenetv2_ksac_separable", bytes=2_500_000, latency_ms_p50=9.0),
        _row(model="mobilenetv2_deeplab@0.5", bytes=1_000_000, latency_ms_p50=4.0),
        _row(model="mobilenetv2_ksac_separable@0.5", bytes=1_500_000, latency_ms_p50=5.0),
    ]
    found = {(r["comparison"], r["model"]): r for r in summary_ratios(rows)}
    assert sorted(k for k in found if k[0] == "pyramid/deeplab") == [
        ("pyramid/deeplab", "mobilenetv2_ksac_separable"), ("pyramid/deeplab", "mobilenetv2_ksac_separable@0.5")]
    assert found["pyramid/deeplab", "mobilenetv2_ksac_separable"]["latency_ratio"] == pytest.approx(9.0 / 8.0)
    assert found["pyramid/deeplab", "mobilenetv2_ksac_separable@0.5"]["bytes_ratio"] == pytest.approx(1.5)


def test_benchmark_rows_name_widths_and_find_their_registry_model():
    from benchmarks.run import _file_name, model_label, registry_name

    assert model_label("mobilenetv2_deeplab", 1.0) == "mobilenetv2_deeplab"
    assert model_label("mobilenetv2_deeplab", 0.5) == "mobilenetv2_deeplab@0.5"
    assert registry_name("mobilenetv2_deeplab@0.5") == "mobilenetv2_deeplab"
    assert _file_name("mobilenetv2_deeplab@0.5", 16, "int8", "ksac-aware") == "mobilenetv2_deeplab_w0.5_os16_int8_ksac-aware.tflite"


def test_summary_ratios_skip_rows_that_did_not_run():
    rows = [_row(), _row(model="mobilenetv2_aspp", status="unavailable", reason="x", latency_ms_p50=None)]
    assert summary_ratios(rows) == []


def test_markdown_table_and_plots():
    rows = [_row(), _row(threads=2, latency_ms_p50=6.0, latency_ms_p90=7.0),
            _row(device="gpu", threads=None, status="unavailable", reason="no adapters", latency_ms_p50=None,
                 latency_ms_p90=None)]
    table = markdown_table(rows)
    assert table.count("\n") == 2 + len(rows)
    assert "| 3.00 |" in table  # size in MB
    assert "unavailable: no adapters" in table
    images = plots(rows)
    assert {"size.png", "latency_threads.png"} <= set(images)
    assert all(png.startswith(b"\x89PNG") for png in images.values())


def _gpu_row(software=True, **changes):
    adapter = "llvmpipe (LLVM 15.0.6, 256 bits)" if software else "NVIDIA H100 (Vulkan)"
    values = dict(device="gpu", threads=None, gpu_adapter=adapter, gpu_software=software, gpu_precision="fp16",
                  argmax_agreement_vs_cpu=99.8, latency_ms_p50=900.0, latency_ms_p90=950.0, runs=3,
                  note="software GPU (llvmpipe): correctness only; 3 timed runs" if software else None)
    values.update(changes)
    return _row(**values)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gpu_software": "yes"}, "gpu_software"),
        ({"gpu_adapter": 3}, "gpu_adapter"),
        ({"argmax_agreement_vs_cpu": 0.998 * 1000}, "argmax_agreement_vs_cpu"),
        ({"gpu_precision": "int8"}, "gpu_precision"),
        ({"device": "cpu", "threads": 1}, "cpu row"),
    ],
)
def test_check_row_validates_gpu_fields(changes, message):
    check_row(_gpu_row())
    with pytest.raises(ValueError, match=message):
        check_row(_gpu_row(**changes))


def _software_and_cpu_rows():
    return [
        _row(),
        _row(model="mobilenetv2_aspp", latency_ms_p50=11.0, latency_ms_p90=12.0),
        _gpu_row(),
        _gpu_row(model="mobilenetv2_aspp", bytes=4_000_000, latency_ms_p50=1800.0, latency_ms_p90=1900.0),
        _gpu_row(precision="fp32", latency_ms_p50=2700.0, latency_ms_p90=2800.0),
        _gpu_row(output_stride=8, latency_ms_p50=3600.0, latency_ms_p90=3700.0),
        _gpu_row(exporter="naive", status="unavailable", reason="GPU accelerator: not every op runs on the GPU",
                 latency_ms_p50=None, latency_ms_p90=None, runs=None),
    ]


def test_summary_ratios_give_no_software_gpu_latency_ratio():
    found = summary_ratios(_software_and_cpu_rows())
    cpu = [r for r in found if r["device"] == "cpu"]
    software = [r for r in found if r["device"] == "gpu"]
    assert [r["comparison"] for r in cpu] == ["ksac/aspp"] and cpu[0]["latency_ratio"] == pytest.approx(10 / 11)
    assert [r["comparison"] for r in software] == ["ksac/aspp"]  # no int8 speed-up, no os8/os16 for them
    assert software[0]["gpu_software"] is True and "correctness only" in software[0]["note"]
    assert software[0]["bytes_ratio"] == pytest.approx(0.75) and "latency_ratio" not in software[0]


def test_summary_ratios_never_pair_software_with_hardware_gpu():
    rows = [_gpu_row(), _gpu_row(software=False, model="mobilenetv2_aspp", latency_ms_p50=5.0, latency_ms_p90=6.0)]
    assert summary_ratios(rows) == []


def test_markdown_report_puts_software_gpu_rows_apart():
    from benchmarks.report import markdown_report, row_group

    rows = _software_and_cpu_rows() + [_gpu_row(software=False, latency_ms_p50=4.0, latency_ms_p90=5.0, runs=30)]
    assert [row_group(r) for r in rows] == ["cpu"] * 2 + ["software-gpu"] * 5 + ["gpu"]
    text = markdown_report(rows, summary_ratios(rows), {"command": "python benchmarks/run.py"})
    cpu_at, gpu_at = text.index("## CPU"), text.index("## GPU (LiteRT GPU accelerator)")
    software_at, ratios_at = text.index("## software GPU: correctness only"), text.index("## Ratios")
    assert cpu_at < gpu_at < software_at < ratios_at
    assert text[gpu_at:software_at].count("NVIDIA H100") == 1 and "llvmpipe" not in text[gpu_at:software_at]
    software = text[software_at:ratios_at]
    assert software.count("llvmpipe (LLVM 15.0.6, 256 bits) |") == 5 and "NOT GPU speed" in software
    assert "| 99.80 |" in software and "unavailable: GPU accelerator: not every op" in software
    assert "llvmpipe" not in text[cpu_at:gpu_at]
    assert "software GPU, correctness only: latency ratios left out" in text[ratios_at:]


def test_plots_leave_software_gpu_latencies_out():
    rows = [_gpu_row(), _gpu_row(output_stride=8, latency_ms_p50=3600.0, latency_ms_p90=3700.0)]
    assert set(plots(rows)) == {"size.png"}  # no latency plot of emulated GPU runs
    with_cpu = rows + [_row(), _row(output_stride=8, latency_ms_p50=30.0, latency_ms_p90=31.0)]
    assert {"latency_threads.png", "os_8_vs_16.png"} <= set(plots(with_cpu))
