"""train.py end to end with tiny models: resume exactness, bad inputs, train -> evaluate -> predict."""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest

from evaluation import evaluate as evaluate_cli
from evaluation import predict as predict_cli
from training import train as train_cli
from configs import read_file

# `--dist loadgroup` runs this module on one worker: the training-run fixture is built once.
pytestmark = [pytest.mark.trains, pytest.mark.xdist_group("straight_run")]

TINY = ["--backbone", "mobilenetv2", "--head", "ksac", "--width", "0.35", "--head-filters", "32",
        "--crop-size", "65", "--batch-size", "2", "--lr", "0.01", "--seed", "3", "--log-every", "1"]  # fmt: skip


def losses(run_dir):
    with open(os.path.join(run_dir, "train_log.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {int(r["step"]): float(r["loss"]) for r in rows}


def weights(run_dir):
    import tf_keras as keras

    import zoo  # noqa: F401

    return keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False).get_weights()


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "straight")
    assert train_cli.main(TINY + ["--steps", "6", "--out", out]) == 0
    return out


@pytest.mark.slow
def test_a_config_file_and_resume_from_the_run_config_are_exact(straight_run, tmp_path):
    """The straight run's flags, given as a --config file instead; stopped at step 3, then
    `train.py --config RUN/config.yaml --resume` continues to the same losses and weights."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "model: {name: mobilenetv2_ksac, width: 0.35, head_filters: 32}\n"
        "data: {crop_size: 65, batch_size: 2}\n"
        "optimizer: {lr: 0.01}\n"
        "schedule: {steps: 6}\n"
        "training: {seed: 3, log_every: 1, checkpoint_every: 100}\n"
    )
    out = str(tmp_path / "split")
    assert train_cli.main(["--config", str(recipe), "--stop-at", "3", "--out", out]) == 0
    assert os.path.isfile(os.path.join(out, "checkpoints", "ckpt-3.index"))
    assert train_cli.main(["--config", os.path.join(out, "config.yaml"), "--resume"]) == 0
    saved, straight = (read_file(os.path.join(run, "config.yaml")) for run in (out, straight_run))
    for config in (saved, straight):
        del config["training"]["out"], config["training"]["checkpoint_every"]
    assert saved == straight
    a, b = losses(straight_run), losses(out)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    assert np.allclose([a[s] for s in range(1, 7)], [b[s] for s in range(1, 7)], rtol=1e-4, atol=1e-5), (a, b)
    for wa, wb in zip(weights(straight_run), weights(out)):
        assert np.allclose(wa, wb, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_run_folder_contents(straight_run):
    names = set(os.listdir(straight_run))
    assert {"model.keras", "checkpoints", "train_log.csv", "tensorboard", "config.yaml"} <= names
    with open(os.path.join(straight_run, "train_log.csv")) as f:
        assert f.readline().startswith("step,")
    from zoo import describe
    import tf_keras as keras

    model = keras.models.load_model(os.path.join(straight_run, "model.keras"), compile=False)
    desc = describe(model)
    assert desc.data == "synthetic" and desc.label_names[0] == "background" and desc.input_size == (65, 65)


@pytest.mark.slow
def test_evaluate_and_predict(straight_run, tmp_path, capsys):
    model = os.path.join(straight_run, "model.keras")
    result = evaluate_cli.evaluate(model, None, limit=3)
    assert 0 <= result["miou"] <= 100 and result["images"] == 3 and len(result["per_class"]) == 21
    capsys.readouterr()
    assert evaluate_cli.main(["--model", model, "--json", "--limit", "2", "--flip", "--multi-scale"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "miou" in printed and "per_class" in printed and printed["resize"] == "letterbox"
    assert evaluate_cli.main(["--model", model, "--json", "--limit", "2", "--resize", "stretch"]) == 0
    assert json.loads(capsys.readouterr().out)["resize"] == "stretch"  # MediaPipe's way, on request

    from data.datasets import open_dataset

    image, _ = open_dataset("synthetic", "val").load(0)
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, cv2.cvtColor(image[:100, :80], cv2.COLOR_RGB2BGR))
    out = str(tmp_path / "pred" / "overlay.png")
    assert predict_cli.main(["--model", model, "--image", path, "--out", out]) == 0
    overlay = cv2.imread(out)
    from PIL import Image

    labels = np.asarray(Image.open(str(tmp_path / "pred" / "overlay_labels.png")))
    assert labels.shape == (100, 80) and labels.max() < 21
    assert overlay.shape[0] > 100 and overlay.shape[1] >= 80  # the image, the legend below it
    assert predict_cli.main(["--model", model, "--image", path, "--out", out, "--resize", "stretch"]) == 0
    assert np.asarray(Image.open(str(tmp_path / "pred" / "overlay_labels.png"))).shape == (100, 80)


def test_bad_inputs_fail_before_writing(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "images" / "ok.png"), np.zeros((40, 40, 3), np.uint8))
    cv2.imwrite(str(folder / "masks" / "ok.png"), np.ones((40, 40), np.uint8))
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    cv2.imwrite(str(folder / "masks" / "broken.png"), np.zeros((40, 40), np.uint8))
    cases = [
        (["--data", f"folder:{folder}"], "broken.jpg"),
        (["--data", "imagenet:/x"], "imagenet"),
        (["--crop-size", "8"], "--crop-size 8"),
    ]
    for extra, expected in cases:
        out = tmp_path / f"out{len(expected)}"
        assert train_cli.main(TINY + ["--steps", "2", "--out", str(out)] + extra) != 0
        assert expected in capsys.readouterr().err
        assert not out.exists()
    # a mask whose size differs from its image
    (folder / "images" / "broken.jpg").unlink()
    cv2.imwrite(str(folder / "masks" / "ok.png"), np.ones((30, 40), np.uint8))
    assert train_cli.main(TINY + ["--steps", "2", "--out", str(tmp_path / "o"), "--data", f"folder:{folder}"]) != 0
    assert "ok.png" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert evaluate_cli.main(["--model", str(tmp_path / "missing.keras")]) != 0
    assert "missing.keras" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]')  # unterminated
    assert train_cli.main(TINY + ["--steps", "2", "--out", str(tmp_path / "tf_config")]) == 2
    assert "TF_CONFIG is not valid JSON" in capsys.readouterr().err and not (tmp_path / "tf_config").exists()


@pytest.mark.parametrize(
    "tf_config, extra, expected",
    [
        (None, ["--strategy", "multiworker"], "--strategy multiworker needs TF_CONFIG"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}', [], "TF_CONFIG has a cluster but no 'task'"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
         ["--cpu-replicas", "2"], "--cpu-replicas 2 trains this process alone"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}',
         ["--strategy", "default"], "--strategy default trains this process alone"),
    ],
    ids=["multiworker-without-TF_CONFIG", "cluster-without-task", "cluster-and-cpu-replicas", "cluster-and-default"],
)
def test_a_contradictory_multi_worker_request_is_refused_before_writing(tmp_path, capsys, monkeypatch, tf_config, extra, expected):
    """Each of these once trained alone (or crashed in TensorFlow), each process thinking itself chief."""
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    out = tmp_path / "run"
    assert train_cli.main(TINY + ["--steps", "2", "--out", str(out), *extra]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_a_forced_dilated_form_without_its_gradient_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    """float64 has no native dilated-conv gradient on any CPU kernel library: forcing it would fail at step 1."""
    monkeypatch.setenv("KSAC_DILATED_CONV", "native")
    out = tmp_path / "run"
    assert train_cli.main(TINY + ["--steps", "2", "--float64", "--out", str(out)]) == 2
    assert "KSAC_DILATED_CONV=native" in capsys.readouterr().err and not out.exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing_to_resume(tmp_path, capsys, monkeypatch):
    """A sample that cannot be decoded, met at step 1 (the up-front check skipped): the run folder, which
    would hold a config and a log but no checkpoint, is removed and runs/latest points where it did."""
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    cv2.imwrite(str(folder / "masks" / "broken.png"), np.zeros((40, 40), np.uint8))
    runs = tmp_path / "runs"
    (runs / "older").mkdir(parents=True)
    os.symlink("older", runs / "latest")
    monkeypatch.chdir(tmp_path)
    args = TINY + ["--steps", "2", "--data", f"folder:{folder}", "--no-data-check"]
    assert train_cli.main(args) == 2  # a file that is not an image: the user's input (docs/cli.md)
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "removed" in err
    assert sorted(os.listdir(runs)) == ["latest", "older"] and os.readlink(runs / "latest") == "older"
    out = tmp_path / "named"  # --out given: the folder goes too
    assert train_cli.main(args + ["--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "nan")
    args = TINY + ["--steps", "6", "--checkpoint-every", "2", "--out", out]
    args[args.index("--lr") + 1] = "1e30"
    assert train_cli.main(args) == 1
    err = capsys.readouterr().err
    assert "loss is" in err and not os.path.exists(os.path.join(out, "model.keras"))


def test_what_a_killed_checkpoint_save_leaves_is_removed(tmp_path):
    import tensorflow as tf

    from training.runs import remove_partial_checkpoints

    variable = tf.Variable(1.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(tmp_path), max_to_keep=3, checkpoint_name="ckpt")
    for step in (2, 4):
        variable.assign(float(step))
        manager.save(checkpoint_number=step)
    # A save killed half-way: its temp folder, or its files before the state file lists it.
    (tmp_path / "ckpt-6_temp").mkdir()
    (tmp_path / "ckpt-6_temp" / "part-00000-of-00001.index").write_bytes(b"partial")
    (tmp_path / "ckpt-6.index").write_bytes(b"partial")
    before = sorted(os.listdir(tmp_path))
    removed = sorted(os.path.basename(p) for p in remove_partial_checkpoints(str(tmp_path)))
    assert removed == ["ckpt-6.index", "ckpt-6_temp"]
    assert sorted(os.listdir(tmp_path)) == sorted(set(before) - set(removed))
    tf.train.Checkpoint(v=variable).restore(tf.train.latest_checkpoint(str(tmp_path)))
    assert float(variable.numpy()) == 4.0


def test_a_lost_peer_is_named_in_the_message():
    import tensorflow as tf

    from training.trainer import peer_error_reason

    heartbeat = ("Graph execution error:\n\nDetected at node X defined at (most recent call last):\n  File \"a.py\", line 1\n"
                 "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
                 "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.")  # fmt: skip
    reset = ('Graph execution error:\n  File "train.py", line 382, in <module>\nAdditional GRPC error information from remote '
             'target /job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/RecvBuf:\n'
             ':UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"recvmsg:Connection reset by peer"}')  # fmt: skip
    assert peer_error_reason(tf.errors.UnavailableError(None, None, heartbeat)) == "/job:worker/replica:0/task:1 stopped sending heartbeats"
    assert peer_error_reason(tf.errors.UnavailableError(None, None, reset)) == "/job:worker/replica:0/task:0: recvmsg:Connection reset by peer"
    assert peer_error_reason(tf.errors.AbortedError(None, None, "Graph execution error:\n  File \"x\"\nsomething broke")) == "something broke"


def test_worker_rank_orders_the_chief_first_then_the_workers():
    import types

    import tensorflow as tf

    from training.trainer import worker_rank

    spec = tf.train.ClusterSpec({"chief": ["a:1"], "worker": ["b:1", "c:1"]})

    def strategy(task_type, task_id):
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec, task_type=task_type, task_id=task_id)
        return types.SimpleNamespace(cluster_resolver=resolver)

    assert [worker_rank(strategy(*task)) for task in (("chief", 0), ("worker", 0), ("worker", 1))] == [(0, 3), (1, 3), (2, 3)]
    assert worker_rank(tf.distribute.get_strategy()) == (0, 1)
