"""The installed runtime against the toolkit: `ksac-segment` from the ksac-runtime wheel, in a fresh virtualenv
here and under ARM64 emulation, on the same files and images as `evaluation/predict.py`.

    python -m benchmarks.runtime_check --wheel dist/ksac_runtime-0.1.0-py3-none-any.whl [--arm] [--json [FILE]]

Makes two files of a tiny `mobilenetv2_ksac` (fp32 and int8, input 65, BatchNorm statistics of synthetic
images so that its label maps hold several classes) and the test images (`TEST_IMAGES`: synthetic images
cut to four sizes, square, landscape, portrait and smaller than the input), and the toolkit's labels of
each (`evaluation.predict.predict_image`). Then:

- here (x86): a fresh virtualenv with nothing but the wheel and its requirements (LiteRT pinned to this
  environment's version, so that only the code differs), TensorFlow asserted absent; `ksac-segment` there
  must give the toolkit's labels exactly, fp32 and int8. Also the wheel's name, bytes, requirements and
  top-level names, and the installed size of the runtime, the toolkit and MediaPipe (`.venv-mediapipe`).
- with `--arm`: the wheel and the aarch64 wheels of its requirements installed into the emulated ARM64
  environment (`make arm-env`; `inference.arm_env.install_wheel`), `ksac-segment` run there under qemu-user
  on each CPU model of `--cpus`: int8 labels must equal the toolkit's exactly, fp32 labels agree on at
  least 99.9% of the pixels (the bound `inference.arm` holds float kernels to).

`make arm-runtime-check` runs `--arm --no-venv`; tests/test_runtime_wheel.py runs the x86 part.

Exit status: 0 every check holds; 2 no wheel, no ARM64 environment, an unreadable file (before any work);
1 a check fails or an install or a run fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import zoo  # noqa: F401  first: imports TensorFlow without its C++ start-up lines (zoo/quiet_startup.py)
from common.cli import USER_ERROR, UserError, add_json_flag, check_json_path, fail, stdout_kept_for_json, write_json

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "int8")
# (synthetic val image, rows, columns): square, landscape, portrait, and smaller than the 65x65 input.
TEST_IMAGES = ((0, None, None), (1, 160, None), (2, 200, 120), (3, 40, 50))
TINY_INPUT = 65
# Float kernels on ARM64 sum in another order: near-ties may flip (inference.arm's bound for label maps).
FLOAT_MIN_AGREEMENT = 99.9
RUN_TIMEOUT_S = 900


class CheckFailed(RuntimeError):
    """A check of the installed runtime did not hold (the message names it): exit 1."""


# ---------------------------------------------------------------- the files, the images, the toolkit's labels


def image_sensitive_model(input_size: int = TINY_INPUT, seed: int = 0) -> Any:
    """A tiny untrained mobilenetv2_ksac (width 0.35, 16 head filters) whose BatchNorm statistics are those
    of 8 synthetic train images: its label maps hold several classes, where fresh statistics give one."""
    import tf_keras as keras

    from benchmarks.realistic_weights import batchnorm_from_batch
    from data.datasets import open_dataset
    from data.transforms import eval_inputs
    from zoo import build_model, describe

    keras.utils.set_random_seed(seed)
    model = build_model("mobilenetv2_ksac", input_size=input_size, width=0.35, head_filters=16)
    description = describe(model)
    train = open_dataset("synthetic", "train")
    batch = [eval_inputs(train.load(i)[0], None, description.input_size, description.normalization)[0] for i in range(8)]
    batchnorm_from_batch(model, np.stack(batch))
    return model


def write_test_images(folder: str | os.PathLike[str]) -> list[str]:
    """The test images (`TEST_IMAGES`) as PNG files in `folder`; their paths."""
    from data.datasets import open_dataset
    from ksac_runtime.images import encode_png

    val = open_dataset("synthetic", "val")
    paths = []
    for index, rows, columns in TEST_IMAGES:
        image = val.load(index)[0][:rows, :columns]
        path = os.path.join(folder, f"synthetic{index}_{image.shape[1]}x{image.shape[0]}.png")
        Path(path).write_bytes(encode_png(image))
        paths.append(path)
    return paths


def make_test_files(folder: str | os.PathLike[str], calibration_steps: int = 8, log: Callable[[str], None] = print) -> tuple[dict[str, str], list[str]]:
    """({precision: .tflite path}, image paths) in `folder`: the tiny model in fp32 and int8, and the test images."""
    from convert.export import export_tflite

    os.makedirs(folder, exist_ok=True)
    model = image_sensitive_model()
    files = {}
    for precision in PRECISIONS:
        log(f"exporting the tiny mobilenetv2_ksac to {precision} ...")
        path = os.path.join(folder, f"tiny_ksac_{precision}.tflite")
        Path(path).write_bytes(export_tflite(model, precision, calibration_steps=calibration_steps, check_parity=False).tflite)
        files[precision] = path
    return files, write_test_images(folder)


def toolkit_labels(files: dict[str, str], images: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """{precision: {image path: labels}}: what the toolkit's `evaluation/predict.py` computes (LiteRT here)."""
    from data.datasets import read_image
    from evaluation.predict import predict_image
    from evaluation.predictors import TFLitePredictor

    out = {}
    for precision, path in files.items():
        predictor = TFLitePredictor(path, threads=1)
        out[precision] = {image: predict_image(predictor, read_image(image)) for image in images}
    return out


