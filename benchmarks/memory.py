"""Peak memory of running one `.tflite` file on CPU, measured in a fresh child process.

Run as a module (it imports only numpy, ai_edge_litert and `inference.runtime`,
never TensorFlow):

    python -m benchmarks.memory FILE.tflite --threads 2 --runs 3

It prints one JSON line: `baseline_kb` (peak resident set after the imports) and
`peak_kb` (peak resident set after reading the file, loading it and running it
`runs` times), both VmHWM of /proc/self/status (ru_maxrss where there is no /proc).
The model's share is `peak_kb - baseline_kb`: VmHWM is a high-water mark, so that
is what the file's bytes, the interpreter (`inference.runtime.TFLiteModel` on the
CPU), its tensor arena and XNNPACK's packed weights added on top of the bare runtime.

Why not ru_maxrss: Linux carries it across exec, so a child forked from the
benchmark's TensorFlow process starts at the parent's (1+ GB) peak; and the
parent's RUSAGE_CHILDREN is the maximum over every child ever waited for, not a
per-row figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from inference.runtime import peak_rss_kb  # noqa: F401  (also this module's API)


def measure_memory(tflite_path: str | Path, threads: int, *, runs: int = 3, timeout_s: float = 600) -> dict[str, Any]:
    """Peak memory of loading and running `tflite_path` `runs` times, in a child process.

    Returns:
        {"peak_rss_mb": whole child process, "model_mem_mb": peak minus the bare-runtime baseline}.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    # `-m`: the child imports `inference.runtime` through the editable install, like any module.
    command = [sys.executable, "-m", "benchmarks.memory", str(tflite_path), "--threads", str(threads)]
    command += ["--runs", str(runs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"memory measurement of {tflite_path} failed (exit {done.returncode}): {done.stderr[-800:]}")
    result = json.loads(lines[-1])
    return {
        "peak_rss_mb": result["peak_kb"] / 1024.0,
        "model_mem_mb": max(0, result["peak_kb"] - result["baseline_kb"]) / 1024.0,
    }


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak memory of running one .tflite file (child process).")
    parser.add_argument("tflite", help="the .tflite file")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--runs", type=int, default=3, help="runs after loading")
    args = parser.parse_args(argv)

    from inference.runtime import TFLiteModel, import_runtime

    import_runtime("cpu")  # the bare runtime belongs to the baseline, not to the model
    baseline = peak_rss_kb()
    data = Path(args.tflite).read_bytes()
    model = TFLiteModel(data, device="cpu", threads=args.threads)
    model.set_random_inputs(seed=0)
    for _ in range(args.runs):
        model.invoke()
    print(json.dumps({"baseline_kb": baseline, "peak_kb": peak_rss_kb()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
