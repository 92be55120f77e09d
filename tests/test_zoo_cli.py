"""`python -m zoo list` and `python -m zoo summary` as outside checks call them."""

import json
import subprocess
import sys

import pytest


def run_zoo(*args):
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, timeout=300)


def test_list_prints_names_one_a_line():
    result = run_zoo("list")
    assert result.returncode == 0
    assert result.stdout.split() == ["mobilenetv2_aspp", "mobilenetv2_aspp_separable", "mobilenetv2_deeplab", "mobilenetv2_ksac",
                                     "mobilenetv2_ksac_separable", "mobilenetv3_large_ksac_separable", "mobilenetv3_large_lraspp",
                                     "mobilenetv3_small_ksac_separable", "mobilenetv3_small_lraspp", "xception65_aspp", "xception65_aspp_separable",
                                     "xception65_ksac", "xception65_ksac_separable"]  # fmt: skip


@pytest.mark.slow  # two full-size models in a subprocess that loads TensorFlow
def test_summary_json_keys_and_values():
    result = run_zoo("summary", "mobilenetv2_ksac", "mobilenetv2_aspp", "--json", "--input-size", "257")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["mobilenetv2_ksac", "mobilenetv2_aspp"]
    for row in rows:
        assert set(row) >= {"name", "params", "head_params", "macs", "input_size", "output_stride"}
        assert row["input_size"] == 257 and row["output_stride"] == 16 and row["macs"] > 0
    assert rows[0]["params"] == 2_952_533 and rows[1]["params"] == 4_558_165


@pytest.mark.slow  # three subprocesses that load TensorFlow
def test_summary_rates_and_errors():
    wide = json.loads(run_zoo("summary", "mobilenetv2_ksac", "--json", "--rates", "1,6,12,18,24", "--input-size", "129").stdout)
    assert wide[0]["params"] == 2_952_533 + 2 * 4 * 256
    bad = run_zoo("summary", "nope_ksac")
    assert bad.returncode != 0 and "mobilenetv2_ksac" in bad.stderr
    bad_rates = run_zoo("summary", "mobilenetv2_ksac", "--rates", "6,x")
    assert bad_rates.returncode != 0 and "6,x" in bad_rates.stderr
