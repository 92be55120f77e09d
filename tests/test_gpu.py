"""LiteRT's GPU accelerator, for real: the adapter, GPU options, the TensorFlow-free procedure, bad input.

In CI the accelerator (WebGPU over Vulkan, in the ai-edge-litert wheel) runs on Mesa 25's
software Vulkan device `llvmpipe` (`.ci/run` installs it from Debian's bookworm-backports): a
CPU rasteriser, so these tests check what the GPU path computes, never its speed. They assert
only what holds on any adapter, software or hardware (the `software` flag is checked against the
Vulkan device's own type). Where no adapter loads they FAIL with the accelerator's reason
(conftest.py's `gpu_adapter`); the bad-input tests need no adapter.

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
import pytest

from inference.gpu import SOFTWARE_ADAPTER_TYPE, adapter_from_log, gpu_report

# Vulkan's own list of devices, {deviceName: VkPhysicalDeviceType}, asked through the Vulkan loader
# that the accelerator itself uses. In a child process: in one that has imported TensorFlow, the
# Mesa driver aborts at exit ("free(): invalid pointer"), as the accelerator crashes there.
_VULKAN_DEVICES = """
import ctypes, json

class InstanceCreateInfo(ctypes.Structure):  # VkInstanceCreateInfo, nothing enabled
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]

vk = ctypes.CDLL("libvulkan.so.1")
vk.vkCreateInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
vk.vkEnumeratePhysicalDevices.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
vk.vkGetPhysicalDeviceProperties.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
vk.vkDestroyInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
instance = ctypes.c_void_p()
assert vk.vkCreateInstance(ctypes.byref(InstanceCreateInfo(sType=1)), None, ctypes.byref(instance)) == 0
count = ctypes.c_uint32()
vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
handles = (ctypes.c_void_p * count.value)()
vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles)
devices = {}
for handle in handles:
    # VkPhysicalDeviceProperties: apiVersion, driverVersion, vendorID, deviceID, deviceType (uint32 each),
    # then deviceName (char[256]); 1024 bytes hold more than all of it up to the limits that follow.
    properties = ctypes.create_string_buffer(1024)
    vk.vkGetPhysicalDeviceProperties(handle, properties)
    name = properties.raw[20:276].split(b"\\0")[0].decode()
    devices[name] = int.from_bytes(properties.raw[16:20], "little")
vk.vkDestroyInstance(instance, None)
print(json.dumps(devices))
"""
VK_PHYSICAL_DEVICE_TYPE_CPU = 4


def test_the_software_flag_is_the_adapters_own_type(gpu_adapter):
    """True on llvmpipe and SwiftShader, False on a hardware GPU: from the device's type, never its name."""
    assert gpu_adapter["adapter"] and gpu_adapter["fully_accelerated"] is True, gpu_adapter
    assert gpu_adapter["adapter_type"] in ("Discrete GPU", "Integrated GPU", SOFTWARE_ADAPTER_TYPE, "Other"), gpu_adapter
    done = subprocess.run([sys.executable, "-c", _VULKAN_DEVICES], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    devices = json.loads(done.stdout)
    assert gpu_adapter["adapter"] in devices, (gpu_adapter, devices)  # the accelerator selected a Vulkan device
    assert gpu_adapter["software"] is (devices[gpu_adapter["adapter"]] == VK_PHYSICAL_DEVICE_TYPE_CPU), (gpu_adapter, devices)


def test_the_adapter_is_read_from_the_accelerators_log():
    line = "I0000 00:00:1.0 1 environment.cc:532] Selected adapter: {}, arch={}, vendor={}, backend=Vulkan, adapterType={}\n"
    software = adapter_from_log(line.format("llvmpipe (LLVM 15.0.6, 256 bits)", "software", "mesa", "CPU / Software"))
    assert software == {"adapter": "llvmpipe (LLVM 15.0.6, 256 bits)", "adapter_type": "CPU / Software", "software": True}
    hardware = adapter_from_log(line.format("NVIDIA H100 80GB HBM3", "hopper", "nvidia", "Discrete GPU"))
    assert hardware == {"adapter": "NVIDIA H100 80GB HBM3", "adapter_type": "Discrete GPU", "software": False}
    # The type decides, not the name: a hardware device whose name happens to say "llvmpipe" is hardware.
    assert adapter_from_log(line.format("llvmpipe lookalike", "software", "mesa", "Integrated GPU"))["software"] is False
    assert adapter_from_log("No adapters found") == {"adapter": None, "adapter_type": None, "software": None}


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


def _not_models(folder) -> list:
    """Files a user may take for a model: text, empty, random bytes, the TFL3 identifier then garbage, none at all."""
    rng = np.random.default_rng(0)
    contents = {"text.tflite": b"not a model\n", "empty.tflite": b"", "random.tflite": rng.bytes(4096),
                "tfl3_garbage.tflite": b"\x1c\x00\x00\x00TFL3" + rng.bytes(2000)}  # fmt: skip
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in contents] + [folder / "missing.tflite"]


def _gpu_check(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inference.gpu", *argv], capture_output=True, text=True,
                          errors="replace", timeout=300)  # fmt: skip


def _assert_bad_input(done: subprocess.CompletedProcess[str], named: str) -> str:
    """Exit status 2, nothing on stdout, no traceback, and one `error:` line (the last) naming `named`."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and done.stderr.splitlines()[-1] == errors[0] and named in errors[0], done.stderr[-2000:]
    return errors[0]


def test_a_file_that_is_no_model_is_bad_input_not_no_gpu(tmp_path):
    """Before: `{"available": false, ...}` and exit 0, as if this machine had no GPU. No adapter needed."""
    for path in _not_models(tmp_path):
        error = _assert_bad_input(_gpu_check(str(path)), str(path))
        assert ("not found" if path.name == "missing.tflite" else "not a") in error, error
        if path.exists():
            with pytest.raises(ValueError, match="TFLite model"):
                gpu_report(str(path))


def test_images_that_are_not_the_models_input_are_bad_input(one_conv_tflite, tmp_path):
    """`--images` must be a .npy [n, H, W, C] array at the model's input size (1x9x9x3 here). No adapter needed."""
    model = tmp_path / "one_conv.tflite"
    model.write_bytes(one_conv_tflite)
    (tmp_path / "text.npy").write_text("not an array\n")
    np.savez(tmp_path / "archive.npz", images=np.zeros((1, 9, 9, 3), np.float32))
    arrays = {"other_size.npy": np.zeros((2, 5, 5, 3), np.float32), "one_channel.npy": np.zeros((1, 9, 9, 1), np.float32),
              "one_image_no_batch.npy": np.zeros((9, 9, 3), np.float32), "no_images.npy": np.zeros((0, 9, 9, 3), np.float32),
              "strings.npy": np.full((1, 9, 9, 3), "x")}  # fmt: skip
    for name, array in arrays.items():
        np.save(tmp_path / name, array)
    for name in ["text.npy", "archive.npz", "missing.npy", *arrays]:
        images = tmp_path / name
        _assert_bad_input(_gpu_check(str(model), "--images", str(images)), f"--images {images}: ")
    with pytest.raises(ValueError, match=r"takes shape \[1, 9, 9, 3\].*got shape \[1, 5, 5, 3\]"):
        gpu_report(str(model), arrays["other_size.npy"])
