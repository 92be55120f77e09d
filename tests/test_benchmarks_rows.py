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
