"""Every export kind on LiteRT's ARM64 kernels under qemu-user, against x86 LiteRT (inference/arm.py).

The emulated environment comes from `make arm-env` (which `make test` runs first where qemu-user is
installed; .ci/system-packages installs it). Where it is missing these tests FAIL with the reason (the
failed build's own, recorded in the folder), as the GPU tests do: a skipped check would let a file that
computes differently on a phone's CPU pass. The error paths (exit codes, a worker that hangs or prints
nothing, the Makefile when the build fails) run without it, on a stand-in qemu and environment.

Bounds. Integer kernels (int8 files, float or int8 I/O): bit-exact, measured 0 on every CPU model
(XNNPACK's int8 kernels are exact integer arithmetic with the same rounding on x86 and ARM). Float
kernels (fp32, fp16 files: fp16 weights are widened to fp32 at load, so both compute in fp32): sums in
another order (NEON/SVE vs AVX), measured max |logit diff| 2.1e-7 (cortex-a53, cortex-a76) and 6e-8
(max) on logits of magnitude up to about 1; the bound is 1e-5 and the arg-max 99.9% (near-ties may
flip). The label-map output (arg-max inside the file): measured 100%, bound 99.9%.

Inputs: one image of the synthetic dataset. The tiny models with random BatchNorm statistics predict
nearly one class over it, so their agreement says little about the arg-max; the `multiclass` files (BatchNorm
statistics of synthetic images, `make_image_sensitive_model`) predict several classes, asserted of the
x86 reference map, and are held to the same bounds.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from inference.arm import CPUS, ArmEnvironment, ArmEnvironmentMissing, ArmRunError, check_files, preprocessed_images

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
    ("mobilenetv3_large_ksac_separable", "int8", {}),  # hard swish as ADD/MUL/MUL, squeeze-and-excitation, 5x5 depthwise
]
# Files of a model whose arg-max map has several classes (see the module docstring).
MULTICLASS = [("mobilenetv2_ksac", "fp32", {}), ("mobilenetv2_ksac", "int8", {})]
MIN_CLASSES, MIN_SHARE = 3, 0.05  # at least 3 classes each on 5% of the pixels of the reference map


def _synthetic_image() -> np.ndarray:
    from data.datasets import open_dataset

    return open_dataset("synthetic", "val").load(0)[0][None]


@pytest.fixture(scope="module")
def arm_env() -> ArmEnvironment:
    try:
        return ArmEnvironment.find()
    except ArmEnvironmentMissing as error:
        pytest.fail(f"{error} (make test builds it where qemu-aarch64-static is installed)")


def _name(model: str, precision: str, options: dict) -> str:
    return "_".join([model, precision] + [f"{k}-{v}" for k, v in sorted(options.items())]) + ".tflite"


@pytest.fixture(scope="module")
def arm_reports(arm_env, make_tiny_export_model, make_image_sensitive_model, tmp_path_factory):
    from convert.export import export_tflite

    folder = tmp_path_factory.mktemp("arm")
    models, paths = {}, []
    for model, precision, options in KINDS:
        if model not in models:
            models[model] = make_tiny_export_model(model, num_classes=5)
        path = folder / _name(model, precision, options)
        path.write_bytes(export_tflite(models[model], precision, **FAST, **options).tflite)
        paths.append(str(path))
    multiclass = make_image_sensitive_model("mobilenetv2_ksac")
    for kind in MULTICLASS:
        path = folder / ("multiclass_" + _name(*kind))
        path.write_bytes(export_tflite(multiclass, kind[1], **FAST, **kind[2]).tflite)
        paths.append(str(path))
    # One frame, one emulated process per CPU model for every file: the suite's time (about 1 min here).
    reports = check_files(paths, CPUS, images=_synthetic_image(), env=arm_env)
    for report in reports:  # the agreement table of the note: `pytest -s -k every_export_kind`
        print(os.path.basename(report["file"]), {cpu: (round(c["argmax_agreement"], 3), c["max_abs_diff"], c["seconds"])
                                                 for cpu, c in report["cpus"].items()})  # fmt: skip
    return {os.path.basename(report["file"]): report for report in reports}


def _assert_bounds(report: dict, precision: str, options: dict) -> None:
    for cpu, figures in report["cpus"].items():
        assert figures["seconds_emulated"] is True and figures["seconds"] > 0
        if precision == "int8":  # integer kernels: bit for bit
            assert figures["max_abs_diff"] == 0 and figures["argmax_agreement"] == 100.0, (cpu, figures)
        elif options.get("output") == "labels":
            assert figures["argmax_agreement"] >= 99.9, (cpu, figures)
        else:
            assert figures["max_abs_diff"] < 1e-5 and figures["argmax_agreement"] >= 99.9, (cpu, figures)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: _name(*k) if isinstance(k, tuple) else None)
def test_every_export_kind_computes_on_arm64_what_it_computes_here(arm_reports, kind):
    report = arm_reports[_name(*kind)]
    model, precision, options = kind
    assert list(report["cpus"]) == list(CPUS) and report["litert_arm64"] and report["frames"] == 1
    _assert_bounds(report, precision, options)
    assert report["input_dtype"] == ("int8" if options.get("int8_io") else "float32")


@pytest.mark.parametrize("kind", MULTICLASS, ids=lambda k: "multiclass_" + _name(*k) if isinstance(k, tuple) else None)
def test_a_map_of_several_classes_is_the_same_on_arm64(arm_reports, kind):
    from inference.description import read_description
    from inference.runtime import TFLiteModel

    report = arm_reports["multiclass_" + _name(*kind)]
    model = TFLiteModel(report["file"])
    inputs = preprocessed_images(model, read_description(report["file"]), _synthetic_image())
    labels = model.run(inputs[:1])[0].argmax(-1)  # x86 LiteRT: the reference of the comparison
    shares = np.bincount(labels.ravel()) / labels.size
    assert np.sum(shares >= MIN_SHARE) >= MIN_CLASSES, f"the reference map is nearly one class: shares {np.round(shares, 3)}"
    assert list(report["cpus"]) == list(CPUS) and report["frames"] == 1
    _assert_bounds(report, kind[1], kind[2])


def test_the_exporter_reports_the_arm64_check(arm_env, make_tiny_export_model):
    from convert.export import export_tflite

    report = export_tflite(make_tiny_export_model("mobilenetv2_ksac"), "int8", check_arm=True, calibration_steps=4,
                           parity_images=1).report  # fmt: skip
    assert report["arm_cpus"] == list(CPUS) and report["arm_argmax_agreement"] == 100.0 and report["arm_max_abs_diff"] == 0
    assert set(report["arm_by_cpu"]) == set(CPUS)


def _run(*args, env=None, module=("-m", "inference.arm")):
    return subprocess.run([sys.executable, *module, *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))  # fmt: skip


FAKE_QEMU = """#!/bin/sh
# A stand-in for qemu-aarch64-static: --version as $FAKE_QEMU_VERSION; a run as $FAKE_QEMU_RUN says.
if [ "$1" = "--version" ]; then echo "qemu-aarch64 version ${FAKE_QEMU_VERSION:-10.0.2}"; exit 0; fi
case "${FAKE_QEMU_RUN:-silent}" in
  hang) exec sleep 60 ;;
  crash) echo "qemu: uncaught target signal 11 (Segmentation fault) - core dumped" >&2; exit 139 ;;
  *) exit 0 ;;
