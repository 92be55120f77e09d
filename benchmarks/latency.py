"""Latency of `.tflite` files in LiteRT: warm-up, then repeated timed runs, interleaved across files.

Models run on the CPU through `inference.runtime.TFLiteModel`: the classic LiteRT
interpreter, which applies the XNNPACK delegate by default (it logs "Created
TensorFlow Lite XNNPACK delegate for CPU") and hands `threads` to it. On a noisy,
shared machine a fair comparison times the files round-robin: run i of every file is taken before run i+1 of any,
and the order rotates each round, so a burst of load from another process falls on
all files alike instead of on whichever happened to be measured then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Hashable, Mapping

import numpy as np

from inference.runtime import TFLiteModel


@dataclass(frozen=True)
class LatencyStats:
    """Summary of timed runs, in milliseconds."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int

    @classmethod
    def from_times(cls, times_s: list[float]) -> "LatencyStats":
        """Summarises wall-clock times given in seconds."""
        if not times_s:
            raise ValueError("no timed runs to summarise")
        ms = np.asarray(times_s, dtype=np.float64) * 1000.0
        return cls(
            p50_ms=float(np.percentile(ms, 50)),
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            runs=len(times_s),
        )


class CpuRunner:
    """One `.tflite` model loaded on the CPU (`inference.runtime`: LiteRT, XNNPACK) with a random input set."""

    def __init__(self, tflite: bytes, threads: int) -> None:
        self.model = TFLiteModel(bytes(tflite), device="cpu", threads=threads)
        self.model.set_random_inputs(seed=0)

    def run(self) -> float:
        """Runs once; returns the wall-clock seconds of `invoke()`."""
        start = time.perf_counter()
        self.model.invoke()
        return time.perf_counter() - start


def measure_latency(tflite: bytes, threads: int, *, warmup: int = 3, runs: int = 10) -> LatencyStats:
    """Latency of one `.tflite` model on CPU: `warmup` untimed runs, then `runs` timed ones."""
    return measure_interleaved({"model": tflite}, threads, warmup=warmup, runs=runs)["model"]


def measure_interleaved(
    models: Mapping[Hashable, bytes],
    threads: int,
    *,
    warmup: int = 3,
    runs: int = 10,
    progress: bool = False,
) -> dict[Hashable, LatencyStats]:
    """Times several `.tflite` models round-robin on CPU at `threads` threads.

    Args:
        models: key -> `.tflite` bytes; every model is loaded at once.
        threads: interpreter (and XNNPACK) threads.
        warmup: untimed runs of each model before timing.
        runs: timed runs of each model.
        progress: print a dot per round.

    Returns:
        key -> LatencyStats.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be at least 0, got {warmup}")
    keys = list(models)
    runners = {key: CpuRunner(models[key], threads) for key in keys}
    for _ in range(warmup):
        for key in keys:
            runners[key].run()
    times: dict[Hashable, list[float]] = {key: [] for key in keys}
    for round_index in range(runs):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            times[key].append(runners[key].run())
        if progress:
            print(".", end="", flush=True)
    if progress:
        print(flush=True)
    return {key: LatencyStats.from_times(times[key]) for key in keys}