def compare(reference: dict[str, np.ndarray], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The label PNGs `ksac-segment` wrote to `out_dir` against `reference` ({image path: labels}): the
    percent of equal pixels over all images, whether every map is identical, and the number of pixels."""
    from ksac_runtime.images import read_labels_png

    equal = total = 0
    identical = True
    for image, labels in reference.items():
        theirs = read_labels_png(os.path.join(out_dir, Path(image).stem + "_labels.png"))
        if theirs.shape != labels.shape:
            raise CheckFailed(f"{image}: ksac-segment's labels are {theirs.shape}, the toolkit's {labels.shape}")
        equal += int(np.sum(theirs == labels))
        total += labels.size
        identical &= bool(np.array_equal(theirs, labels))
    return {"agreement": round(100.0 * equal / max(total, 1), 4), "identical": identical, "pixels": total}


def shown_classes(report: dict[str, Any]) -> int:
    """How many classes the label maps of a `ksac-segment --json` report hold (the check means little with one)."""
    return len({name for entry in report["images"] for name in entry["classes"]})


# ---------------------------------------------------------------- the wheel and installed sizes


def wheel_facts(wheel: str | os.PathLike[str]) -> dict[str, Any]:
    """The wheel's file name, bytes, requirements (Requires-Dist) and the top-level names it installs."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        scripts = archive.read(entry_points).decode() if entry_points else ""
    top_level = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))})
    return {"wheel": os.path.basename(wheel), "bytes": os.path.getsize(wheel),
            "version": next(line.split(": ", 1)[1] for line in lines if line.startswith("Version: ")),
            "requires": [line.split(": ", 1)[1] for line in lines if line.startswith("Requires-Dist: ")],
            "requires_python": next((line.split(": ", 1)[1] for line in lines if line.startswith("Requires-Python: ")), None),
            "top_level": top_level,
            "scripts": [line.split("=")[0].strip() for line in scripts.splitlines() if "=" in line]}  # fmt: skip


