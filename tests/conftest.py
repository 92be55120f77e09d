"""How the suite is scheduled on `make test`'s two pytest-xdist workers.

Tests marked `slow` (end-to-end: exports, QAT, multi-replica training, up to two
minutes each) run first, so that both workers start on long tests and the short
ones fill in at the end instead of one long test running alone. Tests that share
an expensive module fixture carry an `xdist_group` mark, which `--dist loadgroup`
keeps on one worker, in order, so the fixture is built once.
`pytest -m "not slow"` runs the quick tests only.

Shared fixtures (test modules never import one another; what several need is here):
`make_tiny_model`, `make_tiny_export_model`, `make_image_sensitive_model` (factories of fresh tiny models), `tiny_ksac` (one
read-only tiny model for the session), `save_tiny_model` (a tiny model saved as .keras),
`one_conv_tflite` (a one-convolution .tflite), `make_description` (a complete model description), `gpu_adapter`, `assert_runs_on_gpu` (LiteRT's GPU accelerator),
`assert_int8_parity` (an int8 export against Keras), `train_then_evaluate` (a tiny run on a `--data` spec), `wrong_kernel_parity` (the same with one shared kernel made wrong)
and `run_core_tests` (the Android demo's Java core tests).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first, order kept


# ---------------------------------------------------------------- shared fixtures
#
# Test modules do not import each other: what several of them need lives here.

ROOT = Path(__file__).resolve().parents[1]

# The tiny model of the suite: MobileNetV2 at width 0.35, 16 head filters, 65x65 input.
TINY_MODEL = dict(input_size=65, width=0.35, head_filters=16)


def _tiny_model(name: str = "mobilenetv2_ksac", *, seed: int = 0, random_bn: bool = False, **overrides: Any) -> Any:
    import tf_keras as keras

    from zoo import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(name, **{**TINY_MODEL, **overrides})
    if random_bn:
        from benchmarks.realistic_weights import randomize_batchnorm

        randomize_batchnorm(model, seed)
    return model


@pytest.fixture(scope="session")
def make_tiny_model() -> Callable[..., Any]:
    """Factory of fresh, untrained tiny models: `make_tiny_model(name="mobilenetv2_ksac", *, seed=0, **overrides)`.

    Seeds TensorFlow/NumPy/Python with `seed`, then `zoo.build_model(name, input_size=65, width=0.35,
    head_filters=16, **overrides)`; BatchNorm statistics as built (mean 0, variance 1). Every call
    builds a new model, so a test may change it.
    """
    return _tiny_model


@pytest.fixture(scope="session")
def make_tiny_export_model() -> Callable[..., Any]:
    """Like `make_tiny_model`, plus `benchmarks.realistic_weights.randomize_batchnorm(model, seed)`: BatchNorm
    statistics shaped like a trained model's, which int8 calibration and the exporter's checks need.
    """
    return functools.partial(_tiny_model, random_bn=True)


def _image_sensitive_model(name: str = "mobilenetv2_ksac", *, seed: int = 0, **overrides: Any) -> Any:
    import numpy as np

    from benchmarks.realistic_weights import batchnorm_from_batch
    from data.datasets import open_dataset
    from data.transforms import eval_inputs
    from zoo import describe

    model = _tiny_model(name, seed=seed, **overrides)
    height, width = describe(model).input_size
    train = open_dataset("synthetic", "train")
    batch = [eval_inputs(train.load(i)[0], None, (height, width), describe(model).normalization)[0] for i in range(8)]
    batchnorm_from_batch(model, np.stack(batch))
    return model


@pytest.fixture(scope="session")
def make_image_sensitive_model() -> Callable[..., Any]:
    """Like `make_tiny_model`, with BatchNorm statistics of 8 synthetic train images: its label maps vary
    over an image (several classes), where an untrained model with other statistics gives one label
    everywhere. For tests that compare label maps of two runtimes on real images."""
    return _image_sensitive_model


@pytest.fixture(scope="session")
def tiny_ksac(make_tiny_export_model: Callable[..., Any]) -> Any:
    """ONE tiny mobilenetv2_ksac (seed 0, randomized BatchNorm) shared by the session: read it, never change it."""
    return make_tiny_export_model("mobilenetv2_ksac")


@pytest.fixture(scope="session")
def save_tiny_model(make_tiny_export_model: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: `save_tiny_model(path, name="mobilenetv2_ksac", *, data=None, **overrides)` saves a fresh
    `make_tiny_export_model(name, **overrides)` to `path` (.keras) and returns the model. With `data`,
    the description records it first (`zoo.update_description(model, data=data)`), as train.py does.
    """

    def save(path: str | os.PathLike[str], name: str = "mobilenetv2_ksac", *, data: str | None = None, **overrides: Any) -> Any:
        import zoo

        model = make_tiny_export_model(name, **overrides)
        if data is not None:
            zoo.update_description(model, data=data)
        model.save(os.fspath(path))
        return model

    return save


