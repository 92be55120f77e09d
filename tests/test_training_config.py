"""Experiment configs: defaults < --config file < flags, run-folder configs, clear errors naming the file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from convert import to_tflite
from quantize import qat as qat_cli
from training import train as train_cli
from training.config import ConfigError, ExperimentConfig, QATExperimentConfig, read_file, resolve, write

TINY = ["--backbone", "mobilenetv2", "--head", "ksac", "--crop-size", "65"]


def test_defaults_then_file_then_flags(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {name: xception65_aspp, width: 0.5}\noptimizer: {lr: 0.01, momentum: 0.8}\n")
    config = train_cli.resolve_config(train_cli.parse_args(["--config", str(recipe), "--lr", "0.02"]))
    assert config.model.name == "xception65_aspp" and config.model.width == 0.5  # from the file
    assert config.optimizer.lr == 0.02 and config.optimizer.momentum == 0.8  # flag over file; file over default
    assert config.optimizer.weight_decay == ExperimentConfig().optimizer.weight_decay  # the default
    flags = train_cli.resolve_config(train_cli.parse_args(["--config", str(recipe), *TINY]))
    assert flags.model.name == "mobilenetv2_ksac"  # --backbone/--head name a registered model


def test_json_config_and_written_yaml_round_trip(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"name": "mobilenetv2_aspp", "rates": [4, 8]}, "schedule": {"steps": 7}}))
    config = train_cli.resolve_config(train_cli.parse_args(["--config", str(path)]))
    written = write(config, str(tmp_path))
    assert written.endswith("config.yaml") and resolve(ExperimentConfig, read_file(written)) == config


@pytest.mark.parametrize("text, message", [
    ("model: {name: mobilenetv2_ksac, widht: 1}\n", "unknown field 'widht'"),
    ("optimizer: {lr: fast}\n", "optimizer.lr: 'fast' is not a valid float"),
    ("- a list\n", "expected a mapping"),
    ("model: [unclosed\n", "is not a YAML or JSON file"),
])  # fmt: skip
def test_bad_config_files_are_refused_naming_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    assert train_cli.main(["--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err
    assert not out.exists()


def test_missing_config_file_and_unknown_model(tmp_path, capsys):
    assert train_cli.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: resnet50_ksac}\n")
    assert train_cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "resnet50_ksac" in err and "mobilenetv2_ksac" in err  # the registry's names are listed


def test_resume_refuses_a_config_that_changes_the_model(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    write(train_cli.resolve_config(train_cli.parse_args([*TINY, "--out", out])), out)
    changed = tmp_path / "changed.yaml"
    changed.write_text("model: {head_filters: 64}\n")
    with pytest.raises(train_cli.UsageError, match=r"--head-filters \(model.head_filters\) 64"):
        train_cli.resolve_config(train_cli.parse_args(["--config", str(changed), "--resume", "--out", out]))
    # Schedule length and logging may change on resume.
    resumed = train_cli.resolve_config(train_cli.parse_args(["--resume", "--out", out, "--steps", "99", "--log-every", "3"]))
    assert resumed.schedule.steps == 99 and resumed.model.name == "mobilenetv2_ksac"


def test_export_options_from_a_config_file_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("export: {precision: int8, calibration_steps: 7, output: labels}\n")
    config = to_tflite.resolve_export_config(to_tflite.parse_args(["--config", str(path), "--calibration-steps", "9"]))
    assert (config.precision, config.calibration_steps, config.output) == ("int8", 9, "labels")
    fp16 = to_tflite.resolve_export_config(to_tflite.parse_args(["--config", str(path), "--fp16"]))
    assert fp16.precision == "fp16"
    with pytest.raises(ValueError, match="--int8-io needs --int8"):
        to_tflite.resolve_export_config(to_tflite.parse_args(["--int8-io"]))


def test_qat_flags_map_onto_its_config_sections():
    args = qat_cli.parse_args(["--lr", "0.001", "--batchnorm", "train", "--steps", "5", "--no-data-check"])
    from training.config import flag_overrides

    config = resolve(QATExperimentConfig, flag_overrides(args, qat_cli.FLAGS))
    assert (config.optimizer.lr, config.qat.batchnorm, config.schedule.steps, config.data.check) == (0.001, "train", 5, False)
    assert QATExperimentConfig().schedule.steps == 1000 and QATExperimentConfig().training.checkpoint_every == 100


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown field 'modle'"):
        resolve(ExperimentConfig, {"modle": {}})


def test_evaluate_takes_its_data_from_a_config_file(save_tiny_model, tmp_path, capsys):
    from PIL import Image

    from training import evaluate as evaluate_cli

    # A two-image folder dataset that only the config file names (the model was trained on synthetic).
    folder = tmp_path / "data"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((24, 32, 3), 60 * i, np.uint8)).save(folder / "images" / f"x{i}.png")
        Image.fromarray(np.full((24, 32), i, np.uint8)).save(folder / "masks" / f"x{i}.png")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{train: 'folder:{folder}'}}\n")
    model = str(tmp_path / "m.keras")
    save_tiny_model(model, data="synthetic")
    assert evaluate_cli.main(["--model", model, "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["data"], result["images"]) == (f"folder:{folder}", 2)
    missing = str(tmp_path / "nope.yaml")
    assert evaluate_cli.main(["--model", model, "--config", missing]) == 1
    assert missing in capsys.readouterr().err


PAPER_RECIPE = os.path.join(os.path.dirname(__file__), "..", "configs", "paper", "mobilenetv2_ksac.yaml")


@pytest.mark.parametrize("base", [["--model", "mobilenetv2_ksac"], ["--config", PAPER_RECIPE]], ids=["flags", "recipe"])
@pytest.mark.parametrize("flags, rates", [
    (["--output-stride", "8"], [12, 24, 36]),
    (["--output-stride", "32"], [3, 6, 9]),
    (["--output-stride", "16"], [6, 12, 18]),
    (["--output-stride", "8", "--rates", "6,12,18"], [6, 12, 18]),  # rates given too: kept
])  # fmt: skip
def test_output_stride_re_derives_the_rates_with_or_without_a_recipe(base, flags, rates):
    # The recipe states rates [6, 12, 18] for OS 16; --output-stride 8 used to keep them.
    config = train_cli.resolve_config(train_cli.parse_args([*base, *flags]))
    assert config.model.rates == rates


def test_rates_are_kept_when_the_stride_does_not_change_and_resume_refuses_a_new_stride(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: mobilenetv2_ksac, output_stride: 8, rates: [4, 8, 12]}\n")
    for flags in ([], ["--output-stride", "8"]):  # the recipe's stride: its own rates stay
        assert train_cli.resolve_config(train_cli.parse_args(["--config", str(recipe), *flags])).model.rates == [4, 8, 12]
    assert train_cli.resolve_config(train_cli.parse_args(["--config", str(recipe), "--output-stride", "16"])).model.rates == [6, 12, 18]
    out = str(tmp_path / "run")
    os.makedirs(out)
    write(train_cli.resolve_config(train_cli.parse_args([*TINY, "--output-stride", "8", "--out", out])), out)
    for flags in ([], ["--output-stride", "8"]):
        assert train_cli.resolve_config(train_cli.parse_args(["--resume", "--out", out, *flags])).model.rates == [12, 24, 36]
    with pytest.raises(train_cli.UsageError, match=r"--output-stride \(model.output_stride\) 16 differs from the run's 8"):
        train_cli.resolve_config(train_cli.parse_args(["--resume", "--out", out, "--output-stride", "16"]))


def test_the_rates_rule_is_documented_in_the_help(capsys):
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "re-derives the atrous rates" in text and "an --output-stride that changes the stride re-derives them" in text


def test_benchmark_output_strides_build_their_own_rates():
    # benchmarks/run.py, the other command with --output-stride, builds registry models by stride
    # (no rates option, no model section): each stride gets its DeepLab rates, as in train.py.
    from benchmarks.models import benchmark_model
    from zoo import describe

    model = benchmark_model("mobilenetv2_ksac", 65, 8, overrides={"width": 0.35, "head_filters": 16})
    assert describe(model)["rates"] == [12, 24, 36]


def test_resume_with_an_empty_section_in_the_config_file(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    write(train_cli.resolve_config(train_cli.parse_args([*TINY, "--out", out])), out)
    empty = tmp_path / "empty.yaml"
    empty.write_text("training:\nmodel:\n")  # sections without fields: nothing to override
    config = train_cli.resolve_config(train_cli.parse_args(["--config", str(empty), "--resume", "--out", out]))
    assert config.model.name == "mobilenetv2_ksac" and config.training.out == os.path.realpath(out)
