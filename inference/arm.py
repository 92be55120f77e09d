"""A phone's CPU kernels without a phone: a `.tflite` file run by LiteRT's ARM64 build under emulation.

    python -m inference.arm FILE [--cpus cortex-a53,cortex-a76,max] [--images NPY] [--frames N] [--json OUT]

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
PYTHON = "usr/bin/python3.11"
WORKER = Path(__file__).with_name("arm_worker.py")


class ArmEnvironmentMissing(RuntimeError):
    """The emulated ARM64 environment is not there (the message says what is missing and how to get it)."""


@dataclass(frozen=True)
class ArmEnvironment:
    """The emulated ARM64 LiteRT: the qemu-user binary, the ARM64 root (CPython, libc) and the wheels' folder."""

    qemu: str
    root: Path
    site: Path

    @classmethod
    def find(cls, folder: str | os.PathLike[str] | None = None) -> "ArmEnvironment":
        """The environment in `folder` (default: $KSAC_ARM_ENV, else `.arm-env/` of this checkout).

        Raises:
            ArmEnvironmentMissing: naming what is missing and the command that provides it.
        """
        base = Path(folder or os.environ.get(ENV_VARIABLE) or DEFAULT_ENV)
        qemu = shutil.which(QEMU)
        missing = []
        if qemu is None:
            missing.append(f"{QEMU} (Debian's qemu-user-static from bookworm-backports, 10.0 or newer: bookworm's 7.2 "
                           "segfaults inside LiteRT; .ci/system-packages installs it)")  # fmt: skip
        if not (base / "root" / PYTHON).is_file():
            missing.append(f"the ARM64 CPython {base / 'root' / PYTHON}")
        if not (base / "site" / "ai_edge_litert").is_dir():
            missing.append(f"the aarch64 ai-edge-litert wheel unpacked in {base / 'site'}")
        if missing:
            raise ArmEnvironmentMissing(f"no emulated ARM64 environment: missing {'; '.join(missing)}. Run `make arm-env`")
        return cls(qemu=qemu, root=base / "root", site=base / "site")

    def command(self, cpu: str, *args: str) -> list[str]:
        """The command that runs the ARM64 Python with `args` on the emulated `cpu`."""
        return [self.qemu, "-L", str(self.root), "-cpu", cpu, "-E", f"PYTHONPATH={self.site}",
                "-E", f"PYTHONHOME={self.root / 'usr'}", "-E", "PYTHONDONTWRITEBYTECODE=1",
                str(self.root / PYTHON), *args]  # fmt: skip

    def run(self, cpu: str, models: Sequence[tuple[str, np.ndarray]], threads: int = 1, timeout: float = 1800) -> dict[str, Any]:
        """Runs each (`.tflite` path, raw input frames) in ARM64 LiteRT on `cpu`; the worker's result with, per
        model, its raw `outputs` (frames stacked). RuntimeError with the worker's stderr if it fails."""
        if cpu not in CPUS and cpu != "host":
            raise ValueError(f"unknown CPU model {cpu!r}; valid: {', '.join(CPUS)}")
        with tempfile.TemporaryDirectory(prefix="ksac-arm-") as folder:
            job = {"threads": threads, "models": []}
            for i, (path, frames) in enumerate(models):
                inputs, outputs = os.path.join(folder, f"in{i}.npy"), os.path.join(folder, f"out{i}.npy")
                np.save(inputs, frames)
                job["models"].append({"model": os.path.abspath(path), "inputs": inputs, "outputs": outputs})
            with open(os.path.join(folder, "job.json"), "w") as f:
                json.dump(job, f)
            done = subprocess.run(self.command(cpu, str(WORKER), os.path.join(folder, "job.json")),
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"ARM64 LiteRT on emulated {cpu} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for entry, model in zip(result["results"], job["models"]):
                entry["outputs"] = np.load(model["outputs"])
        return result


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
                env: ArmEnvironment | None = None, log: Any = print, inputs: np.ndarray | None = None
                ) -> list[dict[str, Any]]:  # fmt: skip
    """Runs every file on every emulated CPU model and on x86 LiteRT; one report per file (see `check_file`).

    All files go through one emulated process per CPU model (its Python and LiteRT start once: several
    seconds under emulation). `inputs`: float model inputs already preprocessed (N x H x W x 3, the
    exporter's parity images), used instead of `images` (quantized for an int8 input).

    Raises:
        ArmEnvironmentMissing: no environment (before any file is read).
        InvalidModel, FileNotFoundError: a file that is not a TFLite model (named), before any emulation.
    """
    from inference.description import read_description

    env = env or ArmEnvironment.find()
    images = smooth_images(frames) if images is None else np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 N x H x W x 3 RGB, got {images.dtype} {images.shape}")
    jobs = []
    for path in paths:
        model = TFLiteModel(path, device="cpu", threads=1)  # InvalidModel / FileNotFoundError name the file
        try:
            description = read_description(path)
        except ValueError as error:
            raise InvalidModel(f"{path}: {error} (inference.arm needs a file of this project, which records its preprocessing)") from None
        floats = np.asarray(inputs, np.float32) if inputs is not None else preprocessed_images(model, description, images)
        frames_in = quantize(floats, model.inputs[0])  # the raw input tensors: quantized for an int8 input
        x86 = np.stack([model.run_raw(frame[None])[0] for frame in frames_in])
        jobs.append((path, frames_in, x86, model.outputs[0], description))
    reports = [{"file": str(path), "model": d.name, "precision": d.precision, "output": d.output, "frames": len(inputs),
                "input_dtype": np.dtype(inputs.dtype).name, "cpus": {}} for path, inputs, _, _, d in jobs]  # fmt: skip
    for cpu in cpus:
        log(f"running {len(jobs)} file(s) on emulated ARM64 {cpu} ...")
        started = time.perf_counter()
        result = env.run(cpu, [(path, inputs) for path, inputs, *_ in jobs])
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
               env: ArmEnvironment | None = None, log: Any = print) -> dict[str, Any]:  # fmt: skip
    """One file on every emulated CPU model against x86 LiteRT: {"file", "model", "precision", "output",
    "frames", "cpus": {cpu: {"argmax_agreement" (percent), "max_abs_diff", "seconds" (per frame, emulated),
    "seconds_emulated": True}}, "argmax_agreement" (the minimum over CPU models), "max_abs_diff" (the
    maximum), "litert_arm64" (the ARM64 LiteRT's version), "arm64_python"}."""
    return check_files([path], cpus, images, frames, env, log)[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.arm", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("file", help="a .tflite file exported by this project")
    parser.add_argument("--cpus", default=",".join(CPUS), help=f"comma-separated qemu CPU models (default {','.join(CPUS)})")
    parser.add_argument("--images", metavar="NPY", help="an .npy of uint8 N x H x W x 3 RGB images (default: smooth synthetic ones)")
    parser.add_argument("--frames", type=int, default=2, help="synthetic images when --images is not given (default 2)")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    args = parser.parse_args(argv)
    cpus = [c for c in args.cpus.split(",") if c]
    unknown = [c for c in cpus if c not in CPUS]
    if unknown or not cpus:
        parser.error(f"unknown CPU model(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(CPUS)}")
    if args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")
    if args.json:
        from common.files import check_output_path

        try:
            check_output_path(args.json)
        except ValueError as error:
            parser.error(str(error))
    try:
        images = None
        if args.images:
            try:
                images = np.load(args.images, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise ValueError(f"--images {args.images}: not a readable .npy ({error})") from None
        report = check_file(args.file, cpus, images, args.frames, log=lambda m: print(m, file=sys.stderr))
    except (ArmEnvironmentMissing, InvalidModel, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        from common.files import atomic_write_bytes

        atomic_write_bytes(args.json, text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