@pytest.fixture(scope="session")
def run_tiny_qat(save_tiny_model: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: `run_tiny_qat(folder, name="mobilenetv2_ksac", checkpoint_every=1)` runs qat.py's path
    (`quantize.finetune.run_qat`) on a fresh tiny saved `name` in `folder`: 2 fine-tuning steps on 65 px
    synthetic crops, then the int8 export; returns (config, report, log lines)."""

    def run(folder: Any, name: str = "mobilenetv2_ksac", checkpoint_every: int = 1) -> tuple[Any, dict[str, Any], list[str]]:
        from quantize.finetune import resolve_qat_config, run_qat

        path = os.path.join(os.fspath(folder), "model.keras")
        save_tiny_model(path, name, data="synthetic")
        config, model = resolve_qat_config({
            "qat": {"model": path, "calibration_steps": 4}, "schedule": {"steps": 2},
            "data": {"batch_size": 2, "crop_size": TINY_MODEL["input_size"], "check": False},
            "training": {"out": os.path.join(os.fspath(folder), "qat"), "checkpoint_every": checkpoint_every},
        })  # fmt: skip
        lines: list[str] = []
        report = run_qat(config, model, log=lines.append)
        return config, report, lines

    return run


def _description(**overrides: Any) -> Any:
    """A complete `ModelDescription` of an exported file (see `make_description`)."""
    from inference.description import ModelDescription, Normalization, Preprocessing

    num_classes = overrides.get("num_classes", 2)
    fields: dict[str, Any] = dict(
        name="mobilenetv2_ksac", backbone="mobilenetv2", head="ksac", decoder=False, rates=(6, 12, 18),
        output_stride=16, input_size=(9, 9), num_classes=num_classes,
        label_names=("background", "thing") if num_classes == 2 else tuple(f"class_{i}" for i in range(num_classes)),
        width=0.35, head_filters=16, normalization=Normalization(mean=(127.5,) * 3, std=(127.5,) * 3),
        preprocessing=Preprocessing(), precision="fp32", output="logits", exporter="ksac-aware",
    )  # fmt: skip
    return ModelDescription(**{**fields, **overrides})


@pytest.fixture(scope="session")
def make_description() -> Callable[..., Any]:
    """Factory of complete, valid descriptions: `make_description(**overrides)` is a `ModelDescription` of
    a 2-class ("background", "thing") mobilenetv2_ksac fp32 logits file with a 9x9 input (`one_conv_tflite`'s
    size), the given fields replaced (`num_classes=N` alone names the classes class_0..). For
    `convert.tflite_file.add_metadata`; a test of a broken description stores raw bytes with `with_entry`."""
    return _description


@pytest.fixture(scope="session")
def one_conv_tflite() -> bytes:
    """A one-convolution .tflite (float 1x9x9x3 input, 2 output channels) without metadata; fast to make."""
    import tf_keras as keras

    from convert.export import plain_converter

    inputs = keras.Input((9, 9, 3), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    return plain_converter(model).convert()


# ---------------------------------------------------------------- LiteRT's GPU accelerator

GPU_INSTALL_HINT = (
    "install Mesa 25's software Vulkan driver: add Debian's bookworm-backports to apt's sources, then "
    "`apt-get install -t bookworm-backports mesa-vulkan-drivers` (.ci/run does this)"
)


@pytest.fixture(scope="session")
def gpu_adapter(one_conv_tflite: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`inference.gpu.gpu_report` of a one-convolution model (adapter name, software or not, ...);
    fails the test with the accelerator's reason where no adapter loads."""
    from inference.gpu import gpu_report

    path = tmp_path_factory.mktemp("gpu") / "one_conv.tflite"
    path.write_bytes(one_conv_tflite)
    report = gpu_report(str(path))
    if not report.get("available"):
        pytest.fail(f"LiteRT's GPU accelerator does not load here: {report.get('reason')}; {GPU_INSTALL_HINT}")
    return dict(report, file=str(path))


@pytest.fixture(scope="session")
def assert_runs_on_gpu() -> Callable[..., None]:
    """`assert_runs_on_gpu(report, min_agreement=95.0)` for an export report made with `check_gpu=True`.

    The file must run fully on LiteRT's GPU accelerator (in CI: Mesa's llvmpipe software device)
    and agree with LiteRT CPU's arg-max on at least `min_agreement` percent of the pixels (the GPU
    computes in fp16 by default, so near-ties may flip). Where no adapter loads the test FAILS
    with the accelerator's reason: a skipped GPU check would let an op the GPU cannot take slip in.
    """

    def check(report: dict[str, Any], min_agreement: float = 95.0) -> None:
        gpu = {key: value for key, value in report.items() if key.startswith("gpu_")}
        print(f"\nGPU check of {report.get('model')} {report.get('precision')} {report.get('output')}: {gpu}")
        if report["gpu_fully_accelerated"] is None:
            pytest.fail(f"LiteRT's GPU accelerator does not load here: {report['gpu_reason']}; {GPU_INSTALL_HINT}")
        assert report["gpu_fully_accelerated"] is True, report["gpu_reason"]
        assert report["gpu_argmax_agreement"] >= min_agreement, gpu

    return check


# ---------------------------------------------------------------- int8 exports against Keras


@pytest.fixture(scope="session")
def assert_int8_parity() -> Callable[..., None]:
    """`assert_int8_parity(report, min_agreement, max_diff)` for an int8 export report made with parity.

    Prints the figures, then asserts the arg-max agreement with Keras and the largest |logit difference|
    against bounds the calling test sets from measurement (the figures and the margin in a comment there),
    and that the exporter checked TFLite's bias-scale rule on the file's int32 biases (it raises where one
    breaks it). The bounds catch a wrong shared pyramid kernel, and on an image-sensitive model a wrong
    input scale too (tests/test_convert.py's INT8_PARITY says which figures each bound came from).
    """

    def check(report: dict[str, Any], min_agreement: float, max_diff: float) -> None:
        figures = {key: report.get(key) for key in ("model", "input_size", "argmax_agreement", "max_abs_diff",
                                                     "parity_images", "bias_scale_ops", "input_scale_untied")}  # fmt: skip
        print(f"\nint8 parity: {figures}")
        assert report["precision"] == "int8" and report["bias_scale_ops"] > 0, figures
        assert report["argmax_agreement"] >= min_agreement and report["max_abs_diff"] <= max_diff, figures

    return check


def _with_wrong_shared_kernel(tflite: bytes, rates: list[int], kind: str) -> bytes:
    """`tflite` with the int8 bytes of one shared pyramid kernel (`kind`: "kernel", "depthwise" or "pointwise")
    reversed along its output channels: a wrong kernel with the right values and scales."""
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    from convert.tflite_file import load_model, pyramid_buffers

    flatbuffer = load_model(tflite)
    (buffer,) = pyramid_buffers(flatbuffer, rates)[kind]
    tensor = next(t for t in flatbuffer.subgraphs[0].tensors if t.buffer == buffer)
    values = np.asarray(flatbuffer.buffers[buffer].data, np.uint8).reshape(tensor.shape)
    flatbuffer.buffers[buffer].data = np.ascontiguousarray(np.flip(values, tensor.quantization.quantizedDimension)).ravel()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))


