"""quantize/compare.py end to end on a tiny model: fp32, int8 PTQ and int8 QAT rows from .tflite files."""

import hashlib
import json

import numpy as np
import pytest

from convert.export import export_tflite
from quantize import compare as compare_cli
from evaluation.evaluate import evaluate


def weights_key(model) -> str:
    """A digest of a model's weights: the same model loaded again has the same key."""
    return hashlib.sha1(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


@pytest.mark.slow
def test_compare_end_to_end(save_tiny_model, tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "model.keras")
    model = save_tiny_model(path, data="synthetic")
    # A QAT folder holding an int8 export, standing in for quantize/qat.py's (tested in test_quantize_qat.py).
    exports = {("int8", weights_key(model)): export_tflite(model, "int8", calibration="synthetic", calibration_steps=4,
                                                           check_parity=False)}  # fmt: skip
    qat_dir = tmp_path / "qat"
    qat_dir.mkdir()
    (qat_dir / "model_int8.tflite").write_bytes(exports["int8", weights_key(model)].tflite)
    # Stand-in QAT weights that differ from the float model's: a logits bias that makes background win
    # everywhere, so that the "QAT fp32" row can only match if it really is model_qat.keras' export.
    bias = model.get_layer("logits").bias
    bias.assign(bias.numpy() + 100.0 * (np.arange(bias.shape[0]) == 0))
    model.save(str(qat_dir / "model_qat.keras"))

    def remembered(model, precision, **kwargs):  # each (weights, precision) is exported once
        key = (precision, weights_key(model))
        if key not in exports:
            exports[key] = export_tflite(model, precision, **kwargs)
        return exports[key]

    monkeypatch.setattr("convert.export.export_tflite", remembered)
    code = compare_cli.main(["--model", path, "--limit", "4", "--calibration-steps", "4", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows] == ["fp32", "int8 PTQ", "int8 QAT", "QAT fp32"]
    assert all(r["status"] == "ok" for r in rows) and rows[0]["drop"] == 0
    assert 0 <= rows[1]["miou"] <= 100 and rows[1]["bytes"] < rows[0]["bytes"]
    assert abs(rows[2]["drop"] - (rows[0]["miou"] - rows[2]["miou"])) < 1e-9
    assert rows[2]["miou"] == rows[1]["miou"]  # the stand-in QAT file is the PTQ file
    # QAT fp32 is the fp32 export of model_qat.keras: the mIoU that model gets in Keras, not the float model's.
    qat_float = evaluate(str(qat_dir / "model_qat.keras"), "synthetic", limit=4)["miou"]
    assert rows[3]["miou"] == pytest.approx(qat_float, abs=1e-6) and rows[3]["miou"] != rows[0]["miou"]
    assert rows[3]["drop"] == pytest.approx(rows[0]["miou"] - qat_float, abs=1e-6)
    assert "int8 QAT" in compare_cli.format_table(rows)

    # Without a QAT folder, the QAT row says so.
    rows = compare_cli.compare(path, qat_dir=str(tmp_path / "absent"), limit=4, calibration_steps=4)
    assert len(rows) == 3 and rows[2]["status"] == "not run" and rows[2]["miou"] is None and rows[2]["drop"] is None
    assert "not run" in compare_cli.format_table(rows)


def test_compare_missing_model_names_the_file(tmp_path, capsys):
    missing = str(tmp_path / "absent.keras")
    assert compare_cli.main(["--model", missing]) == 2  # the user's input (docs/cli.md)
    assert missing in capsys.readouterr().err