# Run by the Python of the environment measured: the bytes of a distribution and everything it requires
# (its RECORD files, extras left out), as pip installed them.
_SIZE_SCRIPT = r"""
import json, re, sys
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

installed = {norm(d.metadata["Name"]): d for d in metadata.distributions()}
seen, todo = set(), [norm(sys.argv[1])]
while todo:
    name = todo.pop()
    if name in seen or name not in installed:
        continue
    seen.add(name)
    for requirement in installed[name].requires or []:
        if re.search(r"extra\s*==", requirement):
            continue
        todo.append(norm(re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]))
sizes = {}
for name in sorted(seen):
    sizes[name] = 0
    for file in installed[name].files or []:
        try:
            sizes[name] += file.locate().stat().st_size
        except OSError:
            pass
print(json.dumps({"bytes": sum(sizes.values()), "distributions": dict(sorted(sizes.items(), key=lambda kv: -kv[1]))}))
"""


def installed_size(python: str | os.PathLike[str], distribution: str) -> dict[str, Any]:
    """{"bytes": total, "distributions": {name: bytes}, largest first}: what `distribution` and its requirements
    occupy in `python`'s environment."""
    done = subprocess.run([os.fspath(python), "-c", _SIZE_SCRIPT, distribution], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise CheckFailed(f"measuring {distribution} in {python} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def toolkit_code_bytes() -> int:
    """The toolkit's own packages in this checkout (an editable install leaves them out of its RECORD)."""
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    total = 0
    for pattern in include:
        for path in (REPO / pattern.rstrip("*")).rglob("*") if (REPO / pattern.rstrip("*")).is_dir() else ():
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json", ".yaml"):
                total += path.stat().st_size
    return total


def sizes(runtime_python: str | os.PathLike[str]) -> dict[str, Any]:
    """Installed bytes of the runtime (in `runtime_python`'s environment), the toolkit (this one) and MediaPipe."""
    out = {"ksac-runtime": installed_size(runtime_python, "ksac-runtime")}
    toolkit = installed_size(sys.executable, "ksac-edge-zoo")
    toolkit["bytes"] += toolkit_code_bytes()
    out["ksac-edge-zoo"] = toolkit
    from benchmarks.mediapipe_check import mediapipe_python

    try:
        out["mediapipe"] = installed_size(mediapipe_python(), "mediapipe")
    except FileNotFoundError as error:
        out["mediapipe"] = {"bytes": None, "reason": str(error)}
    return out


# ---------------------------------------------------------------- a fresh virtualenv here


def litert_version() -> str:
    """The ai-edge-litert of this environment (the fresh one gets the same: only our code differs)."""
    from importlib.metadata import version

    return version("ai-edge-litert")


def fresh_venv(folder: str | os.PathLike[str], wheel: str | os.PathLike[str], log: Callable[[str], None] = print) -> Path:
    """A new virtualenv in `folder` with the wheel and its requirements from the package index (ai-edge-litert
    pinned to this environment's version); its Python.

    Raises:
        CheckFailed: the virtualenv or the install failed (the message ends with pip's last lines).
    """
    folder = Path(folder)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "venv", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise CheckFailed(f"python -m venv {folder} failed: {done.stderr.strip()[-500:]}")
    python = folder / "bin" / "python"
    constraints = folder / "constraints.txt"
    constraints.write_text(f"ai-edge-litert=={litert_version()}\n")
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints), os.fspath(wheel)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise CheckFailed(f"installing {os.path.basename(wheel)} into a fresh virtualenv failed: {(done.stderr or done.stdout).strip()[-1500:]}")
    log(f"fresh virtualenv {folder}: {os.path.basename(wheel)} and its requirements installed in {time.perf_counter() - started:.0f} s")
    return python


def has_module(python: str | os.PathLike[str], module: str) -> bool:
    """Whether `module` can be imported by `python` (found, not imported)."""
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 3)"
    return subprocess.run([os.fspath(python), "-c", code], capture_output=True).returncode == 0


