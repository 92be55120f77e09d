"""android_demo/prepare_assets.py, the newest-export lookup, and the app's layering (core API only)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from android_demo import model_files, prepare_assets

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def description(make_description):
    return make_description(precision="int8")


@pytest.fixture(scope="module")
def with_metadata(one_conv_tflite: bytes, description) -> bytes:
    from convert.tflite_file import add_metadata

    return add_metadata(one_conv_tflite, description)


def test_copies_model_and_writes_metadata(
    with_metadata: bytes, description, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "runs" / "a" / "model_int8.tflite"
    model.parent.mkdir(parents=True)
    model.write_bytes(with_metadata)
    assets = tmp_path / "assets"
    assert prepare_assets.main(["--model", str(model), "--assets", str(assets)]) == 0
    assert (assets / "model.tflite").read_bytes() == with_metadata
    assert json.loads((assets / "model.json").read_text()) == description.to_dict()  # version 2, what the app reads
    assert "model mobilenetv2_ksac, precision int8, input [9, 9], output logits" in capsys.readouterr().out


def test_clear_errors(one_conv_tflite: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assets = tmp_path / "assets"
    assert prepare_assets.main(["--model", str(tmp_path / "nope.tflite"), "--assets", str(assets)]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "nope.tflite" in err

    bare = tmp_path / "bare.tflite"
    bare.write_bytes(one_conv_tflite)
    assert prepare_assets.main(["--model", str(bare), "--assets", str(assets)]) == 2
    err = capsys.readouterr().err
    assert "bare.tflite" in err and "metadata" in err

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert prepare_assets.main(["--model", str(junk), "--assets", str(assets)]) == 2
    assert "junk.tflite" in capsys.readouterr().err
    assert not assets.exists()  # nothing half-written


def test_newest_int8_export(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match="no exported model"):
        model_files.newest_export(runs_dir=runs)
    old = runs / "old" / "model_int8.tflite"
    new = runs / "new" / "deep" / "model_int8.tflite"
    fp32 = runs / "newer" / "model_fp32.tflite"
    for i, p in enumerate((old, new, fp32)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        stamp = time.time() - 100 + 10 * i
        os.utime(p, (stamp, stamp))
    assert model_files.newest_export(runs_dir=runs) == new


def test_help_explains_flags() -> None:
    text = prepare_assets.build_parser().format_help()
    assert "--model" in text and "newest" in text and "--assets" in text


# ---------------------------------------------------------------- the app's layering

APP_SRC = ROOT / "android_demo" / "app" / "src"
ALLOWED_IMPORTS = ("android.", "androidx.", "com.google.android.material.", "org.tensorflow.lite.", "dev.ksaczoo.core.",
                   "java.", "kotlin.", "org.junit.")


def _kotlin_sources() -> list[Path]:
    return sorted(APP_SRC.rglob("*.kt"))


def test_app_uses_only_core_api_besides_display_and_litert() -> None:
    sources = _kotlin_sources()
    assert {p.name for p in sources} >= {"MainActivity.kt", "LiteRtSegmenter.kt", "GoldenInstrumentedTest.kt"}
    for path in sources:
        text = path.read_text()
        for imp in re.findall(r"^import\s+(\S+)", text, flags=re.M):
            assert imp.startswith(ALLOWED_IMPORTS), f"{path.name} imports {imp}"
        # no pre/post-processing in the Android layer: no normalisation constants, no per-pixel bit work,
        # no hard-coded input sizes or class counts
        for token in ("127.5", "255f", "shr ", "ushr", "and 0xFF", "argmax", "513", "257", "21)"):
            assert token not in text, f"{path.name} contains {token!r}: that belongs in the core module"
    segmenter = (APP_SRC / "main" / "java" / "dev" / "ksaczoo" / "demo" / "LiteRtSegmenter.kt").read_text()
    assert "pipeline.prepare(" in segmenter and "pipeline.finish(" in segmenter
    assert "ModelDescription.fromJson(" in segmenter
    assert "Interpreter.Options().setNumThreads(" in segmenter and "GpuDelegate(" in segmenter


def test_gradle_project_shape() -> None:
    demo = ROOT / "android_demo"
    settings = (demo / "settings.gradle.kts").read_text()
    assert 'include(":app", ":core")' in settings
    app = (demo / "app" / "build.gradle.kts").read_text()
    assert "minSdk = 24" in app
    assert "com.google.ai.edge.litert:litert:" in app and "com.google.ai.edge.litert:litert-gpu:" in app
    assert 'implementation(project(":core"))' in app
    core = (demo / "core" / "build.gradle.kts").read_text()
    assert "java-library" in core and "android" not in core.replace("Android", "").lower().replace("android_demo", "")
    ignored = (demo / ".gitignore").read_text()
    assert "app/src/main/assets/model.tflite" in ignored and "app/src/main/assets/model.json" in ignored
