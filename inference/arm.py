"""A phone's CPU kernels without a phone: a `.tflite` file run by LiteRT's ARM64 build under emulation.

    python -m inference.arm FILE [--cpus cortex-a53,cortex-a76,max] [--images NPY] [--frames N] [--json [FILE]]
                            [--timeout SECONDS]

What a phone's CPU computes is decided by LiteRT's ARM64 kernels (XNNPACK's NEON, dot-product, i8mm
and SVE paths, chosen by the CPU's features at run time). `make arm-env` unpacks Debian's ARM64
CPython and the aarch64 ai-edge-litert wheel into `.arm-env/` (see `inference.arm_env`); this module
runs a file there under qemu-user for each CPU model (`-cpu cortex-a53`: ARMv8.0 NEON; `cortex-a76`:
dot product; `max`: every feature qemu emulates, i8mm and SVE included), and the same inputs in this
machine's (x86) LiteRT, and compares the outputs: `argmax_agreement` (percent of pixels whose class
is the same), `max_abs_diff` (float outputs; int8 outputs dequantized; label maps: the largest label
difference), and `seconds` per frame, EMULATED: a correctness check, never a speed.

Inputs: the model's own preprocessing (`inference.preprocess`) of `--images` (an `.npy` of uint8
HxWx3 RGB images, any size), else of smooth synthetic images made here. (`convert/to_tflite.py
--check-arm` passes the exporter's parity images instead: real images of the model's data.)

Exit status: 0 with the report; 2 when the input or the environment is wrong, found before anything
runs (a file that is not a model of this project, unreadable `--images`, no `make arm-env`, qemu older
than 10); 1 when an emulated run fails, times out (`--timeout`) or prints no result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from inference.runtime import InvalidModel, TFLiteModel, TensorInfo, dequantize, quantize

CPUS = ("cortex-a53", "cortex-a76", "max")
ENV_VARIABLE = "KSAC_ARM_ENV"
DEFAULT_ENV = Path(__file__).resolve().parents[1] / ".arm-env"
QEMU = "qemu-aarch64-static"
QEMU_MIN_MAJOR = 10  # bookworm's qemu 7.2 segfaults inside LiteRT
MANIFEST = "manifest.json"  # written last by `inference.arm_env`: its presence means the build finished
BUILD_ERROR = "build-error.txt"  # why the last `inference.arm_env` build of the folder failed
WORKER = Path(__file__).with_name("arm_worker.py")
DEFAULT_TIMEOUT = 1800.0


class ArmEnvironmentMissing(RuntimeError):
    """The emulated ARM64 environment is not there or cannot run (the message says what and how to get it)."""


class ArmRunError(RuntimeError):
    """The emulated ARM64 worker failed, timed out or printed no result (the message names the CPU model and
    the files): the work failed (exit 1), not the input."""


def qemu_version(qemu: str) -> tuple[int, str]:
    """(major version, the first line of `qemu --version`) of the qemu-user binary `qemu`; major 0 where the
    line names no version."""
    try:
        done = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 0, f"{qemu} --version failed: {error}"
    first = (done.stdout.strip().splitlines() or [f"{qemu} --version printed nothing (exit {done.returncode})"])[0]
    version = first.split("version ", 1)[1] if "version " in first else ""
    major = version.split(".")[0]
    return (int(major) if major.isdigit() else 0), first


def qemu_problem(qemu: str | None) -> str | None:
    """What is wrong with the qemu-user binary `qemu` for LiteRT (None where nothing is)."""
    hint = (f"Debian's qemu-user-static {QEMU_MIN_MAJOR}.0 or newer (bookworm-backports; bookworm's 7.2 segfaults "
            "inside LiteRT; .ci/system-packages installs it)")  # fmt: skip
    if qemu is None:
        return f"{QEMU} not found on PATH: install {hint}"
    major, first = qemu_version(qemu)
    if major < QEMU_MIN_MAJOR:
        return f"{qemu} is {first!r}: LiteRT needs {hint}"
    return None


@dataclass(frozen=True)
class ArmEnvironment:
    """The emulated ARM64 LiteRT: the qemu-user binary, the ARM64 root (Debian's CPython and libraries), the
    unpacked wheels' folder and the ARM64 interpreter inside the root (as the build's manifest names it)."""

    qemu: str
    root: Path
    site: Path
    python: Path

    @classmethod
    def find(cls, folder: str | os.PathLike[str] | None = None) -> "ArmEnvironment":
        """The environment in `folder` (default: $KSAC_ARM_ENV, else `.arm-env/` of this checkout), checked
        without running it: qemu-user 10+, the build's manifest, the interpreter it names, LiteRT's wheel.

        Raises:
            ArmEnvironmentMissing: naming what is missing (with the reason of the folder's last failed build,
                where one was recorded) and the command that provides it.
        """
        base = Path(folder or os.environ.get(ENV_VARIABLE) or DEFAULT_ENV)
        qemu = shutil.which(QEMU)
        problems = [problem] if (problem := qemu_problem(qemu)) else []
        python = None
        manifest_path = base / MANIFEST
        try:
            interpreter = json.loads(manifest_path.read_text()).get("interpreter") if manifest_path.is_file() else None
        except (OSError, ValueError, AttributeError) as error:
            problems.append(f"{manifest_path} is unreadable ({error})")
        else:
            if not manifest_path.is_file():
                problems.append(f"{base} holds no built environment (no {MANIFEST})")
            elif not isinstance(interpreter, str):
                problems.append(f"{manifest_path} names no ARM64 interpreter (built by an older inference.arm_env)")
            elif not (base / "root" / interpreter).is_file():
                problems.append(f"the ARM64 CPython {base / 'root' / interpreter} that {manifest_path} names is not there")
            else:
                python = base / "root" / interpreter
        if python is not None and not (base / "site" / "ai_edge_litert").is_dir():
            problems.append(f"no aarch64 ai-edge-litert wheel is unpacked in {base / 'site'}")
        if problems:
            why = ""
            if (base / BUILD_ERROR).is_file():
                reason = " ".join((base / BUILD_ERROR).read_text().split())
                why = "" if reason in problems else f". The last build of {base} failed: {reason}"
            raise ArmEnvironmentMissing(f"no emulated ARM64 environment: {'; '.join(problems)}{why}. "
                                        f"Run `make arm-env` (ARM_ENV={base} for another folder)")  # fmt: skip
        return cls(qemu=qemu, root=base / "root", site=base / "site", python=python)

    def command(self, cpu: str, *args: str) -> list[str]:
        """The command that runs the ARM64 Python with `args` on the emulated `cpu`."""
        return [self.qemu, "-L", str(self.root), "-cpu", cpu, "-E", f"PYTHONPATH={self.site}",
                "-E", f"PYTHONHOME={self.root / 'usr'}", "-E", "PYTHONDONTWRITEBYTECODE=1",
                str(self.python), *args]  # fmt: skip

    def run(self, cpu: str, models: Sequence[tuple[str, np.ndarray]], threads: int = 1,
            timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:  # fmt: skip
        """Runs each (`.tflite` path, raw input frames) in ARM64 LiteRT on `cpu`; the worker's result with, per
        model, its raw `outputs` (frames stacked).

        Raises:
            ArmRunError: one line naming `cpu` and the files: the worker failed (its exit status and last
                stderr line), ran past `timeout` seconds (it is killed), or printed no result.
        """
        if cpu not in CPUS and cpu != "host":
            raise ValueError(f"unknown CPU model {cpu!r}; valid: {', '.join(CPUS)}")
        what = f"ARM64 LiteRT on emulated {cpu} ({', '.join(os.path.basename(path) for path, _ in models)})"
        with tempfile.TemporaryDirectory(prefix="ksac-arm-") as folder:
            job = {"threads": threads, "models": []}
            for i, (path, frames) in enumerate(models):
                inputs, outputs = os.path.join(folder, f"in{i}.npy"), os.path.join(folder, f"out{i}.npy")
                np.save(inputs, frames)
                job["models"].append({"model": os.path.abspath(path), "inputs": inputs, "outputs": outputs})
            with open(os.path.join(folder, "job.json"), "w") as f:
                json.dump(job, f)
            try:
                done = subprocess.run(self.command(cpu, str(WORKER), os.path.join(folder, "job.json")),
                                      capture_output=True, text=True, timeout=timeout)  # fmt: skip
            except subprocess.TimeoutExpired:
                raise ArmRunError(f"{what}: no result after {timeout:g} s (timeout); the worker was killed") from None
            if done.returncode != 0:
                raise ArmRunError(f"{what} failed (exit {done.returncode}): {_last_line(done.stderr)}")
            try:
                result = json.loads(done.stdout.strip().splitlines()[-1])
                entries = result["results"]
                if len(entries) != len(models):
                    raise ValueError(f"{len(entries)} results for {len(models)} files")
                for entry, model in zip(entries, job["models"]):
                    entry["outputs"] = np.load(model["outputs"])
            except (IndexError, KeyError, TypeError, ValueError, OSError) as error:
                detail = "printed nothing" if not done.stdout.strip() else f"printed no valid result ({error})"
                raise ArmRunError(f"{what}: the worker exited 0 but {detail}; stderr: {_last_line(done.stderr)}") from None
        return result


def _last_line(text: str) -> str:
    """The last non-empty line of a child's output (a Python exception, qemu's signal line), at most 300 characters."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(nothing)"