def run_segment(command: Sequence[str], model: str, images: Sequence[str], out: str | os.PathLike[str], *,
                cwd: str | os.PathLike[str] | None = None, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:  # fmt: skip
    """Runs `command` (the ksac-segment of an environment, as a list) on `images` with `--json -`; its report.

    Raises:
        CheckFailed: it exited non-zero or printed no JSON (its exit status and last stderr lines).
    """
    argv = [*command, "--model", os.path.abspath(model), "--out", os.fspath(out), "--threads", "1", *map(os.path.abspath, images), "--json", "-"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"ksac-segment on {os.path.basename(model)}: no result after {timeout:g} s") from None
    if done.returncode != 0:
        raise CheckFailed(f"ksac-segment on {os.path.basename(model)} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise CheckFailed(f"ksac-segment on {os.path.basename(model)} printed no JSON report: {done.stdout[-500:]!r}") from None


def check_here(wheel: str, files: dict[str, str], images: Sequence[str], reference: dict[str, dict[str, np.ndarray]],
               folder: Path, log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """The x86 check in a fresh virtualenv; its report (figures and the agreement per precision)."""
    python = fresh_venv(folder / "venv", wheel, log)
    report: dict[str, Any] = {"tensorflow_installed": has_module(python, "tensorflow"), "precisions": {}}
    if report["tensorflow_installed"]:
        raise CheckFailed(f"TensorFlow is importable in the runtime's fresh virtualenv {folder / 'venv'}")
    for precision, model in files.items():
        out = folder / f"x86_{precision}"
        segment = run_segment([str(python.parent / "ksac-segment")], model, images, out, cwd=folder)
        report["precisions"][precision] = dict(compare(reference[precision], out), classes=shown_classes(segment),
                                               ms=[entry["ms"]["total"] for entry in segment["images"]])  # fmt: skip
    report["sizes"] = sizes(python)
    report["litert"] = litert_version()
    for precision, figures in report["precisions"].items():
        if not figures["identical"]:
            raise CheckFailed(f"x86 {precision}: ksac-segment's labels differ from the toolkit's ({figures['agreement']}% equal)")
    return report


# ---------------------------------------------------------------- ARM64 under emulation


def check_arm(wheel: str, files: dict[str, str], images: Sequence[str], reference: dict[str, dict[str, np.ndarray]],
              folder: Path, cpus: Sequence[str], log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """The ARM64 check: the wheel installed into the emulated environment, ksac-segment on each CPU model."""
    from inference.arm import ArmEnvironment
    from inference.arm_env import install_wheel

    env = ArmEnvironment.find()
    site = install_wheel(Path(wheel), env.root.parent, constraints=[f"ai-edge-litert=={litert_version()}"], log=log)
    env = dataclasses.replace(env, site=site)  # the wheel's folder alone: no package of the LiteRT build's
    report: dict[str, Any] = {"cpus": {}, "installed": sorted(p.name for p in site.iterdir() if p.name.endswith(".dist-info"))}
    for cpu in cpus:
        for precision, model in files.items():
            log(f"ksac-segment on emulated ARM64 {cpu}, {precision} ...")
            out = folder / f"arm64_{cpu}_{precision}"
            started = time.perf_counter()
            segment = run_segment(env.command(cpu, str(site / "bin" / "ksac-segment")), model, images, out, cwd=folder)
            figures = dict(compare(reference[precision], out), classes=shown_classes(segment),
                           seconds_emulated=round(time.perf_counter() - started, 1))  # fmt: skip
            report["cpus"].setdefault(cpu, {})[precision] = figures
            exact = precision == "int8"
            if (exact and not figures["identical"]) or figures["agreement"] < FLOAT_MIN_AGREEMENT:
                wanted = "equal" if exact else f"agree on at least {FLOAT_MIN_AGREEMENT}% of the pixels"
                raise CheckFailed(f"ARM64 {cpu} {precision}: ksac-segment's labels must {wanted} the toolkit's; "
                                  f"{figures['agreement']}% equal")  # fmt: skip
    return report


# ---------------------------------------------------------------- the command


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from inference.arm import CPUS

    p = argparse.ArgumentParser(prog="python -m benchmarks.runtime_check", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--wheel", required=True, help="the ksac-runtime wheel (`make runtime-wheel` builds it into dist/)")
    p.add_argument("--arm", action="store_true", help="also install it into the emulated ARM64 environment (make arm-env) and run ksac-segment there")
    p.add_argument("--no-venv", action="store_true", help="skip the fresh x86 virtualenv (with --arm: the ARM64 check alone)")
    p.add_argument("--cpus", default=",".join(CPUS), help=f"emulated CPU models for --arm, comma-separated (default {','.join(CPUS)})")
    p.add_argument("--out", help="keep the files, images, virtualenv and outputs in this folder (default: a temporary one)")
    add_json_flag(p, "the report")
    args = p.parse_args(argv)
    args.cpus = [c for c in args.cpus.split(",") if c]
    if bad := [c for c in args.cpus if c not in CPUS]:
        p.error(f"unknown CPU model(s) {', '.join(bad)}; valid: {', '.join(CPUS)}")
    if args.no_venv and not args.arm:
        p.error("--no-venv leaves nothing to check without --arm")
    return args


def print_report(report: dict[str, Any]) -> None:
    wheel = report["wheel"]
    print(f"wheel {wheel['wheel']}: {wheel['bytes']:,} bytes; requires {', '.join(wheel['requires'])}; "
          f"installs {', '.join(wheel['top_level'])} and the command(s) {', '.join(wheel['scripts'])}")  # fmt: skip
    here = report.get("x86")
    if here:
        for name, size in here["sizes"].items():
            if not size.get("bytes"):
                print(f"installed size, {name}: {size.get('reason')}")
                continue
            largest = ", ".join(f"{d} {b / 1e6:,.1f}" for d, b in list(size["distributions"].items())[:4])
            print(f"installed size, {name}: {size['bytes'] / 1e6:,.1f} MB in {len(size['distributions'])} distributions "
                  f"(largest, MB: {largest})")  # fmt: skip
        for precision, figures in here["precisions"].items():
            print(f"x86 fresh virtualenv, {precision}: {figures['agreement']}% of {figures['pixels']:,} pixels equal to the toolkit's "
                  f"(identical: {figures['identical']}; {figures['classes']} classes shown)")  # fmt: skip
    arm = report.get("arm64")
    if arm:
        for cpu, by_precision in arm["cpus"].items():
            for precision, figures in by_precision.items():
                print(f"ARM64 {cpu} (emulated), {precision}: {figures['agreement']}% equal to the toolkit's "
                      f"(identical: {figures['identical']}; {figures['seconds_emulated']} s emulated)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with stdout_kept_for_json(args.json) as stdout:
        try:
            check_json_path(args.json)
            if not os.path.isfile(args.wheel):
                raise FileNotFoundError(f"wheel not found: {args.wheel} (`make runtime-wheel` builds it)")
            wheel = wheel_facts(args.wheel)
            if args.arm:
                from inference.arm import ArmEnvironment

                ArmEnvironment.find()  # ArmEnvironmentMissing before any work
        except (ValueError, OSError, zipfile.BadZipFile, StopIteration) as error:
            return fail(error if not isinstance(error, StopIteration) else UserError(f"{args.wheel} is not a wheel"))
        except RuntimeError as error:  # ArmEnvironmentMissing
            return fail(error, USER_ERROR)
        with tempfile.TemporaryDirectory(prefix="ksac-runtime-check-") as tmp:
            folder = Path(args.out or tmp).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            report: dict[str, Any] = {"wheel": wheel}
            try:
                files, images = make_test_files(folder / "files")
                reference = toolkit_labels(files, images)
                if not args.no_venv:
                    report["x86"] = check_here(args.wheel, files, images, reference, folder)
                if args.arm:
                    report["arm64"] = check_arm(args.wheel, files, images, reference, folder, args.cpus)
            except (CheckFailed, RuntimeError, OSError) as error:
                return fail(error, 1)
        print_report(report)
        write_json(args.json, report, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