@pytest.fixture(scope="session")
def wrong_kernel_parity() -> Callable[..., dict[str, Any]]:
    """`wrong_kernel_parity(model, tflite, kind, parity_images=2, input_size=None)`: the int8 parity figures
    (`argmax_agreement`, `max_abs_diff`) of `tflite` with one shared pyramid kernel made wrong (`kind`: "kernel",
    "depthwise" or "pointwise"), against `model` on the export's own parity images (its `synthetic` val images,
    at `input_size` when the file was exported at another size): what the calling test's bounds must refuse,
    checked on every run rather than once by hand.
    """

    def compute(model: Any, tflite: bytes, kind: str, parity_images: int = 2, input_size: int | None = None) -> dict[str, Any]:
        from convert.graph import prepare_for_export
        from convert.parity import eval_images, parity
        from zoo import describe

        description = describe(model)
        size = (input_size, input_size) if input_size else description.input_size
        reference = prepare_for_export(model, "fp32", input_size) if input_size else model  # as the exporter compares
        broken = _with_wrong_shared_kernel(tflite, list(description.rates), kind)
        images = list(eval_images("synthetic", "val", size, description.normalization, parity_images))
        figures = parity(reference, broken, images, "logits")
        print(f"\nint8 parity with a wrong shared {kind} kernel: {figures}")
        return figures

    return compute


