"""Measurements: peak memory (process RSS, CUDA allocator, NVML), sizes on disk, environment."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from peftbench.memory import MIB

PACKAGES = (
    "peftbench",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "tokenizers",
    "scikit-learn",
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose matmuls run bf16 natively (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class NvmlPeak:
    """Samples device memory used (NVML) in a background thread; keeps the peak."""

    def __init__(self, device_index: int, interval_s: float = 0.1) -> None:
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._pynvml = pynvml
        except Exception:  # no NVML library or no NVIDIA device: not measurable
            return
        self._interval = interval_s
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            used = self._pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / MIB
            self.peak_mb = max(self.peak_mb or 0.0, used)
            self._stop.wait(self._interval)

    def stop(self) -> float | None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        return self.peak_mb


def describe_machine() -> str:
    """One line for benchmark results: CPU, cores, memory, native bf16, OS, torch, GPU."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    flags = cpu_flags()
    bf16 = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no avx512_bf16/amx"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, {bf16}, "
        f"{platform.platform()}, torch {torch.__version__}, {gpu}"
    )


def memory_summary(device: torch.device, nvml: NvmlPeak | None) -> dict[str, Any]:
    """Every kind of peak memory measurable on `device`, in MiB (None where not measurable)."""
    on_cuda = device.type == "cuda"
    return {
        "device": device.type,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cuda_peak_allocated_mb": round(torch.cuda.max_memory_allocated(device) / MIB, 1)
        if on_cuda
        else None,
        "cuda_peak_reserved_mb": round(torch.cuda.max_memory_reserved(device) / MIB, 1)
        if on_cuda
        else None,
        "nvml_peak_used_mb": round(nvml.stop(), 1) if nvml and nvml.peak_mb else None,
    }


def directory_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / MIB


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """Package versions, hardware and code version, for the record's meta_info."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "packages": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device.type,
        "device_name": gpu or cpu_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
