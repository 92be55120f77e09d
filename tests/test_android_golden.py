"""Golden vectors: a tiny int8 mobilenetv2_ksac run by LiteRT in Python, checked by the Java core.

make_golden.py writes the image, the preprocessed input, the logits and the labels; the core's
GoldenTest recomputes the input from the image and the labels from the logits and must match exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from android_demo import make_golden, reference

# `--dist loadgroup` runs this module on one worker: the int8 export fixture is built once.
pytestmark = pytest.mark.xdist_group("golden_int8")


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from android_demo.tiny_model import export_tiny

    path = tmp_path_factory.mktemp("export") / "model_int8.tflite"
    used = export_tiny(path, "int8")
    print(f"tiny int8 mobilenetv2_ksac made with the {used} exporter")
    return path


@pytest.mark.slow
def test_golden_int8_matches_java_core(int8_model: Path, run_core_tests, tmp_path: Path) -> None:
    out = tmp_path / "golden"
    assert make_golden.main(["--model", str(int8_model), "--out", str(out)]) == 0
    manifest = json.loads((out / "golden.json").read_text())
    assert manifest["metadata"]["precision"] == "int8"
    assert manifest["metadata"]["name"] == "mobilenetv2_ksac"
    assert len(manifest["classes_present"]) >= 2, "a golden label map with one class tests little"
    for name in ("image.png", "image_rgb.bin", "input_f32.bin", "labels.png", "labels_u8.bin", "logits_f32.bin"):
        assert (out / name).is_file(), name
    h, w = manifest["metadata"]["input_size"]
    assert (out / "labels_u8.bin").stat().st_size == h * w
    assert (out / "input_f32.bin").stat().st_size == 4 * h * w * 3

    proc = run_core_tests(tmp_path / "javac", "GoldenTest", golden_dir=out)
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK (3 tests)" in proc.stdout
    assert "fraction equal = 1.000000" in proc.stdout
    assert "SKIPPED" not in proc.stdout


def test_reference_resize_matches_opencv() -> None:
    import cv2

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for size in ((20, 29), (65, 93), (37, 53)):
        mine = reference.resize_bilinear(image, *size)
        theirs = cv2.resize(image.astype(np.float64), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        assert np.abs(mine - theirs).max() < 1e-6, size


def test_reference_preprocess_letterbox() -> None:
    image = np.full((10, 20, 3), 255, dtype=np.uint8)
    x, (ch, cw) = reference.preprocess(image, (8, 8), {"mean": [127.5] * 3, "std": [127.5] * 3})
    assert (ch, cw) == (4, 8)
    assert x.shape == (1, 8, 8, 3) and x.dtype == np.float32
    assert np.all(x[0, :4] == 1.0) and np.all(x[0, 4:] == 0.0)


def test_reference_palette() -> None:
    p = reference.voc_palette(256)
    assert p[1].tolist() == [128, 0, 0] and p[15].tolist() == [192, 128, 128] and p[255].tolist() == [224, 224, 192]


def test_make_golden_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_golden.main(["--model", str(tmp_path / "missing.tflite"), "--out", str(tmp_path / "g")]) == 2
    assert "model file not found" in capsys.readouterr().err
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a flatbuffer at all")
    assert make_golden.main(["--model", str(bogus), "--out", str(tmp_path / "g")]) == 2
    assert "bogus.tflite" in capsys.readouterr().err
