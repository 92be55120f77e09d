"""Builds the emulated ARM64 LiteRT environment of `inference.arm` (`make arm-env`) in `.arm-env/`.

    python -m inference.arm_env [--out DIR] [--force]

From packages named here, fetched by name from the machine's own package sources (no host is written
in this repository):
- Debian's ARM64 CPython 3.11 and the libraries it and LiteRT load (`apt-get download PKG:arm64`,
  unpacked with `dpkg -x` into `root/`: nothing is installed on the system);
- the aarch64 wheels of ai-edge-litert (the version this project's x86 environment has) and its
  requirements (`pip download --platform manylinux_2_27_aarch64 --only-binary=:all:`), unzipped into `site/`.
It needs, from the system (.ci/system-packages sets both up): `qemu-aarch64-static` 10 or newer (Debian's
qemu-user-static from bookworm-backports; bookworm's 7.2 segfaults inside LiteRT), and dpkg's arm64
architecture with apt lists for it (`dpkg --add-architecture arm64 && apt-get update`). Whatever is
missing is named, with the command that provides it. The folder is built beside the target and moved
into place only when the ARM64 Python has imported LiteRT under emulation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

from inference.arm import DEFAULT_ENV, PYTHON, QEMU, ArmEnvironment

# Debian bookworm's ARM64 CPython 3.11 and what it and LiteRT's shared library load.
DEBIAN_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "zlib1g", "libexpat1",
    "libffi8", "libssl3", "libstdc++6", "libgcc-s1",
)  # fmt: skip
WHEEL_PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


class ArmEnvError(RuntimeError):
    """A step of the build that cannot be done here (the message names it and what to do)."""


def _run(command: Sequence[str], what: str, cwd: Path | None = None) -> str:
    done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ArmEnvError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


def check_system() -> str:
    """The qemu-user binary; ArmEnvError naming what the system lacks."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise ArmEnvError(f"{QEMU} not found: install Debian's qemu-user-static from bookworm-backports (10.0 or newer; "
                          "bookworm's 7.2 segfaults inside LiteRT), as .ci/system-packages does")  # fmt: skip
    first = _run([qemu, "--version"], "qemu --version").splitlines()[0]
    major = int(first.split("version ")[1].split(".")[0]) if "version " in first else 0
    if major < 10:
        raise ArmEnvError(f"{first}: LiteRT needs qemu 10 or newer under emulation (7.2 segfaults); install "
                          "qemu-user-static from bookworm-backports")  # fmt: skip
    if shutil.which("dpkg") is None or shutil.which("apt-get") is None:
        raise ArmEnvError("apt-get and dpkg not found: the ARM64 CPython comes from Debian's arm64 packages")
    if "arm64" not in _run(["dpkg", "--print-foreign-architectures"], "dpkg --print-foreign-architectures").split():
        raise ArmEnvError("dpkg has no arm64 architecture: run `dpkg --add-architecture arm64 && apt-get update` "
                          "as root (.ci/system-packages does)")  # fmt: skip
    return qemu


def build(out: Path, log=print) -> dict:
    """Builds the environment into `out` (replacing it); returns its manifest."""
    started = time.perf_counter()
    check_system()
    try:
        litert = version("ai-edge-litert")
    except PackageNotFoundError:
        raise ArmEnvError("ai-edge-litert is not installed in this Python: run `make venv` first") from None
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for folder in ("debs", "root", "wheels", "site"):
        (partial / folder).mkdir(parents=True)
    log(f"downloading {len(DEBIAN_PACKAGES)} Debian arm64 packages (ARM64 CPython 3.11 and its libraries) ...")
    _run(["apt-get", "download", "-qq", *(f"{name}:arm64" for name in DEBIAN_PACKAGES)],
         "apt-get download (are apt's arm64 lists there? `apt-get update` after adding the architecture)", cwd=partial / "debs")  # fmt: skip
    debs = sorted((partial / "debs").glob("*.deb"))
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(partial / "root")], f"dpkg -x {deb.name}")
    log(f"downloading the aarch64 wheels of ai-edge-litert {litert} and its requirements ...")
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", *platforms, "--python-version", "3.11",
          "--implementation", "cp", "-d", str(partial / "wheels"), f"ai-edge-litert=={litert}"], "pip download")  # fmt: skip
    wheels = sorted((partial / "wheels").glob("*.whl"))
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial / "site")
    log("checking that the ARM64 Python imports LiteRT under emulation ...")
    env = ArmEnvironment(qemu=check_system(), root=partial / "root", site=partial / "site")
    probe = "import platform, numpy, ai_edge_litert.interpreter; print(platform.machine(), platform.python_version(), numpy.__version__)"
    machine, python, numpy_version = _run(env.command("max", "-c", probe), "the ARM64 Python under qemu").split()
    if machine != "aarch64":
        raise ArmEnvError(f"the emulated Python reports machine {machine!r}, not aarch64")
    manifest = {"litert": litert, "python": python, "numpy": numpy_version, "debian_packages": [d.name for d in debs],
                "wheels": [w.name for w in wheels], "qemu": _run([env.qemu, "--version"], "qemu").splitlines()[0],
                "build_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(partial / "debs")
    shutil.rmtree(partial / "wheels")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    # The paths inside were the partial folder's; nothing records them, so the move keeps it usable.
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.arm_env", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default=str(DEFAULT_ENV), help=f"the folder to build (default {DEFAULT_ENV})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder holds a working environment")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.force and (out / "manifest.json").is_file() and (out / "root" / PYTHON).is_file():
        print(f"{out} is there ({json.loads((out / 'manifest.json').read_text())['litert']}); --force rebuilds it")
        return 0
    try:
        manifest = build(out)
    except ArmEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"built {out} in {manifest['build_seconds']} s: ARM64 Python {manifest['python']}, ai-edge-litert "
          f"{manifest['litert']}, numpy {manifest['numpy']}, {manifest['qemu']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
