"""Every export kind on LiteRT's ARM64 kernels under qemu-user, against x86 LiteRT (inference/arm.py).

The emulated environment comes from `make arm-env` (which `make test` runs where qemu-user is installed;
.ci/system-packages installs it). Where it is missing these tests FAIL with the reason, as the GPU tests
do: a skipped check would let a file that computes differently on a phone's CPU pass.

Bounds. Integer kernels (int8 files, float or int8 I/O): bit-exact, measured 0 on every CPU model
(XNNPACK's int8 kernels are exact integer arithmetic with the same rounding on x86 and ARM). Float
kernels (fp32, fp16 files: fp16 weights are widened to fp32 at load, so both compute in fp32): sums in
another order (NEON/SVE vs AVX), measured max |logit diff| 2.1e-7 (cortex-a53, cortex-a76) and 6e-8
(max) on logits of magnitude up to about 1; the bound is 1e-5 and the arg-max 99.9% (near-ties may
flip). The label-map output (arg-max inside the file): measured 100%, bound 99.9%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from inference.arm import CPUS, ArmEnvironment, ArmEnvironmentMissing, check_files

pytestmark = pytest.mark.xdist_group("arm")  # one worker: the emulated runs use both cores themselves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(calibration_steps=4, check_parity=False)
# (model, precision, export options): every kind of file the suite exports.
KINDS = [
    ("mobilenetv2_ksac", "fp32", {}),
    ("mobilenetv2_ksac", "fp16", {}),
    ("mobilenetv2_ksac", "int8", {}),
    ("mobilenetv2_ksac", "int8", {"int8_io": True}),
    ("mobilenetv2_ksac", "fp32", {"output": "labels"}),
    ("mobilenetv2_aspp", "fp32", {}),
    ("mobilenetv2_aspp", "int8", {}),
    ("mobilenetv2_ksac_separable", "int8", {}),
]


@pytest.fixture(scope="module")
def arm_env() -> ArmEnvironment:
    try:
        return ArmEnvironment.find()
    except ArmEnvironmentMissing as error:
        pytest.fail(f"{error} (make test builds it where qemu-aarch64-static is installed)")


def _name(model: str, precision: str, options: dict) -> str:
    return "_".join([model, precision] + [f"{k}-{v}" for k, v in sorted(options.items())]) + ".tflite"


@pytest.fixture(scope="module")
def arm_reports(arm_env, make_tiny_export_model, tmp_path_factory):
    from convert.export import export_tflite

    folder = tmp_path_factory.mktemp("arm")
    models, paths = {}, []
    for model, precision, options in KINDS:
        if model not in models:
            models[model] = make_tiny_export_model(model, num_classes=5)
        path = folder / _name(model, precision, options)
        path.write_bytes(export_tflite(models[model], precision, **FAST, **options).tflite)
        paths.append(str(path))
    reports = check_files(paths, CPUS, frames=1, env=arm_env)  # one frame: the suite's time (about 1 min here)
    for report in reports:  # the agreement table of the note: `pytest -s -k every_export_kind`
        print(os.path.basename(report["file"]), {cpu: (round(c["argmax_agreement"], 3), c["max_abs_diff"], c["seconds"])
                                                 for cpu, c in report["cpus"].items()})  # fmt: skip
    return dict(zip([_name(*kind) for kind in KINDS], reports))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: _name(*k) if isinstance(k, tuple) else None)
def test_every_export_kind_computes_on_arm64_what_it_computes_here(arm_reports, kind):
    report = arm_reports[_name(*kind)]
    model, precision, options = kind
    assert list(report["cpus"]) == list(CPUS) and report["litert_arm64"] and report["frames"] == 1
    for cpu, figures in report["cpus"].items():
        assert figures["seconds_emulated"] is True and figures["seconds"] > 0
        if precision == "int8":  # integer kernels: bit for bit
            assert figures["max_abs_diff"] == 0 and figures["argmax_agreement"] == 100.0, (cpu, figures)
        elif options.get("output") == "labels":
            assert figures["argmax_agreement"] >= 99.9, (cpu, figures)
        else:
            assert figures["max_abs_diff"] < 1e-5 and figures["argmax_agreement"] >= 99.9, (cpu, figures)
    assert report["input_dtype"] == ("int8" if options.get("int8_io") else "float32")


def test_the_exporter_reports_the_arm64_check(arm_env, make_tiny_export_model):
    from convert.export import export_tflite

    report = export_tflite(make_tiny_export_model("mobilenetv2_ksac"), "int8", check_arm=True, calibration_steps=4,
                           parity_images=1).report  # fmt: skip
    assert report["arm_cpus"] == list(CPUS) and report["arm_argmax_agreement"] == 100.0 and report["arm_max_abs_diff"] == 0
    assert set(report["arm_by_cpu"]) == set(CPUS)


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "inference.arm", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))  # fmt: skip


def test_cli_errors_are_clear(tmp_path):
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("not a model")
    result = _run(str(not_a_model))
    assert result.returncode == 1 and "notes.tflite" in result.stderr and "Traceback" not in result.stderr
    result = _run(str(tmp_path / "missing.tflite"))
    assert result.returncode == 1 and "missing.tflite" in result.stderr
    result = _run(str(not_a_model), env={"KSAC_ARM_ENV": str(tmp_path / "nowhere")})
    assert result.returncode == 1 and "no emulated ARM64 environment" in result.stderr and "make arm-env" in result.stderr
    result = _run(str(not_a_model), "--cpus", "pentium")
    assert result.returncode == 2 and "unknown CPU model(s) pentium" in result.stderr


def test_cli_runs_a_file_and_writes_json(arm_env, arm_reports, tmp_path):
    path = next(r["file"] for name, r in arm_reports.items() if "int8_int8_io" in name)
    images = np.random.default_rng(0).integers(0, 256, (1, 40, 50, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    result = _run(path, "--cpus", "cortex-a53", "--images", str(tmp_path / "images.npy"), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == 1 and list(report["cpus"]) == ["cortex-a53"] and report["argmax_agreement"] == 100.0


def test_the_benchmark_table_gains_the_arm64_column(arm_env, arm_reports):
    from benchmarks.report import markdown_table
    from benchmarks.rows import new_row
    from benchmarks.run import add_arm_agreement

    path = next(r["file"] for name, r in arm_reports.items() if name == "mobilenetv2_aspp_int8.tflite")
    row = new_row(model="mobilenetv2_aspp", exporter="ksac-aware", precision="int8", device="cpu", threads=1, input_size=65,
                  output_stride=16, params=1, bytes=1, latency_ms_p50=1.0, latency_ms_p90=1.0, status="ok", file=path)  # fmt: skip
    add_arm_agreement([{"file": path}], [row])
    assert row["arm_argmax_agreement"] == 100.0 and row["arm_max_abs_diff"] == 0
    table = markdown_table([row])
    assert "ARM64 kernels (emulated): agreement (%)" in table and "100.00" in table