def smooth_images(count: int, size: tuple[int, int] = (160, 200), seed: int = 0) -> np.ndarray:
    """`count` smooth uint8 RGB images (random colours at 1/16 resolution, upsampled): shapes and edges
    a segmentation model responds to, unlike pixel noise."""
    from inference.preprocess import resize_bilinear

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (count, size[0] // 16 + 1, size[1] // 16 + 1, 3))
    return np.stack([np.clip(np.round(resize_bilinear(image, *size)), 0, 255).astype(np.uint8) for image in small])


def preprocessed_images(model: TFLiteModel, description: Any, images: np.ndarray) -> np.ndarray:
    """Float model inputs (N x H x W x 3): each image through the model's own preprocessing."""
    from inference.preprocess import description_preprocessing, preprocess

    size = model.inputs[0].shape[1:3]
    return np.concatenate([preprocess(image, size, description.normalization, description_preprocessing(description))[0]
                           for image in images])  # fmt: skip


def compare(ours: np.ndarray, theirs: np.ndarray, tensor: TensorInfo) -> dict[str, float]:
    """`argmax_agreement` (percent) and `max_abs_diff` of two stacks of raw outputs of `tensor`."""
    if tensor.dtype == np.uint8 and len(tensor.shape) == 3:  # a label map (`--output labels`)
        return {"argmax_agreement": 100.0 * float(np.mean(ours == theirs)),
                "max_abs_diff": float(np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).max())}  # fmt: skip
    a, b = (dequantize(v, tensor).astype(np.float32) for v in (ours, theirs))
    return {"argmax_agreement": 100.0 * float(np.mean(a.argmax(-1) == b.argmax(-1))), "max_abs_diff": float(np.abs(a - b).max())}


