"""What every command line shares (common/cli.py, docs/cli.md): the exit codes of the rule, `--json [FILE]`
(a FILE to write, or stdout instead of the table) and `--images` (raw uint8 RGB images everywhere).
The exit code of each bad input, command by command, is checked by tests/test_bad_input.py."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

from common.cli import (
    STDOUT, USER_ERROR, WORK_FAILED, UserError, add_json_flag, check_json_path, exit_code, fail, stdout_kept_for_json,
    write_json,
)


def test_the_rule_user_input_is_2_failed_work_is_1(capsys):
    from configs import ConfigError
    from data.datasets import DatasetError
    from inference.runtime import InvalidModel
    from training.trainer import NonFiniteLoss, WorkerLost

    for error in (UserError("x"), ConfigError("x"), DatasetError("x"), InvalidModel("x"), FileNotFoundError("x"),
                  PermissionError("x")):  # fmt: skip
        assert exit_code(error) == USER_ERROR == 2, error
    for error in (NonFiniteLoss("x"), WorkerLost("x"), RuntimeError("x")):
        assert exit_code(error) == WORK_FAILED == 1, error
    assert fail(FileNotFoundError("model file not found: m.keras")) == 2
    assert fail("parity 98% is below 99.9%", WORK_FAILED) == 1
    assert capsys.readouterr().err.splitlines() == ["error: model file not found: m.keras", "error: parity 98% is below 99.9%"]


def test_json_takes_a_file_or_nothing(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    add_json_flag(parser, "the rows")
    assert parser.parse_args(["m"]).json is None
    assert parser.parse_args(["m", "--json"]).json == STDOUT == parser.parse_args(["m", "--json", "-"]).json
    assert parser.parse_args(["m", "--json", "r.json"]).json == "r.json"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="--json: cannot write .*afile is a file, not a directory"):
        check_json_path(str(tmp_path / "afile" / "r.json"))
    check_json_path(STDOUT)  # nothing to check
    with stdout_kept_for_json(STDOUT) as stdout:
        print("progress")  # goes to stderr: stdout holds the JSON only
        write_json(STDOUT, [{"a": 1}], stdout)
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"a": 1}] and err == "progress\n"
    write_json(str(tmp_path / "r.json"), [{"a": 1}])
    assert json.loads((tmp_path / "r.json").read_text()) == [{"a": 1}]


def _run(*argv: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.slow  # two subprocesses that load TensorFlow
def test_zoo_summary_json_on_stdout_or_to_a_file(tmp_path):
    printed = _run("-m", "zoo", "summary", "mobilenetv2_ksac", "--input-size", "65", "--json")
    assert printed.returncode == 0, printed.stderr
    rows = json.loads(printed.stdout)  # the JSON alone, no table
    written = _run("-m", "zoo", "summary", "mobilenetv2_ksac", "--input-size", "65", "--json", "rows.json", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "GMACs" in written.stdout and json.loads((tmp_path / "rows.json").read_text()) == rows
    taken = _run("-m", "zoo", "summary", "--json", "mobilenetv2_ksac", "mobilenetv2_aspp")
    assert taken.returncode == 2 and "--json mobilenetv2_ksac: that is a model name" in taken.stderr


def test_gpu_images_are_rgb_images_and_inputs_are_model_inputs(one_conv_tflite, make_description, tmp_path):
    """`python -m inference.gpu --images` takes uint8 RGB images of any size (preprocessed as the file's
    description says), `--inputs` preprocessed float inputs; float `--images` still work, with a warning.
    The CPU reference runs them before any GPU work, so no adapter is needed."""
    from convert.tflite_file import add_metadata

    model = tmp_path / "one_conv.tflite"
    model.write_bytes(add_metadata(one_conv_tflite, make_description(name="one_conv")))
    np.save(tmp_path / "rgb.npy", np.random.default_rng(0).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8))
    np.save(tmp_path / "inputs.npy", np.zeros((2, 9, 9, 3), np.float32))
    for flag, name in (("--images", "rgb.npy"), ("--inputs", "inputs.npy"), ("--images", "inputs.npy")):
        done = _run("-m", "inference.gpu", str(model), flag, str(tmp_path / name))
        assert done.returncode == 0, (flag, name, done.stderr[-2000:])
        report = json.loads(done.stdout.splitlines()[-1])  # (LiteRT's GPU accelerator writes INFO lines to stdout)
        assert report.get("images", 2) == 2, report  # where a GPU ran them: both images
        assert ("deprecated; use --inputs" in done.stderr) == (name == "inputs.npy" and flag == "--images")
    done = _run("-m", "inference.gpu", str(model), "--inputs", str(tmp_path / "rgb.npy"))  # RGB images are not inputs
    assert done.returncode == 2 and f"--inputs {tmp_path / 'rgb.npy'}: " in done.stderr and done.stdout == ""