@pytest.fixture(scope="session")
def train_then_evaluate() -> Callable[..., dict[str, Any]]:
    """`train_then_evaluate(spec, folder)`: one training step of a tiny mobilenetv2_ksac on `--data spec` into
    `folder/run`, then evaluate.py of its model.keras on the same data; returns evaluate's JSON report."""

    def run(spec: str, folder: Path) -> dict[str, Any]:
        import json

        from evaluation import evaluate as evaluate_cli
        from training import train as train_cli

        tiny = ["--model", "mobilenetv2_ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "65",
                "--batch-size", "2", "--steps", "1"]  # fmt: skip
        out, report = folder / "run", folder / "eval.json"
        assert train_cli.main([*tiny, "--data", spec, "--out", str(out)]) == 0
        assert evaluate_cli.main(["--model", str(out / "model.keras"), "--data", spec, "--json", str(report)]) == 0
        return json.loads(report.read_text())

    return run


# ---------------------------------------------------------------- the Android demo's Java core

RUN_CORE_TESTS = ROOT / "android_demo" / "core" / "run_tests.sh"
JUNIT_JAR = Path(os.environ.get("JUNIT_JAR", "/usr/share/java/junit4.jar"))


def java_prerequisites() -> str | None:
    """Why the Java tests cannot run here, or None."""
    for tool in ("javac", "java", "bash"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (install a JDK)"
    if not JUNIT_JAR.is_file():
        return f"JUnit jar not found at {JUNIT_JAR} (apt-get install junit4, or set JUNIT_JAR)"
    return None


def _run_core_tests(build_dir: Path, *classes: str, golden_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    reason = java_prerequisites()
    if reason is not None:
        print(f"SKIP Java core tests: {reason}")
        pytest.skip(reason)
    env = dict(os.environ, BUILD_DIR=str(build_dir), JUNIT_JAR=str(JUNIT_JAR))
    env.pop("GOLDEN_DIR", None)
    if golden_dir is not None:
        env["GOLDEN_DIR"] = str(golden_dir)
    return subprocess.run(["bash", str(RUN_CORE_TESTS), *classes], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="session")
def run_core_tests() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_core_tests(build_dir, *classes, golden_dir=None)`: compiles android_demo/core and runs its JUnit 4
    tests (all, or the named classes) with android_demo/core/run_tests.sh into `build_dir`; GOLDEN_DIR is
    `golden_dir` when given. Skips the calling test, saying why, where javac/java or the JUnit jar
    (Debian package junit4) is missing.
    """
    return _run_core_tests
