"""Builds the emulated ARM64 LiteRT environment of `inference.arm` (`make arm-env`) in `.arm-env/`.

    python -m inference.arm_env [--out DIR] [--force]

From packages named here or derived from the machine's own package sources (no host is written in this
repository):
- Debian's ARM64 CPython and the libraries it and LiteRT load (`apt-get download PKG:arm64`, unpacked
  with `dpkg -x` into `root/`: nothing is installed on the system). The names come from the machine's
  release through apt: `python3-minimal:arm64` depends on `python3.X-minimal`, which gives the Python
  version X, the interpreter `usr/bin/python3.X` and the packages `python3.X-minimal` and
  `libpython3.X-stdlib`; with `libstdc++6` (LiteRT's C++ runtime), their library dependencies (`lib*`,
  `zlib1g`: `libssl3` on bookworm, `libssl3t64` on trixie, ...) are followed to the end;
- the aarch64 wheels of ai-edge-litert (the version this project's x86 environment has) for that Python
  and its requirements (`pip download --platform manylinux_2_27_aarch64 --only-binary=:all:`), unzipped
  into `site/`.
Verified on Debian 12 (bookworm, Python 3.11). Other Debian releases whose apt has arm64 lists derive
their own names the same way (not verified here); Ubuntu serves arm64 from ports.ubuntu.com, which its
apt sources must name for arm64. Where apt has no arm64 `python3-minimal`, the build stops and says so.
It needs, from the system (.ci/system-packages sets both up): `qemu-aarch64-static` 10 or newer (Debian's
qemu-user-static from bookworm-backports; bookworm's 7.2 segfaults inside LiteRT), and dpkg's arm64
architecture with apt lists for it (`dpkg --add-architecture arm64 && apt-get update`). Whatever is
missing is named, with the command that provides it. The folder is built beside the target and moved
into place only when the ARM64 Python has imported LiteRT under emulation; its `manifest.json`, written
last, names the interpreter for `inference.arm`. A failed build writes its reason to
`DIR/build-error.txt`, which `inference.arm` (and so the ARM64 tests) quotes.

`install_wheel` installs a pure-Python wheel (the runtime's, `make arm-runtime-check`) with the aarch64
wheels of its requirements into `DIR/runtime/`, for the same ARM64 Python (`pip install --target
--platform ...`): run with that folder alone on its path, it shows what a board gets from `pip install`.

Exit status: 0 built (or already there); 2 the system cannot build it (qemu, dpkg's architecture, apt's
lists, the release), found before any download; 1 a download or the check under emulation failed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Sequence

from inference.arm import BUILD_ERROR, DEFAULT_ENV, MANIFEST, QEMU, ArmEnvironment, ArmEnvironmentMissing, qemu_problem

# What LiteRT's shared library loads beyond what the Python packages bring: the C++ runtime (libgcc-s1 follows).
LITERT_PACKAGES = ("libstdc++6",)
# The dependencies followed from the Python packages: shared libraries only (not dpkg, media-types, ...).
LIBRARY_PACKAGE = re.compile(r"^(lib[a-z0-9.+-]+|zlib1g)$")
WHEEL_PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


class ArmEnvError(RuntimeError):
    """A step of the build that failed (the message names it and what to do)."""


class UnsupportedSystem(ArmEnvError):
    """The system cannot build the environment (found before any download): qemu, dpkg, apt's lists, the release."""


