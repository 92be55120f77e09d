"""Distributed training equals one device: two replicas in one process, and two worker processes
driven by TF_CONFIG (tf.distribute.MultiWorkerMirroredStrategy over loopback) that lose a worker to
SIGKILL, are resumed, and end where one uninterrupted process ends.

The runs train in float64 (`--float64`). In float32 these settings (an untrained network at
lr 0.01, whose updates are larger than its weights) amplify rounding from step to step: one
device and two replicas then differ by more than the weights themselves after 5 steps, although
the gradients of step 1 agree to float32 precision (see docs/multi-machine-training.md).
In float64 every logic error (data order or sharding, augmentation seeds, loss scaling,
BatchNorm synchronisation) would still show; rounding does not.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.trains, pytest.mark.xdist_group("distributed")]

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "training" / "train.py")
STEPS = 5
TINY = ["--backbone", "mobilenetv2", "--head", "ksac", "--width", "0.35", "--head-filters", "32",
        "--crop-size", "65", "--batch-size", "4", "--lr", "0.01", "--seed", "5", "--log-every", "1",
        "--steps", str(STEPS), "--checkpoint-every", "3", "--dropout", "0", "--no-data-check", "--float64"]  # fmt: skip
# Measured: 2.1e-7, the float32 rounding of the saved model (its weights are float64 while training).
TOLERANCE = 1e-5
WORKER_TIMEOUT_S = 300


def max_relative_difference(a: Path, b: Path) -> float:
    """Max over the weights of max|a - b| / max|a| (at least 1e-3: BatchNorm offsets that a following
    BatchNorm cancels get no gradient and hold rounding noise around 0, which must not be divided by)."""
    import tf_keras as keras

    import zoo  # noqa: F401  (registers the zoo's layers for loading)

    first, second = (keras.models.load_model(path, compile=False).get_weights() for path in (a, b))
    return max(np.abs(x - y).max() / max(np.abs(x).max(), 1e-3) for x, y in zip(first, second))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(outs: list[str], cwds: list[Path], *extra: str) -> list[subprocess.Popen]:
    """One train.py process per worker, each with its TF_CONFIG on loopback (one CPU replica each)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(outs))]}
    procs = []
    for index, (out, cwd) in enumerate(zip(outs, cwds)):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        (cwd / "tmp").mkdir(parents=True, exist_ok=True)  # a killed worker leaves its scratch folder there
        env = dict(os.environ, TF_CONFIG=json.dumps(config), TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(cwd / "tmp"))
        procs.append(subprocess.Popen(
            [sys.executable, "-u", TRAIN, *TINY, "--out", out, "--strategy", "multiworker", *extra],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))  # fmt: skip
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = WORKER_TIMEOUT_S) -> list[str]:
    """Every worker's output once all exited; all are killed if one outlives `timeout`."""
    deadline = time.time() + timeout
    try:
        return [p.communicate(timeout=max(1.0, deadline - time.time()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def checksum(log: str) -> str:
    found = re.findall(r"weights checksum (\w+) at step (\d+)", log)
    assert found, log[-3000:]
    return found[-1]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process, one device, the same global batch, seed and data order."""
    out = tmp_path_factory.mktemp("one") / "run"
    proc = subprocess.run([sys.executable, TRAIN, *TINY, "--out", str(out), "--strategy", "default"],
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AutoGraph could not transform" not in proc.stderr  # the weight-decay rule runs inside the traced step
    return out / "model.keras"


def test_two_replicas_match_one_device(one_process, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, TRAIN, *TINY, "--out", str(out), "--cpu-replicas", "2"],
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s)" in proc.stdout
    difference = max_relative_difference(one_process, out / "model.keras")
    print(f"\n2 replicas vs 1 device after {STEPS} steps: max relative weight difference {difference:.2e}")
    assert difference < TOLERANCE


def test_jit_compile_with_two_replicas_is_refused_before_anything_is_written(tmp_path):
    """XLA cannot compile a step whose replicas live on two CPU devices; unrefused, the run ended in a traceback
    from one replica's thread and then hung (the other replica waited for it): refused up front, exit 2."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, TRAIN, *TINY, "--out", str(out), "--cpu-replicas", "2", "--jit-compile"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--jit-compile trains one replica only, not 2 replica(s)" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists() and not (tmp_path / "runs").exists()


def test_two_workers_lose_one_resume_and_end_identical_to_one_process(one_process, tmp_path):
    """Two workers, each in its own working directory with the relative `--out run`, as on two machines:
    the chief's run/ gets everything, the worker's run/ must not exist. The worker is killed after
    step 4; the chief stops cleanly. For `--resume` the worker's run/ then links to the chief's (the
    shared storage resuming needs), and both continue from the last checkpoint to the end."""
    cwds = [tmp_path / "chief", tmp_path / "worker"]
    run = cwds[0] / "run"
    started = time.time()
    chief, worker = procs = start_workers(["run", "run"], cwds)
    seen = []
    try:
        for line in chief.stdout:  # kill the worker once the chief has logged step 4 (step 3 is checkpointed)
            seen.append(line)
            if line.startswith("step 4/"):
                worker.send_signal(signal.SIGKILL)
                break
    finally:
        chief_log = "".join(seen) + finish(procs)[0]
    assert worker.returncode == -signal.SIGKILL
    assert chief.returncode == 1, chief_log[-3000:]
    died = re.search(r"lost another worker at step (\d+) .*restart every worker with the same command plus --resume", chief_log)
    assert died, chief_log[-3000:]
    assert not (cwds[1] / "run").exists(), "the non-chief worker wrote into its --out"

    # Nothing half-written: no model, no temporary files, only complete checkpoints listed in the state file.
    assert {p.name for p in run.iterdir()} == {"checkpoints", "config.yaml", "tensorboard", "train_log.csv"}
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert not [n for n in names if "temp" in n or n.endswith(".tmp")], names
    kept = sorted({int(n.split(".")[0].split("-")[1]) for n in names if n.startswith("ckpt-")})
    state = (run / "checkpoints" / "checkpoint").read_text()
    assert kept and all(f"ckpt-{k}.index" in names and f'"ckpt-{k}"' in state for k in kept), (names, state)

    (cwds[1] / "run").symlink_to(run.resolve())
    procs = start_workers(["run", "run"], cwds, "--resume")
    logs = finish(procs)
    wall = time.time() - started
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]
    resumed = [int(re.search(r"resumed .* at step (\d+)", log).group(1)) for log in logs]
    assert resumed == [max(kept)] * 2, resumed
    # Both workers end with bit-identical weights (each prints a checksum of all its weights).
    assert checksum(logs[0]) == checksum(logs[1]) == (checksum(logs[0])[0], str(STEPS))
    assert "saved" in logs[0] and "saved" not in logs[1]
    difference = max_relative_difference(one_process, run / "model.keras")
    print(f"\ntwo workers, killed and resumed: died at step {died.group(1)}, resumed from step {resumed[0]}, "
          f"{STEPS} steps; max relative weight difference against one uninterrupted process {difference:.2e}; "
          f"{wall:.1f} s wall for both runs")  # fmt: skip
    assert difference < TOLERANCE

    assert {p.name for p in run.iterdir()} == {"checkpoints", "config.yaml", "model.keras", "summary.json", "tensorboard", "train_log.csv"}
    with open(run / "train_log.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == list(range(1, STEPS + 1))
    # TensorBoard names its file after the writing process: only the two chiefs wrote one.
    writers = {int(re.search(r"\.(\d+)\.\d+\.v2$", p.name).group(1)) for p in (run / "tensorboard").iterdir()}
    assert writers == {chief.pid, procs[0].pid}, writers
