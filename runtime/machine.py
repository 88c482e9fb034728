"""What a measured figure or a recorded choice depends on: the CPU, its SIMD flags (as CPUID reports them), the
cores, Python and the package versions; and why a record made on one machine may not hold on another."""
from __future__ import annotations

import os
import platform

from .checkset import cpu_kernels, cpu_name

PACKAGES = ("edgelite", "numpy", "pillow", "ai-edge-litert", "tflite-runtime", "onnxruntime")


def machine() -> dict:
    """What a choice depends on: the CPU, its SIMD flags, the cores, Python and the package versions."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            continue
    return {"cpu": cpu_name(), **cpu_kernels(), "cores": os.cpu_count(), "python": platform.python_version(),
            "packages": packages}


def changed(recorded: dict, here: dict) -> str | None:
    """Why a choice made on `recorded` may not hold `here` (None: same CPU, cores and packages)."""
    def cpu(m: dict) -> str:
        return f"{m.get('cpu')} [{' '.join(m.get('flags', []))}], {m.get('cores')} cores"

    if cpu(recorded) != cpu(here) or recorded.get("machine") != here["machine"]:
        return f"recorded on {cpu(recorded)}, this is {cpu(here)}"
    old, new = {**recorded.get("packages", {}), "python": recorded.get("python")}, {**here["packages"],
                                                                                   "python": here["python"]}
    moved = [f"{k} {old.get(k, '-')} -> {new.get(k, '-')}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return f"packages changed ({', '.join(moved)})" if moved else None
