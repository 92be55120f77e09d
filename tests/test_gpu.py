"""LiteRT's GPU accelerator, for real: the adapter, GPU options and the TensorFlow-free procedure.

In CI the accelerator (WebGPU over Vulkan, in the ai-edge-litert wheel) runs on Mesa 25's
software Vulkan device `llvmpipe` (`.ci/run` installs it from Debian's bookworm-backports): a
CPU rasteriser, so these tests check what the GPU path computes, never its speed. Where no
adapter loads they FAIL with the accelerator's reason (conftest.py's `gpu_adapter`).

The exports themselves are checked on the GPU where test_convert.py makes them (runs fully on
the accelerator, arg-max agreement with LiteRT CPU; `assert_runs_on_gpu` in conftest.py):
fp32 logits KSAC and ASPP (tiny and full width), int8 logits KSAC and ASPP (full width; KSAC
tiny too), fp16 logits KSAC, fp32 labels KSAC. Xception65's files are left out for time
(about 40 s each on llvmpipe).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from inference.gpu import gpu_report


def test_the_adapter_is_named_and_software_adapters_are_flagged(gpu_adapter):
    assert gpu_adapter["adapter"] and gpu_adapter["fully_accelerated"] is True, gpu_adapter
    if "llvmpipe" in gpu_adapter["adapter"] or "SwiftShader" in gpu_adapter["adapter"]:
        assert gpu_adapter["software"] is True


def test_enforce_f32_is_exact_where_fp16_rounds(gpu_adapter):
    fp16 = gpu_report(gpu_adapter["file"])
    fp32 = gpu_report(gpu_adapter["file"], enforce_f32=True)
    assert (fp16["precision"], fp32["precision"]) == ("fp16", "fp32")
    assert fp32["max_abs_diff"] < 1e-5 < fp16["max_abs_diff"], (fp16, fp32)


def test_the_gpu_check_and_timing_need_no_tensorflow(gpu_adapter):
    """The procedure for a machine with a real GPU: only numpy and ai-edge-litert (TensorFlow made unimportable)."""
    code = ("import sys, runpy; sys.modules['tensorflow'] = None; sys.modules['tf_keras'] = None; "
            f"sys.argv = ['inference.gpu', {gpu_adapter['file']!r}, '--runs', '2']; runpy.run_module('inference.gpu', run_name='__main__')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    assert report["fully_accelerated"] is True and report["runs"] == 2 and report["p50_ms"] > 0
    assert np.isfinite(report["argmax_agreement"])