esac
"""


@pytest.fixture
def fake_arm(tmp_path, one_conv_tflite, make_description) -> dict:
    """A stand-in qemu (first on PATH) and a complete-looking environment that runs nothing, and a
    one-convolution file of this project: for the error paths, without `make arm-env`."""
    from convert.tflite_file import add_metadata

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-aarch64-static"
    qemu.write_text(FAKE_QEMU)
    qemu.chmod(qemu.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env_dir = tmp_path / "arm-env"
    (env_dir / "root" / "usr" / "bin").mkdir(parents=True)
    (env_dir / "root" / "usr" / "bin" / "python3.11").write_text("")
    (env_dir / "site" / "ai_edge_litert").mkdir(parents=True)
    (env_dir / "manifest.json").write_text(json.dumps({"interpreter": "usr/bin/python3.11", "litert": "fake"}))
    model = tmp_path / "one_conv.tflite"
    model.write_bytes(add_metadata(one_conv_tflite, make_description()))
    return {"qemu": str(qemu), "folder": env_dir, "model": str(model),
            "env": {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "KSAC_ARM_ENV": str(env_dir)}}  # fmt: skip


def test_cli_errors_are_clear(tmp_path, fake_arm):
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("not a model")
    env = fake_arm["env"]
    result = _run(str(not_a_model), env=env)
    assert result.returncode == 2 and "notes.tflite" in result.stderr and "Traceback" not in result.stderr
    result = _run(str(tmp_path / "missing.tflite"), env=env)
    assert result.returncode == 2 and "missing.tflite" in result.stderr
    result = _run(str(not_a_model), env={**env, "KSAC_ARM_ENV": str(tmp_path / "nowhere")})
    assert result.returncode == 2 and "no emulated ARM64 environment" in result.stderr and "make arm-env" in result.stderr
    result = _run(str(not_a_model), "--cpus", "pentium", env=env)
    assert result.returncode == 2 and "unknown CPU model(s) pentium" in result.stderr


def test_a_missing_environment_or_old_qemu_is_exit_2_before_any_work(tmp_path, fake_arm):
    """Exit 2 (the environment is wrong), found before the model is read: a garbage model is not reported."""
    garbage = tmp_path / "garbage.keras"
    garbage.write_text("not a model")
    nowhere = {"KSAC_ARM_ENV": str(tmp_path / "nowhere")}
    result = _run(str(garbage), env=nowhere)
    assert result.returncode == 2 and "no emulated ARM64 environment" in result.stderr and "garbage" not in result.stderr
    result = _run(str(garbage), env={**fake_arm["env"], "FAKE_QEMU_VERSION": "7.2.0"})
    assert result.returncode == 2 and "qemu-aarch64 version 7.2.0" in result.stderr and "10.0 or newer" in result.stderr
    result = _run("--model", str(garbage), "--int8", "--check-arm", env=nowhere, module=("convert/to_tflite.py",))
    assert result.returncode == 2, result.stderr
    assert "--check-arm: no emulated ARM64 environment" in result.stderr and "cannot export" not in result.stderr
    result = _run("--check-arm", "--out", str(tmp_path / "bench"), env=nowhere, module=("benchmarks/run.py",))
    assert result.returncode == 2 and "--check-arm: no emulated ARM64 environment" in result.stderr, result.stderr


def test_the_missing_environment_names_the_failed_build(tmp_path, fake_arm, monkeypatch):
    monkeypatch.setenv("PATH", fake_arm["env"]["PATH"])  # qemu 10 (the stand-in), whatever this machine has
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "build-error.txt").write_text("dpkg has no arm64 architecture: run `dpkg --add-architecture arm64`\n")
    with pytest.raises(ArmEnvironmentMissing, match="The last build of .* failed: dpkg has no arm64 architecture"):
        ArmEnvironment.find(folder)
    manifest = json.loads((fake_arm["folder"] / "manifest.json").read_text())
    assert ArmEnvironment.find(fake_arm["folder"]).python == fake_arm["folder"] / "root" / manifest["interpreter"]


@pytest.mark.parametrize("run, message", [
    ("hang", "ARM64 LiteRT on emulated cortex-a53 (one_conv.tflite): no result after 1 s (timeout); the worker was killed"),
    ("silent", "ARM64 LiteRT on emulated cortex-a53 (one_conv.tflite): the worker exited 0 but printed nothing"),
    ("crash", "ARM64 LiteRT on emulated cortex-a53 (one_conv.tflite) failed (exit 139): qemu: uncaught target signal 11"),
])  # fmt: skip
def test_a_worker_that_hangs_crashes_or_prints_nothing_is_one_clear_error(fake_arm, monkeypatch, run, message):
    monkeypatch.setenv("FAKE_QEMU_RUN", run)
    root = fake_arm["folder"] / "root"
    env = ArmEnvironment(qemu=fake_arm["qemu"], root=root, site=fake_arm["folder"] / "site", python=root / "usr/bin/python3.11")
    with pytest.raises(ArmRunError) as error:
        env.run("cortex-a53", [(fake_arm["model"], np.zeros((1, 9, 9, 3), np.float32))], timeout=1)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    result = _run(fake_arm["model"], "--cpus", "cortex-a53", "--timeout", "1", env={**fake_arm["env"], "FAKE_QEMU_RUN": run})
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and errors == [f"error: {error.value}"] and "Traceback" not in result.stderr, result.stderr


def test_make_test_runs_the_suite_when_the_arm64_build_fails(tmp_path):
    """qemu 7.2 first on PATH: `make arm-env` fails, `make test` still runs TESTS, which read why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qemu = bin_dir / "qemu-aarch64-static"
    qemu.write_text("#!/bin/sh\necho 'qemu-aarch64 version 7.2.0'\n")
    qemu.chmod(0o755)
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from inference.arm import ArmEnvironment, ArmEnvironmentMissing\n"
        "import pytest\n\n"
        "def test_the_environment_is_missing_with_the_reason():\n"
        "    with pytest.raises(ArmEnvironmentMissing, match=\"is 'qemu-aarch64 version 7.2.0': LiteRT needs\"):\n"
        "        ArmEnvironment.find()\n\n"
        "def test_another():\n"
        "    pass\n"
    )  # fmt: skip
    # Stamps newer than what they depend on: the virtualenvs and npm packages as they are, not rebuilt here.
    stamps = {name: tmp_path / name for name in ("STAMP", "MP_STAMP", "WEB_NPM_STAMP")}
    for path in stamps.values():
        path.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "KSAC_ARM_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    arm_env = tmp_path / "arm-env"
    result = subprocess.run(["make", "--no-print-directory", "test", f"TESTS={probe}", f"ARM_ENV={arm_env}",
                             *(f"{name}={path}" for name, path in stamps.items())],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "2 passed" in output, output
    assert "qemu-aarch64 version 7.2.0" in (arm_env / "build-error.txt").read_text()
    assert "make test: no ARM64 environment" in output


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
