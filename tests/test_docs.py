"""The docs name only commands, flags and make targets that exist.

Every command line the docs show -- in code blocks (fenced or indented), in inline code, in the
paper recipes' comments, in a TFJob manifest's `command` + `args` -- is checked against the command
itself: `python SCRIPT.py`, `python -m MODULE [SUBCOMMAND]` and the `ksac-*` console scripts against
their argparse parser (the usage block of their `--help`, all run in one child process), `node
SCRIPT.mjs` against the options its `parseArgs` compares with, `make TARGET` against the Makefile.
A flag named in prose inline code, without its command, must belong to at least one of the project's
commands (or to a tool listed in FOREIGN_FLAGS). Tools that are not this project's (pip, pytest,
apt-get, gradle, ...) are not checked.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# The module fixture asks every command for its --help (one child process, about 10 s): built once.
pytestmark = pytest.mark.xdist_group("docs_helps")

# Folders that hold no docs of ours (virtualenvs, npm packages, build and run outputs).
SKIP_DIRS = {"node_modules", "build", "runs", "__pycache__", "test-output"}

# Long flags of other tools that the docs' prose mentions without their command.
FOREIGN_FLAGS = {
    "--dist": "pytest-xdist (`--dist loadgroup`)",
    "--release": "javac (`javac --release 8`)",
}

# Other projects' programs: their flags are not checked (nor counted as prose flags).
FOREIGN_PROGRAMS = {"pip", "pytest", "apt-get", "javac", "npm", "gradle", "./gradlew", "adb", "git", "bash", "sudo"}
PYTHONS = {"python", "python3", ".venv/bin/python", "$(PY)"}
FLAG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Mention:
    """One command line as a doc writes it."""
    where: str  # "README.md:123"
    text: str


@dataclass(frozen=True)
class Command:
    """What a mention runs: kind "python" (its module, which `python -m` would run), "node" (a script),
    "make", "foreign" (another project's tool) or "missing" (a script or console command that is not there)."""
    kind: str
    argv: tuple[str, ...]


def doc_files() -> list[Path]:
    """Every *.md of the repository and the recipes under configs/ (their comments show commands)."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(folder, name)
            if name.endswith(".md") or (name.endswith((".yaml", ".yml")) and ROOT / "configs" in path.parents):
                found.append(path)
    return found


def _continued(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Joins shell continuations (a trailing backslash) and usage lines continued by an indented `[--...`."""
    joined: list[tuple[int, str]] = []
    pending = False
    for number, line in lines:
        stripped = line.strip()
        continues_usage = joined and stripped.startswith(("[-", "--")) and line[:1].isspace()
        if (pending or continues_usage) and joined:
            joined[-1] = (joined[-1][0], joined[-1][1] + " " + stripped.rstrip("\\").rstrip())
        else:
            joined.append((number, stripped.rstrip("\\").rstrip()))
        pending = stripped.endswith("\\")
    return joined


def _manifest_commands(block: str) -> list[str]:
    """`command` + `args` of every container in a YAML block (a TFJob manifest), as one command line."""
    try:
        documents = list(yaml.safe_load_all(block))
    except yaml.YAMLError:
        return []
    commands: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("command"), list):
                commands.append(shlex.join([str(w) for w in node["command"] + node.get("args", [])]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(documents)
    return commands


def mentions(path: Path) -> list[Mention]:
    """The command lines of one doc: code blocks, indented code, inline code (markdown), comments (YAML)."""
    name = path.relative_to(ROOT).as_posix() if ROOT in path.parents else path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Mention] = []
    if path.suffix != ".md":  # a recipe: its comment lines
        comments = [(i, line.lstrip("#")) for i, line in enumerate(lines, 1) if line.lstrip().startswith("#")]
        return [Mention(f"{name}:{i}", text) for i, text in _continued(comments)]
    prose: list[tuple[int, str]] = []
    fence: str | None = None
    block: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        opening = re.match(r"^\s*(```+|~~~+)\s*(\S*)", line)
        if fence is None and opening:
            fence, language, block = opening.group(1), opening.group(2), []
        elif fence is not None and line.strip().startswith(fence):
            if language in ("yaml", "yml"):
                found += [Mention(f"{name}:{block[0][0]}", text)
                          for text in _manifest_commands("\n".join(text for _, text in block))] if block else []
            elif language in ("", "bash", "sh", "shell", "console", "text"):
                found += [Mention(f"{name}:{i}", text) for i, text in _continued(block)]
            fence = None
        elif fence is not None:
            block.append((number, line))
        else:
            prose.append((number, line))
    # Indented code (4 spaces or more, e.g. inside a list item) outside the fences.
    indented = [(i, line) for i, line in prose if re.match(r"^ {4,}\S", line)]
    found += [Mention(f"{name}:{i}", text) for i, text in _continued(indented)]
    # Inline code, which may wrap over a line break.
    text = "\n".join(line for _, line in prose)
    numbers = [i for i, _ in prose]
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        line_index = text.count("\n", 0, match.start())
        found.append(Mention(f"{name}:{numbers[line_index]}", " ".join(match.group(1).split())))
    return found


def _words(text: str) -> list[str]:
    text = re.split(r"\s#", text)[0]  # a trailing comment
    text = re.split(r"&&|;", text)[0]
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose: words are enough here
        return text.split()


def _in_repo(module: str) -> bool:
    top = ROOT / module.split(".")[0]
    return top.is_dir() or top.with_suffix(".py").is_file()


def command_of(text: str) -> tuple[Command | None, list[str]]:
    """The command a line runs and the words after it; None for a line that runs nothing.

    Python commands are keyed by module (`python training/train.py`, `python -m training.train` and
    `ksac-train` are one parser, asked once); kind "foreign" is another project's tool (not checked),
    "missing" a script or console command that does not exist.
    """
    words = _words(text)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return None, []
    head, rest = words[0], words[1:]
    if head in PYTHONS and rest:
        if rest[0] == "-m" and len(rest) > 1:
            kind = "python" if _in_repo(rest[1]) else "foreign"  # pytest, pip, http.server, ...
            return Command(kind, (rest[1],)), rest[2:]
        if rest[0].endswith(".py"):
            if not (ROOT / rest[0]).is_file():
                return Command("missing", (rest[0],)), rest[1:]
            return Command("python", (rest[0][:-3].replace("/", "."),)), rest[1:]
        return Command("foreign", (head,)), rest
    if head in console_scripts():
        module = console_scripts()[head].split(":")[0].removesuffix(".__main__")
        return Command("python", (module,)), rest
    if head.startswith("ksac-"):
        return Command("missing", (head,)), rest
    if head == "node" and rest and rest[0].endswith(".mjs"):
        return Command("node", (rest[0],)), rest[1:]
    if head == "make":
        return Command("make", ()), rest
    if head in FOREIGN_PROGRAMS:
        return Command("foreign", (head,)), rest
    return None, []


@cache
def console_scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


@cache
def make_targets() -> frozenset[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        rule = re.match(r"^([A-Za-z0-9][\w./ -]*?)\s*::?(?!=)", line)
        if rule:
            targets.update(rule.group(1).split())
    return frozenset(targets)


@dataclass(frozen=True)
class Help:
    """A command's options as its parser lists them; `subcommands` when it has a subparser."""
    ok: bool
    flags: frozenset[str]
    subcommands: frozenset[str]
    error: str = ""


def parse_help(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """Long options and subcommands from argparse's usage block (the help up to its first blank line)."""
    usage = text.split("\n\n")[0]
    choices = re.search(r"\{([\w,-]+)\} \.\.\.", usage)
    return frozenset(FLAG.findall(usage)), frozenset(choices.group(1).split(",") if choices else ())


# Run in ONE child process for all commands, so that TensorFlow is imported once: each module as
# `python -m MODULE --help` would run it (and each subcommand of a parser that has subcommands).
HELP_RUNNER = r"""
import contextlib, io, json, re, runpy, sys
modules, out_path = json.loads(sys.argv[1]), sys.argv[2]
results = []
def run(argv):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [*argv, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    except BaseException as e:
        code = f"{type(e).__name__}: {e}"
    else:
        code = "no exit (the module ignored --help)"
    results.append([argv, code, out.getvalue(), err.getvalue()[-400:]])
    return out.getvalue()
for module in modules:
    choices = re.search(r"\{([\w,-]+)\} \.\.\.", run([module]).split("\n\n")[0])
    for sub in choices.group(1).split(",") if choices else ():
        run([module, sub])
with open(out_path, "w") as f:
    json.dump(results, f)
"""


def run_helps(modules: list[str], tmp: Path) -> dict[tuple[str, ...], Help]:
    """The `--help` of every module (and of its subcommands), keyed (module,) and (module, subcommand)."""
    out = tmp / "helps.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", HELP_RUNNER, json.dumps(modules), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and out.is_file(), f"the --help runner failed: {done.stderr[-2000:]}"
    helps = {}
    for argv, code, stdout, stderr in json.loads(out.read_text()):
        if code == 0:
            helps[tuple(argv)] = Help(True, *parse_help(stdout))
        else:
            helps[tuple(argv)] = Help(False, frozenset(), frozenset(), f"its --help failed ({code}): {stderr}")
    return helps


def node_flags(script: str) -> frozenset[str]:
    """The options a node script's `parseArgs` compares with (`a === '--x'`)."""
    source = (ROOT / script).read_text(encoding="utf-8")
    return frozenset(re.findall(r"===\s*'(--[\w-]+)'", source))


def _subcommand(help_: Help, rest: list[str]) -> str | None:
    if not help_.subcommands:
        return None
    positional = [w for w in rest if not w.startswith(("-", "["))]
    return positional[0] if positional else None


def all_mentions() -> list[tuple[Mention, Command, list[str]]]:
    commands = []
    for path in doc_files():
        for mention in mentions(path):
            command, rest = command_of(mention.text)
            if command is not None:
                commands.append((mention, command, rest))
    return commands


def problems(commands: list[tuple[Mention, Command, list[str]]], helps: dict[tuple[str, ...], Help]) -> list[str]:
    """One line per flag, subcommand, script or make target a mention names that does not exist."""
    found = []
    for mention, command, rest in commands:
        say = f"{mention.where}: `{mention.text}`"
        flags = set(FLAG.findall(" ".join(rest)))
        if command.kind == "foreign":
            continue
        if command.kind == "missing":
            found.append(f"{say}: no such script or command {command.argv[0]}")
            continue
        if command.kind == "make":
            targets = [w for w in rest if not w.startswith(("-", "[")) and "=" not in w]
            found += [f"{say}: the Makefile has no target {t!r}" for t in targets if t not in make_targets()]
            continue
        if command.kind == "node":
            script = command.argv[0]
            if not (ROOT / script).is_file():
                found.append(f"{say}: no such script {script}")
                continue
            known = set(node_flags(script))
        else:
            help_ = helps[command.argv]
            if not help_.ok:
                found.append(f"{say}: {help_.error}")
                continue
            known = set(help_.flags)
            sub = _subcommand(help_, rest)
            if sub is not None:
                if sub not in help_.subcommands:
                    found.append(f"{say}: no subcommand {sub!r} (has {', '.join(sorted(help_.subcommands))})")
                    continue
                sub_help = helps[(*command.argv, sub)]
                if not sub_help.ok:
                    found.append(f"{say}: {sub_help.error}")
                    continue
                known |= sub_help.flags
        found += [f"{say}: the command has no {flag}" for flag in sorted(flags - known - {"--help"})]
    return found


def prose_flags(paths: list[Path]) -> list[tuple[Mention, str]]:
    """Flags in markdown code that runs no command (e.g. "`--resize stretch` of `evaluation/evaluate.py`")."""
    return [(m, flag) for path in paths if path.suffix == ".md" for m in mentions(path)
            if command_of(m.text)[0] is None for flag in FLAG.findall(m.text)]


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, dict]:
    commands = all_mentions()
    modules = sorted({c.argv[0] for _, c, _ in commands if c.kind == "python"})
    return commands, run_helps(modules, tmp_path_factory.mktemp("helps"))


def test_docs_show_commands(checked: tuple[list, dict]) -> None:
    """The scan sees the docs' commands at all (a scan that finds nothing would pass everything)."""
    commands, _ = checked
    seen = {c.argv[-1] if c.argv else c.kind for _, c, _ in commands}
    for expected in ("training.train", "convert.to_tflite", "convert.inspect", "quantize.qat", "benchmarks.run",
                     "android_demo.prepare_assets", "zoo", "make", "web_demo/tests/web_test.mjs"):
        assert expected in seen, f"no doc command runs {expected}: the scan is broken"
    assert any(m.where.startswith("configs/") for m, _, _ in commands), "the recipes' commands were not seen"
    assert any("--checkpoint-every" in m.text for m, _, _ in commands), "the TFJob manifest was not seen"


def test_docs_name_only_flags_their_commands_have(checked: tuple[list, dict]) -> None:
    commands, helps = checked
    wrong = problems(commands, helps)
    assert not wrong, "the docs name what does not exist:\n" + "\n".join(wrong)


def test_flags_in_prose_belong_to_some_command(checked: tuple[list, dict]) -> None:
    commands, helps = checked
    known = set(FOREIGN_FLAGS) | {"--help"}
    for _, command, _ in commands:
        if command.kind == "node" and (ROOT / command.argv[0]).is_file():
            known |= node_flags(command.argv[0])
    for help_ in helps.values():
        known |= help_.flags
    wrong = [f"{m.where}: `{m.text}`: no command of the project has {flag}"
             for m, flag in prose_flags(doc_files()) if flag not in known]
    assert not wrong, "\n".join(wrong)


def test_the_checker_finds_what_does_not_exist(tmp_path: Path) -> None:
    """A doc naming a flag, subcommand, script, console command or make target that does not exist."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Intro `python training/train.py --steps 5 --no-such-flag`, `ksac-nothing`, `--bogus-prose`.\n\n"
        "```\npython -m zoo summary --json \\\n    --bogus\npython -m zoo lisst\n"
        "python training/train.py --backbone mobilenetv2\n    [--steps N] [--nope N]\nmake demo\n"
        "python training/no_such_script.py\npip install --no-such-pip-flag x\n```\n\n"
        "    make no-such-target\n", encoding="utf-8")
    commands = [(m, *command_of(m.text)) for m in mentions(doc)]
    helps = {("training.train",): Help(True, frozenset({"--steps", "--backbone"}), frozenset()),
             ("zoo",): Help(True, frozenset(), frozenset({"list", "summary"})),
             ("zoo", "summary"): Help(True, frozenset({"--json"}), frozenset())}
    wrong = problems([c for c in commands if c[1] is not None], helps)
    expected = ["doc.md:1: `python training/train.py --steps 5 --no-such-flag`: the command has no --no-such-flag",
                "doc.md:1: `ksac-nothing`: no such script or command ksac-nothing",
                "doc.md:4: `python -m zoo summary --json --bogus`: the command has no --bogus",
                "doc.md:6: `python -m zoo lisst`: no subcommand 'lisst' (has list, summary)",
                "doc.md:7: `python training/train.py --backbone mobilenetv2 [--steps N] [--nope N]`: "
                "the command has no --nope",
                "doc.md:10: `python training/no_such_script.py`: no such script or command "
                "training/no_such_script.py",
                "doc.md:14: `make no-such-target`: the Makefile has no target 'no-such-target'"]
    assert sorted(wrong) == sorted(expected)
    assert [flag for _, flag in prose_flags([doc])] == ["--bogus-prose"]
