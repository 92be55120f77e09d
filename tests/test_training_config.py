"""Experiment configs: defaults < --config file < flags, run-folder configs, clear errors naming the file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from convert import to_tflite
from quantize import qat as qat_cli
from training import train as train_cli
from configs import ConfigError, ExperimentConfig, QATExperimentConfig, read_file, resolve, write

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
    from configs import flag_overrides

    config = resolve(QATExperimentConfig, flag_overrides(args, qat_cli.FLAGS))
    assert (config.optimizer.lr, config.qat.batchnorm, config.schedule.steps, config.data.check) == (0.001, "train", 5, False)
    assert QATExperimentConfig().schedule.steps == 1000 and QATExperimentConfig().training.checkpoint_every == 100


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown field 'modle'"):
        resolve(ExperimentConfig, {"modle": {}})


def test_evaluate_takes_its_data_from_a_config_file(save_tiny_model, tmp_path, capsys):
    from PIL import Image

    from evaluation import evaluate as evaluate_cli

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
    assert evaluate_cli.main(["--model", model, "--config", missing]) == 2  # the user's input (docs/cli.md)
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
    from benchmarks.realistic_weights import benchmark_model
    from zoo import describe

    model = benchmark_model("mobilenetv2_ksac", 65, 8, overrides={"width": 0.35, "head_filters": 16})
    assert describe(model).rates == (12, 24, 36)


def test_resume_with_an_empty_section_in_the_config_file(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    write(train_cli.resolve_config(train_cli.parse_args([*TINY, "--out", out])), out)
    empty = tmp_path / "empty.yaml"
    empty.write_text("training:\nmodel:\n")  # sections without fields: nothing to override
    config = train_cli.resolve_config(train_cli.parse_args(["--config", str(empty), "--resume", "--out", out]))
    assert config.model.name == "mobilenetv2_ksac" and config.training.out == os.path.realpath(out)


# -- each config validates itself (`validate`, run by `resolve`), with the messages the commands used to give

@pytest.mark.parametrize("cls, layer, message", [
    ("ExperimentConfig", {}, "no model: give --backbone and --head"),
    ("ExperimentConfig", {"model": {"name": "resnet50_ksac"}}, "unknown model 'resnet50_ksac'; valid models: mobilenetv2_aspp"),
    ("ExperimentConfig", {"model": {"name": "mobilenetv2_ksac"}, "data": {"crop_size": 8}},
     "--crop-size 8 is smaller than the output stride 16"),
    ("ExperimentConfig", {"model": {"name": "mobilenetv2_ksac"}, "schedule": {"steps": 0}}, "schedule.steps must be positive, got 0"),
    ("ExperimentConfig", {"model": {"name": "mobilenetv2_ksac"}, "data": {"batch_size": 0}}, "data.batch_size must be positive"),
    ("ExperimentConfig", {"model": {"name": "mobilenetv2_ksac"}, "training": {"keep_checkpoints": 0}},
     "training.keep_checkpoints must be positive"),
    ("ExperimentConfig", {"model": {"name": "mobilenetv2_ksac"}, "optimizer": {"lr": 0}}, "optimizer.lr must be positive, got 0.0"),
    ("ExperimentConfig", {"model": {"name": "mobilenetv2_ksac"}, "export": {"precision": "int4"}},
     "export.precision must be fp32, fp16 or int8, got 'int4'"),
    ("ExportConfig", {"output": "probabilities"}, "export.output must be logits or labels, got 'probabilities'"),
    ("ExportConfig", {"int8_io": True, "precision": "fp16"}, "--int8-io needs --int8"),
    ("QATExperimentConfig", {"optimizer": {"name": "adam"}}, "QAT fine-tunes with SGD; optimizer.name 'adam' is not supported"),
    ("QATExperimentConfig", {"qat": {"batchnorm": "moving"}}, "qat.batchnorm must be frozen or train, got 'moving'"),
    ("QATExperimentConfig", {"qat": {"calibration_steps": 0}}, "qat.calibration_steps must be positive"),
    ("BenchmarkConfig", {"models": ["resnet50_ksac"]}, "unknown model 'resnet50_ksac' in --models"),
    ("BenchmarkConfig", {"precisions": ["int4"]}, "unknown precision 'int4' in --precisions; valid: fp32, fp16, int8"),
    ("BenchmarkConfig", {"threads": [0]}, "--threads values must be at least 1, got 0"),
    ("BenchmarkConfig", {"output_stride": [12]}, "--output-stride 12 is not one of 8, 16, 32"),
    ("BenchmarkConfig", {"device": "tpu"}, "device must be cpu or gpu, got 'tpu'"),
    ("BenchmarkConfig", {"input_size": 32}, "--input-size must be at least 33, got 32"),
    ("BenchmarkConfig", {"exporters": ["stock"]}, "unknown exporter 'stock' in --exporters; valid: ksac-aware, naive"),
])  # fmt: skip
def test_each_config_validates_its_values_when_resolved(cls, layer, message):
    import re

    import configs

    schema = getattr(configs, cls)
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve(schema, layer)
    configs.from_dict(schema, layer)  # only resolved configs are validated: a file may hold part of one


def test_the_defaults_are_valid_and_the_commands_report_what_validate_finds(tmp_path, capsys):
    from benchmarks.run import resolve_args
    from configs import BenchmarkConfig, ExportConfig
    from quantize.finetune import QATError, resolve_qat_config

    for schema, layer in ((ExperimentConfig, {"model": {"name": "mobilenetv2_ksac"}}), (QATExperimentConfig, {}),
                          (ExportConfig, {}), (BenchmarkConfig, {})):  # fmt: skip
        resolve(schema, layer)
    assert train_cli.main([*TINY, "--steps", "0", "--out", str(tmp_path / "run")]) == 2
    assert "error: schedule.steps must be positive, got 0" in capsys.readouterr().err
    with pytest.raises(QATError, match="QAT fine-tunes with SGD"):  # before the model is loaded
        resolve_qat_config({"optimizer": {"name": "adam"}, "qat": {"model": str(tmp_path / "nope.keras")}})
    with pytest.raises(SystemExit):
        resolve_args(["--output-stride", "8,12", "--out", str(tmp_path / "bench")])
    assert "--output-stride 12 is not one of 8, 16, 32" in capsys.readouterr().err


def test_build_model_from_config_is_model_config_build():
    from configs import ModelConfig, build_model_from_config

    assert build_model_from_config is ModelConfig.build


# -- shared constants are written once, where their package owns them, and imported everywhere else
SHARED_CONSTANTS = {
    (8, 16, 32): "ksac_runtime/description.py",  # OUTPUT_STRIDES (also zoo.registry.OUTPUT_STRIDES)
    ("fp32", "fp16", "int8"): "ksac_runtime/description.py",  # PRECISIONS
    513: "zoo/registry.py",  # DEFAULT_INPUT_SIZE
}


def _literal(node) -> object:
    """The value of a literal number, or of a tuple/list of literals, in the AST (None otherwise)."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(isinstance(e, ast.Constant) for e in node.elts):
        return tuple(e.value for e in node.elts)
    return None


def test_shared_constants_are_defined_once():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    packages = [d for d in sorted(root.iterdir()) if (d / "__init__.py").is_file() and d.name != "tests"]
    files = [*root.glob("*.py"), *(path for package in packages for path in sorted(package.rglob("*.py")))]
    found: dict[object, set[str]] = {value: set() for value in SHARED_CONSTANTS}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            value = _literal(node)
            if value in found:
                found[value].add(str(path.relative_to(root)))
    assert found == {value: {home} for value, home in SHARED_CONSTANTS.items()}


def test_the_shared_constants_are_importable_from_their_homes():
    from benchmarks.exporters import PRECISIONS as benchmark_precisions
    from configs import BenchmarkConfig, DataConfig
    from inference.description import PRECISIONS
    from zoo.registry import DEFAULT_INPUT_SIZE, OUTPUT_STRIDES

    assert PRECISIONS == benchmark_precisions == tuple(BenchmarkConfig().precisions) == ("fp32", "fp16", "int8")
    assert OUTPUT_STRIDES == (8, 16, 32) and DEFAULT_INPUT_SIZE == DataConfig().crop_size == BenchmarkConfig().input_size == 513
