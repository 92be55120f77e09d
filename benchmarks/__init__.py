"""Benchmarks: size, latency, memory and accuracy of exported models on desktop CPU/GPU and on Android (adb)."""