def _run(command: Sequence[str], what: str, cwd: Path | None = None, error: type[ArmEnvError] = ArmEnvError) -> str:
    done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise error(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


def release(os_release: str | Path = "/etc/os-release") -> str:
    """The machine's release as /etc/os-release names it, e.g. "Debian GNU/Linux 12 (bookworm)"."""
    try:
        fields = dict(line.split("=", 1) for line in Path(os_release).read_text().splitlines() if "=" in line)
    except OSError:
        return "an unknown release (no /etc/os-release)"
    fields = {key: value.strip().strip('"') for key, value in fields.items()}
    name = fields.get("PRETTY_NAME") or f"{fields.get('NAME', '?')} {fields.get('VERSION_ID', '')}".strip()
    codename = fields.get("VERSION_CODENAME")
    return name if not codename or codename in name else f"{name} ({codename})"


def check_system() -> str:
    """The qemu-user binary; UnsupportedSystem naming what the system lacks."""
    qemu = shutil.which(QEMU)
    problem = qemu_problem(qemu)
    if problem:
        raise UnsupportedSystem(problem)
    if shutil.which("dpkg") is None or shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
        raise UnsupportedSystem(f"apt-get, apt-cache and dpkg not found on {release()}: the ARM64 CPython comes from "
                                "Debian's arm64 packages")  # fmt: skip
    if "arm64" not in _run(["dpkg", "--print-foreign-architectures"], "dpkg --print-foreign-architectures").split():
        raise UnsupportedSystem("dpkg has no arm64 architecture: run `dpkg --add-architecture arm64 && apt-get update` "
                                "as root (.ci/system-packages does)")  # fmt: skip
    return qemu


def _depends(record: str) -> list[list[str]]:
    """The Pre-Depends and Depends of one `apt-cache show` record: per dependency, its alternatives' names."""
    groups = []
    for field in re.findall(r"^(?:Pre-)?Depends: (.*)$", record, flags=re.MULTILINE):
        for group in field.split(","):
            groups.append([alternative.strip().split(" ")[0].split(":")[0] for alternative in group.split("|")])
    return groups


def _records(names: Sequence[str]) -> dict[str, str]:
    """The candidate `apt-cache show` record of each package of `names` that apt knows for arm64 (name -> record):
    an arm64 package, or an architecture-independent one (`all`, which apt lists under its plain name only)."""

    def show(queries: list[str], architecture: str) -> dict[str, str]:
        if not queries:
            return {}
        done = subprocess.run(["apt-cache", "show", "--no-all-versions", *queries], capture_output=True, text=True)
        # apt-cache exits 100 where one name is unknown or purely virtual but still prints the others.
        records = {}
        for record in done.stdout.split("\n\n"):
            package = re.search(r"^Package: (\S+)$", record, flags=re.MULTILINE)
            if package and re.search(rf"^Architecture: {architecture}$", record, flags=re.MULTILINE):
                records.setdefault(package.group(1), record)
        return records

    records = show([f"{name}:arm64" for name in names], "arm64")
    return {**records, **show([name for name in names if name not in records], "all")}


def _architecture_all(record: str) -> bool:
    return re.search(r"^Architecture: all$", record, flags=re.MULTILINE) is not None


def debian_packages() -> tuple[str, list[str]]:
    """(the Python version "3.X" of this release's arm64 python3-minimal, the arm64 packages to unpack).

    Raises:
        UnsupportedSystem: apt has no arm64 python3-minimal (no arm64 lists, or a release without it), or
            one of the packages derived from it.
    """
    where = f"apt on {release()}"
    python3 = _records(["python3-minimal"]).get("python3-minimal")
    if python3 is None:
        raise UnsupportedSystem(f"{where} has no arm64 python3-minimal: add dpkg's arm64 architecture and apt lists for it "
                                "(`dpkg --add-architecture arm64 && apt-get update`; on Ubuntu, arm64 comes from "
                                "ports.ubuntu.com, which apt's sources must name for arm64)")  # fmt: skip
    versions = [m.group(1) for group in _depends(python3) for name in group if (m := re.fullmatch(r"python(3\.\d+)-minimal", name))]
    if not versions:
        raise UnsupportedSystem(f"{where}: arm64 python3-minimal depends on no python3.X-minimal "
                                f"({', '.join(n for g in _depends(python3) for n in g)}); this release is not supported")  # fmt: skip
    python = versions[0]
    wanted = [f"python{python}-minimal", f"libpython{python}-stdlib", *LITERT_PACKAGES]
    found = _records(wanted)
    if missing := [name for name in wanted if name not in found]:
        raise UnsupportedSystem(f"{where} has no arm64 {', '.join(missing)} (from python3-minimal's python{python}-minimal)")
    packages, pending = dict(found), list(found.values())
    while pending:  # the library dependencies, to the end
        groups = [[n for n in group if LIBRARY_PACKAGE.match(n)] for record in pending for group in _depends(record)]
        groups = [group for group in groups if group and not any(name in packages for name in group)]
        known = _records(sorted({name for group in groups for name in group}))
        pending = []
        for group in groups:
            name = next((n for n in group if n in known), None)
            if name is None:
                raise UnsupportedSystem(f"{where} has no arm64 {' | '.join(group)} (a dependency of the ARM64 Python or LiteRT)")
            if name not in packages and not _architecture_all(known[name]):  # data, not machine code (libtirpc-common)
                packages[name] = known[name]
                pending.append(known[name])
    return python, sorted(packages)


def build(out: Path, log: Callable[[str], None] = print) -> dict:
    """Builds the environment into `out` (replacing it); returns its manifest.

    Raises:
        UnsupportedSystem: the system cannot build it (before any download).
        ArmEnvError: a download or the check under emulation failed.
    """
    started = time.perf_counter()
    qemu = check_system()
    try:
        litert = version("ai-edge-litert")
    except PackageNotFoundError:
        raise UnsupportedSystem("ai-edge-litert is not installed in this Python: run `make venv` first") from None
    python, packages = debian_packages()
    interpreter = f"usr/bin/python{python}"
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for folder in ("debs", "root", "wheels", "site"):
        (partial / folder).mkdir(parents=True)
    log(f"downloading {len(packages)} Debian arm64 packages ({release()}'s ARM64 CPython {python} and its libraries) ...")
    _run(["apt-get", "download", "-qq", *(f"{name}:arm64" for name in packages)],
         "apt-get download (are apt's arm64 lists there? `apt-get update` after adding the architecture)", cwd=partial / "debs")  # fmt: skip
    debs = sorted((partial / "debs").glob("*.deb"))
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(partial / "root")], f"dpkg -x {deb.name}")
    if not (partial / "root" / interpreter).is_file():
        raise ArmEnvError(f"python{python}-minimal:arm64 unpacked no {interpreter}")
    log(f"downloading the aarch64 wheels of ai-edge-litert {litert} for Python {python} and its requirements ...")
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", *platforms, "--python-version", python,
          "--implementation", "cp", "-d", str(partial / "wheels"), f"ai-edge-litert=={litert}"],
         f"pip download (an aarch64 wheel of ai-edge-litert {litert} for Python {python}, {release()}'s)")  # fmt: skip
    wheels = sorted((partial / "wheels").glob("*.whl"))
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial / "site")
    log("checking that the ARM64 Python imports LiteRT under emulation ...")
    env = ArmEnvironment(qemu=qemu, root=partial / "root", site=partial / "site", python=partial / "root" / interpreter)
    probe = "import platform, numpy, ai_edge_litert.interpreter; print(platform.machine(), platform.python_version(), numpy.__version__)"
    machine, python_version, numpy_version = _run(env.command("max", "-c", probe), "the ARM64 Python under qemu").split()
    if machine != "aarch64":
        raise ArmEnvError(f"the emulated Python reports machine {machine!r}, not aarch64")
    manifest = {"litert": litert, "python": python_version, "interpreter": interpreter, "numpy": numpy_version,
                "release": release(), "debian_packages": [d.name for d in debs], "wheels": [w.name for w in wheels],
                "qemu": _run([qemu, "--version"], "qemu").splitlines()[0],
                "build_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(partial / "debs")
    shutil.rmtree(partial / "wheels")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    # The paths inside were the partial folder's; the manifest records them relative to the folder.
    return manifest


RUNTIME_SITE = "runtime"  # DIR/runtime/: a wheel and its aarch64 requirements (`install_wheel`)


def install_wheel(wheel: Path, folder: Path, constraints: Sequence[str] = (), log: Callable[[str], None] = print) -> Path:
    """Installs `wheel` and the aarch64 wheels of its requirements for the ARM64 Python of the environment in
    `folder` into `folder/runtime/` (console scripts in its `bin/`); returns that folder. Kept while the same
    wheel (same bytes) and constraints are installed there.

    Args:
        wheel: a pure-Python wheel (py3-none-any).
        folder: a built environment (`build`), whose manifest names the ARM64 Python's version.
        constraints: pip constraints, e.g. "ai-edge-litert==2.3.0" (the x86 side's version).

    Raises:
        ArmEnvError: pip failed (its last lines).
    """
    import hashlib

    python = ".".join(json.loads((folder / MANIFEST).read_text())["python"].split(".")[:2])
    target = folder / RUNTIME_SITE
    stamp = hashlib.sha256(wheel.read_bytes() + "\n".join(constraints).encode()).hexdigest()
    if (target / ".installed").is_file() and (target / ".installed").read_text() == stamp:
        return target
    partial = folder / (RUNTIME_SITE + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "constraints.txt").write_text("".join(f"{line}\n" for line in constraints))
    log(f"installing {wheel.name} and the aarch64 wheels of its requirements for Python {python} into {target} ...")
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(partial),
          "--only-binary=:all:", *platforms, "--python-version", python, "--implementation", "cp",
          "-c", str(partial / "constraints.txt"), str(wheel)],
         f"pip install --target (the aarch64 wheels of {wheel.name}'s requirements for Python {python})")  # fmt: skip
    (partial / ".installed").write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.arm_env", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default=str(DEFAULT_ENV), help=f"the folder to build (default {DEFAULT_ENV})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder holds a working environment")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.force:
        try:
            ArmEnvironment.find(out)
        except ArmEnvironmentMissing:
            pass
        else:
            print(f"{out} is there ({json.loads((out / MANIFEST).read_text())['litert']}); --force rebuilds it")
            return 0
    try:
        manifest = build(out)
    except (ArmEnvError, OSError) as error:
        # Kept in the target folder, for `inference.arm` (the ARM64 tests) to say why there is no environment.
        reason = " ".join(str(error).split())
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / BUILD_ERROR).write_text(reason + "\n")
        except OSError:
            pass
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UnsupportedSystem) else 1
    print(f"built {out} in {manifest['build_seconds']} s: ARM64 Python {manifest['python']}, ai-edge-litert "
          f"{manifest['litert']}, numpy {manifest['numpy']}, {manifest['qemu']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
