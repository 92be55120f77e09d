"""Runs `.tflite` files in LiteRT on ARM64, inside the emulated ARM64 Python of `inference.arm`.

Not imported by the project: `inference.arm` starts this file with the ARM64 CPython that `make arm-env`
unpacked, under qemu-user, so it may use only that environment (the standard library, numpy and the
aarch64 ai-edge-litert wheel). Usage: `python3.11 arm_worker.py JOB.json`. The job names the models,
each with an `.npy` of raw input tensors (one per frame, already in the input's dtype) and an `.npy` to
write the raw outputs to; the result (LiteRT's version, the machine, seconds per model) is printed as
one JSON line on stdout.
"""

import json
import platform
import sys
import time

import numpy as np
from ai_edge_litert import interpreter as litert


def run(job: dict) -> dict:
    results = []
    for entry in job["models"]:
        model = litert.Interpreter(model_path=entry["model"], num_threads=int(job.get("threads", 1)))
        model.allocate_tensors()
        source, target = model.get_input_details()[0], model.get_output_details()[0]
        frames = np.load(entry["inputs"])
        outputs, started = [], time.perf_counter()
        for frame in frames:
            model.set_tensor(source["index"], frame[None].astype(source["dtype"]))
            model.invoke()
            outputs.append(model.get_tensor(target["index"])[0])
        seconds = time.perf_counter() - started
        np.save(entry["outputs"], np.stack(outputs))
        results.append({"model": entry["model"], "seconds_per_frame": seconds / max(1, len(frames))})
    version = getattr(litert, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as package_version

            version = package_version("ai-edge-litert")
        except Exception:  # noqa: BLE001 - an unpacked wheel without metadata
            version = "unknown"
    return {"litert": version, "machine": platform.machine(), "python": platform.python_version(), "results": results}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(json.dumps(run(json.load(f))))
