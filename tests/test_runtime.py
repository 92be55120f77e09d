"""The runtime that apps and boards install (ksac_runtime, docs/runtime.md): `Segmenter` and `ksac-segment`
give the toolkit's labels (`evaluation/predict.py`), the overlay and its legend, clear errors; and the wheel,
installed into a fresh virtualenv with nothing else, does the same without TensorFlow.

The files are `benchmarks.runtime_check`'s (what `make arm-runtime-check` runs under emulation): a tiny
mobilenetv2_ksac in fp32 and int8 whose label maps hold several classes, and its four test images
(square, landscape, portrait, smaller than the input).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ksac_runtime import ImageError, Segmenter
from ksac_runtime.images import read_labels_png, read_rgb
from ksac_runtime.segment import main as segment_main

pytestmark = pytest.mark.xdist_group("runtime")  # one worker builds the files once

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """({precision: path}, image paths, {precision: {image: the toolkit's labels}})."""
    from benchmarks.runtime_check import make_test_files, toolkit_labels

    models, images = make_test_files(tmp_path_factory.mktemp("runtime"), calibration_steps=4, log=lambda _: None)
    return models, images, toolkit_labels(models, images)


def test_segment_gives_the_toolkits_labels_at_the_images_size(files):
    models, images, reference = files
    classes = set()
    for precision, path in models.items():
        segmenter = Segmenter(path, threads=1)
        assert segmenter.description.precision == precision and segmenter.input_size == (65, 65)
        for image_path in images:
            image = read_rgb(image_path)
            labels = segmenter.segment(image)
            assert labels.dtype == np.uint8 and labels.shape == image.shape[:2]
            np.testing.assert_array_equal(labels, reference[precision][image_path], err_msg=f"{precision} {image_path}")
            classes |= set(np.unique(labels).tolist())
            timing = segmenter.last_timing
            assert min(timing.preprocess_ms, timing.inference_ms, timing.postprocess_ms) > 0
            assert timing.total_ms == pytest.approx(timing.preprocess_ms + timing.inference_ms + timing.postprocess_ms)
    assert len(classes) >= 3, f"the maps hold {sorted(classes)}: too few classes for the comparison to mean much"


def test_logits_over_the_content_region_give_segment(files):
    from ksac_runtime.preprocess import labels_for_image, letterbox_size

    models, images, _ = files
    for path in models.values():
        segmenter = Segmenter(path, threads=1)
        image = read_rgb(images[1])  # landscape: the content region is not the whole input
        scores = segmenter.logits(image)
        height, width, _ = letterbox_size(image.shape[:2], segmenter.input_size)
        assert scores.dtype == np.float32 and scores.shape == (height, width, segmenter.description.num_classes)
        labels = labels_for_image(scores.argmax(-1).astype(np.uint8), (height, width), image.shape[:2])
        np.testing.assert_array_equal(labels, segmenter.segment(image))


def test_argmax_labels_is_numpys_with_ties_nan_and_integers():
    from ksac_runtime.segmenter import argmax_labels

    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 3, (40, 30, 7)).astype(np.float32)  # many ties: the first index wins
    scores[5, 5, 3] = np.nan
    scores[6, 6] = np.nan
    np.testing.assert_array_equal(argmax_labels(scores), np.argmax(scores, -1))
    quantized = rng.integers(-128, 128, (33, 17, 21)).astype(np.int8)
    np.testing.assert_array_equal(argmax_labels(quantized), np.argmax(quantized, -1))
    assert argmax_labels(quantized).dtype == np.uint8


def test_wrong_images_files_and_settings_get_clear_errors(files, tmp_path, one_conv_tflite):
    models, _, _ = files
    segmenter = Segmenter(models["int8"], threads=1)
    for image, says in [
        (np.zeros((20, 30, 3), np.float32), "uint8 pixels"),
        (np.zeros((20, 30), np.uint8), "single-channel"),
        (np.zeros((20, 30, 4), np.uint8), "drop the alpha channel"),
        ([[0, 0, 0]], "numpy array"),
        (np.zeros((0, 30, 3), np.uint8), "H x W x 3"),
    ]:  # fmt: skip
        with pytest.raises(ImageError, match=says):
            segmenter.segment(image)
    (tmp_path / "notes.tflite").write_text("not a model")
    with pytest.raises(ValueError, match="notes.tflite is not a TFLite model"):
        Segmenter(tmp_path / "notes.tflite")
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        Segmenter(tmp_path / "missing.tflite")
    (tmp_path / "bare.tflite").write_bytes(one_conv_tflite)  # a TFLite file without this project's description
    with pytest.raises(ValueError, match="has no 'ksac_zoo_description' metadata"):
        Segmenter(tmp_path / "bare.tflite")
    with pytest.raises(ValueError, match="threads must be"):
        Segmenter(models["int8"], threads=0)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Segmenter(models["int8"], device="tpu")


def test_class_colours_honour_colour_names_and_keep_vocs():
    from ksac_runtime.palette import NAMED_COLOURS, class_colours, voc_palette

    voc_names = ["background", "aeroplane", "bicycle", "bird"]
    np.testing.assert_array_equal(class_colours(voc_names), voc_palette())
    colours = class_colours(["background", "red", "yellow", "green", "blue"])
    assert [tuple(colours[i]) for i in (1, 2, 3, 4)] == [NAMED_COLOURS[n] for n in ("red", "yellow", "green", "blue")]
    assert tuple(voc_palette()[3]) == (128, 128, 0)  # VOC's colour of index 3, olive: what "green" was drawn in
    # A class without a colour name never takes the colour a named class has.
    mixed = class_colours(["background", "maroon", "thing"])  # VOC's colour 1 is maroon
    assert tuple(mixed[1]) == NAMED_COLOURS["maroon"] and tuple(mixed[2]) not in {tuple(mixed[1])}
    assert len({tuple(c) for c in mixed[:3]}) == 3


def test_the_overlay_names_each_class_present(files):
    from ksac_runtime.palette import legend_panel

    models, images, _ = files
    segmenter = Segmenter(models["fp32"], threads=1)
    image = read_rgb(images[0])
    labels = segmenter.segment(image)
    below = segmenter.overlay(image, labels)
    assert below.shape[0] > image.shape[0] and below.shape[1] >= image.shape[1] and below.dtype == np.uint8
    legend = below[image.shape[0]:]
    for c in set(np.unique(labels).tolist()) - {0}:  # every class present has its swatch in the legend
        assert np.all(legend == segmenter.colours[c], axis=-1).sum() >= 9, segmenter.name_of(c)
    inside = segmenter.overlay(image, labels, legend="inside")
    assert inside.shape == image.shape
    plain = segmenter.overlay(image, labels, legend="none", alpha=1.0)
    painted = labels > 0
    np.testing.assert_array_equal(plain[painted], segmenter.colours[labels[painted]])
    np.testing.assert_array_equal(plain[~painted], image[~painted])
    only_background = legend_panel([], segmenter.label_names, segmenter.colours, 100)
    assert only_background.shape[1] >= 100 and (only_background < 255).any()  # "background only"


def test_ksac_segment_writes_labels_and_overlays_and_prints_a_line_each(files, tmp_path, capsys):
    models, images, reference = files
    out = tmp_path / "out"
    assert segment_main(["--model", models["int8"], *images, "--out", str(out), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(images)
    for line, image in zip(lines, images):
        stem = Path(image).stem
        assert line.startswith(f"{image}: ") and " ms (model " in line and "%" in line, line
        np.testing.assert_array_equal(read_labels_png(out / f"{stem}_labels.png"), reference["int8"][image])
        assert (out / f"{stem}_overlay.png").is_file()
    assert segment_main(["--model", models["fp32"], images[0], "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    entry = report["images"][0]
    assert report["precision"] == "fp32" and report["input_size"] == [65, 65] and entry["image"] == images[0]
    assert set(entry["ms"]) == {"preprocess", "inference", "postprocess", "total"}
    assert abs(sum(entry["classes"].values()) - 100) < 0.1


def test_ksac_segment_refuses_bad_input_before_writing(files, tmp_path, capsys):
    models, images, _ = files
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(Path(images[0]).read_bytes())
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(Path(images[0]).read_bytes())
    out = tmp_path / "out"
    cases = [
        ([images[0], str(tmp_path / "notes.txt")], "notes.txt is not an image"),
        ([images[0], str(tmp_path / "nope.png")], "image file not found"),
        ([str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png")], "would both write"),
        ([images[0], "--threads", "0"], "--threads must be at least 1"),
        ([images[0], "--video", str(tmp_path / "nope.mp4")], "video file not found"),
    ]
    for args, says in cases:
        assert segment_main(["--model", models["int8"], *args, "--out", str(out)]) == 2, args
        assert says in capsys.readouterr().err, args
        assert not out.exists(), args
    with pytest.raises(SystemExit) as stop:
        segment_main(["--model", models["int8"]])
    assert stop.value.code == 2 and "nothing to segment" in capsys.readouterr().err
    assert segment_main(["--model", images[0], images[0], "--out", str(out)]) == 2  # an image as the model
    assert "is not a TFLite model" in capsys.readouterr().err


def test_ksac_segment_writes_an_overlay_video_with_a_progress_line(files, tmp_path, capsys):
    import cv2

    models, images, _ = files
    video = str(tmp_path / "clip.mp4")
    frame = cv2.cvtColor(read_rgb(images[1]), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (frame.shape[1], frame.shape[0]))
    assert writer.isOpened(), "this OpenCV writes no mp4v video"
    for shift in range(6):
        writer.write(np.roll(frame, 8 * shift, axis=1))
    writer.release()
    out = tmp_path / "out"
    assert segment_main(["--model", models["int8"], "--video", video, "--frames", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "clip.mp4: 4 frames, " in printed.out and " frames/s " in printed.out
    assert "clip.mp4: frame 4/4 (100%)" in printed.err  # the progress line
    result = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    shapes = []
    while (read := result.read())[0]:
        shapes.append(read[1].shape)
    assert shapes == [frame.shape] * 4  # the legend inside the frame: the video's size
    assert sorted(os.listdir(out)) == ["clip_overlay.mp4"]  # no partial file left


def test_ksac_segment_without_a_gpu_or_a_camera_is_exit_2(files, tmp_path):
    models, images, _ = files
    # No Vulkan driver: LiteRT's GPU accelerator finds no adapter (a child process: no TensorFlow there).
    env = dict(os.environ, VK_ICD_FILENAMES=str(tmp_path / "none.json"), VK_DRIVER_FILES=str(tmp_path / "none.json"))
    done = subprocess.run([sys.executable, "-m", "ksac_runtime", "--model", models["fp32"], images[0], "--device", "gpu",
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2 and "error: LiteRT GPU accelerator unavailable" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
    assert segment_main(["--model", models["fp32"], "--camera", "97", "--out", str(tmp_path / "out")]) == 2


def test_recipes_are_found_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    from configs import ConfigError, find_config, read_file, recipes

    monkeypatch.chdir(tmp_path)  # not the checkout: configs/paper/ is not beside the command
    path = find_config("paper/mobilenetv2_ksac")
    assert Path(path) == ROOT / "configs" / "paper" / "mobilenetv2_ksac.yaml"
    assert find_config("configs/paper/mobilenetv2_ksac.yaml") == path  # the docs' spelling, from anywhere
    assert read_file(path)["model"]["name"] == "mobilenetv2_ksac"
    assert "paper/xception65_ksac" in recipes()
    (tmp_path / "mine.yaml").write_text("model: {}\n")
    assert find_config("mine.yaml") == "mine.yaml"  # a file is a file first
    with pytest.raises(ConfigError, match=r"config file not found: paper/nope \(nor a recipe .*paper/mobilenetv2_aspp"):
        find_config("paper/nope")
    with pytest.raises(ConfigError):
        find_config("../configs/paper/mobilenetv2_ksac")  # names stay inside configs/


# ---------------------------------------------------------------- installed: the wheel, and the toolkit


def _make_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The runtime's wheel, built by `make runtime-wheel` into a folder of the test's (skips where it cannot be)."""
    folder = tmp_path_factory.mktemp("wheel")
    stamp = folder / "stamp"  # newer than pyproject.toml: the virtualenv as it is, not rebuilt here
    stamp.write_text("")
    done = subprocess.run(["make", "--no-print-directory", "runtime-wheel", f"RUNTIME_DIST={folder / 'dist'}",
                           f"RUNTIME_BUILD={folder / 'build'}", f"STAMP={stamp}", f"PY={sys.executable}"],
                          cwd=ROOT, env=_make_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    wheels = sorted((folder / "dist").glob("ksac_runtime-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        pytest.skip(f"`make runtime-wheel` could not build the wheel (exit {done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return wheels[0]


@pytest.mark.slow
def test_the_wheel_alone_segments_as_the_toolkit_does_without_tensorflow(files, wheel, tmp_path):
    import re

    from benchmarks.runtime_check import check_here, print_report, wheel_facts

    facts = wheel_facts(wheel)
    assert facts["top_level"] == ["ksac_runtime"] and facts["scripts"] == ["ksac-segment"], facts
    required = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in facts["requires"]}
    assert required == {"numpy", "ai-edge-litert", "flatbuffers", "opencv-python-headless"}, facts["requires"]
    models, images, reference = files
    report = check_here(str(wheel), models, images, reference, tmp_path, log=print)  # CheckFailed where labels differ
    print_report({"wheel": facts, "x86": report})  # the figures of docs/runtime.md (pytest -s shows them)
    assert report["tensorflow_installed"] is False
    for precision in ("fp32", "int8"):
        figures = report["precisions"][precision]
        assert figures["identical"] and figures["agreement"] == 100.0 and figures["classes"] >= 3, (precision, figures)
    runtime, toolkit = report["sizes"]["ksac-runtime"], report["sizes"]["ksac-edge-zoo"]
    assert "tensorflow" not in runtime["distributions"] and "tensorflow" in toolkit["distributions"]
    assert runtime["bytes"] < toolkit["bytes"] / 4, report["sizes"]


@pytest.mark.slow
def test_the_toolkit_installed_with_pip_works_from_another_folder(tmp_path):
    """`pip install .` (not editable), used from another folder: every command answers, the recipes by name."""
    import shutil
    import tomllib

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    source = tmp_path / "source"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--no-build-isolation", "--target", str(site), str(source)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (site / "configs" / "paper" / "mobilenetv2_ksac.yaml").is_file()
    assert (site / "ksac_runtime" / "model_description.schema.json").is_file()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    modules = sorted({target.split(":")[0] for target in scripts.values()} | {"convert.inspect", "inference.arm"})
    # Every command's --help in one child process (TensorFlow imported once), from a folder that is not the checkout.
    runner = (
        "import contextlib, io, json, runpy, sys\n"
        "results = {}\n"
        "for module in sys.argv[1:]:\n"
        "    sys.argv = [module, '--help']\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):\n"
        "            runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
        "    except SystemExit as stop:\n"
        "        results[module] = [stop.code, sys.modules[module.rsplit('.', 1)[0]].__file__, out.getvalue()[:60]]\n"
        "from configs import find_config\n"
        "results['recipe'] = find_config('paper/mobilenetv2_ksac')\n"
        "from training.train import main\n"  # a recipe by name, as docs/training.md names it: read, then its data spec fails
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    results['train'] = [main(['--config', 'paper/mobilenetv2_ksac', '--out', 'run']), err.getvalue()[-1500:]]\n"
        "print(json.dumps(results))\n"
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", runner, *modules], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results.pop("recipe") == str(site / "configs" / "paper" / "mobilenetv2_ksac.yaml")
    code, message = results.pop("train")
    assert code == 2 and "config file not found" not in message and "VOCdevkit" in message, message
    assert not (elsewhere / "run").exists()
    for module, (code, path, usage) in results.items():
        assert code == 0 and usage.startswith("usage:"), (module, code, usage)
        assert Path(path).is_relative_to(site), (module, path)  # the installed copy, not the checkout
