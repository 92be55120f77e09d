"""The web demo's description reader (web_demo/description.mjs) on a real export, through its node test.

Exports the suite's tiny model to an fp32 `.tflite` (the exporter's own description, the standard
TFLite Metadata entry and the zip appended after the flatbuffer all present), then runs
`node --test web_demo/tests/description.test.mjs` with KSAC_TFLITE naming that file: the node test
reads the description out of the flatbuffer, checks its version and validates it against
ksac_runtime/model_description.schema.json with Ajv (web_demo's devDependency), besides its own cases
(v1 accepted, v3 refused, bad descriptions rejected naming the path).

Skips, saying why, only where `node` is not on PATH or web_demo/node_modules lacks Ajv (`npm ci`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
NODE_TEST = "web_demo/tests/description.test.mjs"
AJV = ROOT / "web_demo" / "node_modules" / "ajv" / "package.json"

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node not on PATH: install Node.js 20+ (the web demo's runtime)"),
    pytest.mark.skipif(
        not AJV.is_file(),
        reason="web_demo/node_modules has no ajv: run `cd web_demo && npm ci` (make web-demo/web-test do too)",
    ),
]


@pytest.fixture(scope="module")
def tiny_export(make_tiny_export_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny mobilenetv2_ksac exported to fp32 by the real exporter (no parity run: only its file matters)."""
    from convert.export import export_tflite

    result = export_tflite(make_tiny_export_model("mobilenetv2_ksac"), "fp32", check_parity=False)
    path = tmp_path_factory.mktemp("description_js") / "tiny_fp32.tflite"
    path.write_bytes(result.tflite)
    return path


@pytest.mark.slow
def test_node_reads_and_validates_the_exported_description(tiny_export: Path) -> None:
    env = dict(os.environ, KSAC_TFLITE=str(tiny_export))
    proc = subprocess.run(
        [NODE, "--test", NODE_TEST], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, output
    # every case ran, the real file's included (it is skipped only without KSAC_TFLITE)
    assert "# fail 0" in proc.stdout and "# skipped 0" in proc.stdout, output
    assert "KSAC_TFLITE tiny_fp32.tflite: mobilenetv2_ksac" in output, output


@pytest.mark.slow
def test_node_reads_what_python_reads(tiny_export: Path) -> None:
    from inference.description import read_metadata

    script = (
        "import { readFileSync } from 'node:fs';"
        "import { readDescription } from './web_demo/description.mjs';"
        "console.log(JSON.stringify(readDescription(readFileSync(process.argv[1]))));"
    )
    proc = subprocess.run(
        [NODE, "--input-type=module", "-e", script, str(tiny_export)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == read_metadata(tiny_export)