def check_files(paths: Sequence[str], cpus: Sequence[str] = CPUS, images: np.ndarray | None = None, frames: int = 2,
                env: ArmEnvironment | None = None, log: Any = print, inputs: np.ndarray | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:  # fmt: skip
    """Runs every file on every emulated CPU model and on x86 LiteRT; one report per file (see `check_file`).

    All files go through one emulated process per CPU model (its Python and LiteRT start once: several
    seconds under emulation). `inputs`: float model inputs already preprocessed (N x H x W x 3, the
    exporter's parity images), used instead of `images` (quantized for an int8 input). `timeout`: seconds
    each emulated process may run.

    Raises:
        ArmEnvironmentMissing: no environment (before any file is read).
        InvalidModel, FileNotFoundError, ValueError: a file that is not a TFLite model of this project (named),
            or images of the wrong kind, before anything runs.
        ArmRunError: an emulated run failed, timed out or printed no result.
    """
    from inference.description import read_description

    env = env or ArmEnvironment.find()
    images = smooth_images(frames) if images is None else np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 N x H x W x 3 RGB, got {images.dtype} {images.shape}")
    opened = []
    for path in paths:  # every file opened before any runs: a bad one is an input error, not a failed run
        model = TFLiteModel(path, device="cpu", threads=1)  # InvalidModel / FileNotFoundError name the file
        try:
            opened.append((path, model, read_description(path)))
        except ValueError as error:
            raise InvalidModel(f"{path}: {error} (inference.arm needs a file of this project, which records its preprocessing)") from None
    jobs = []
    for path, model, description in opened:
        floats = np.asarray(inputs, np.float32) if inputs is not None else preprocessed_images(model, description, images)
        frames_in = quantize(floats, model.inputs[0])  # the raw input tensors: quantized for an int8 input
        x86 = np.stack([model.run_raw(frame[None])[0] for frame in frames_in])
        jobs.append((path, frames_in, x86, model.outputs[0], description))
    reports = [{"file": str(path), "model": d.name, "precision": d.precision, "output": d.output, "frames": len(inputs),
                "input_dtype": np.dtype(inputs.dtype).name, "cpus": {}} for path, inputs, _, _, d in jobs]  # fmt: skip
    for cpu in cpus:
        log(f"running {len(jobs)} file(s) on emulated ARM64 {cpu} ...")
        started = time.perf_counter()
        result = env.run(cpu, [(path, inputs) for path, inputs, *_ in jobs], timeout=timeout)
        for report, (path, inputs, x86, tensor, _), entry in zip(reports, jobs, result["results"]):
            report["cpus"][cpu] = dict(compare(entry["outputs"], x86, tensor), seconds=round(entry["seconds_per_frame"], 3),
                                       seconds_emulated=True)  # fmt: skip
            report.update(litert_arm64=result["litert"], arm64_python=result["python"])
        log(f"    {time.perf_counter() - started:.1f} s")
    for report in reports:
        report["argmax_agreement"] = min(c["argmax_agreement"] for c in report["cpus"].values())
        report["max_abs_diff"] = max(c["max_abs_diff"] for c in report["cpus"].values())
    return reports


def check_file(path: str, cpus: Sequence[str] = CPUS, images: np.ndarray | None = None, frames: int = 2,
               env: ArmEnvironment | None = None, log: Any = print, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:  # fmt: skip
    """One file on every emulated CPU model against x86 LiteRT: {"file", "model", "precision", "output",
    "frames", "cpus": {cpu: {"argmax_agreement" (percent), "max_abs_diff", "seconds" (per frame, emulated),
    "seconds_emulated": True}}, "argmax_agreement" (the minimum over CPU models), "max_abs_diff" (the
    maximum), "litert_arm64" (the ARM64 LiteRT's version), "arm64_python"}."""
    return check_files([path], cpus, images, frames, env, log, timeout=timeout)[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.arm", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("file", help="a .tflite file exported by this project")
    parser.add_argument("--cpus", default=",".join(CPUS), help=f"comma-separated qemu CPU models (default {','.join(CPUS)})")
    parser.add_argument("--images", metavar="NPY", help="an .npy of uint8 N x H x W x 3 RGB images (default: smooth synthetic ones)")
    parser.add_argument("--frames", type=int, default=2, help="synthetic images when --images is not given (default 2)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also write the report as JSON to FILE (no FILE, or -: stdout only, where it is printed anyway)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"seconds each emulated CPU model's run may take before it is stopped (default {DEFAULT_TIMEOUT:g})")
    args = parser.parse_args(argv)
    cpus = [c for c in args.cpus.split(",") if c]
    unknown = [c for c in cpus if c not in CPUS]
    if unknown or not cpus:
        parser.error(f"unknown CPU model(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(CPUS)}")
    if args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    if args.json and args.json != "-":  # `--json [FILE]` as in every command (docs/cli.md); the report is on stdout anyway
        from common.files import check_output_path

        try:
            check_output_path(args.json)
        except ValueError as error:
            parser.error(str(error))
    try:
        env = ArmEnvironment.find()
        images = None
        if args.images:
            try:
                images = np.load(args.images, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise ValueError(f"--images {args.images}: not a readable .npy ({error})") from None
        report = check_file(args.file, cpus, images, args.frames, env, log=lambda m: print(m, file=sys.stderr),
                            timeout=args.timeout)  # fmt: skip
    except (ArmEnvironmentMissing, InvalidModel, FileNotFoundError, ValueError) as error:  # found before anything runs
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ArmRunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2)
    print(text)
    if args.json and args.json != "-":
        from common.files import atomic_write_bytes

        atomic_write_bytes(args.json, text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
