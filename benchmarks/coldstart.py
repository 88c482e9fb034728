"""Cold start and peak memory of fresh processes.

Children are started from a small launcher process: a child's peak RSS on Linux counts what
it inherited at fork time, so forking from a big benchmark process would inflate it.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

LAUNCHER = """\
import json, os, subprocess, sys, time
commands, repeat = json.loads(sys.argv[1]), int(sys.argv[2])
runs = {name: [] for name in commands}
for _ in range(repeat):  # interleaved, so every command sees the same machine state
    for name, args in commands.items():
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            runs[name].append({"error": proc.stderr.read().decode(errors="replace").strip()[-300:]})
            continue
        runs[name].append({"wall_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024})
print(json.dumps(runs))
"""

# a fresh process until the first result, for an artifact (device side) and for Keras
ARTIFACT_CODE = "import sys; from edgelite import Classifier; Classifier(sys.argv[1]).predict(sys.argv[2])"
KERAS_CODE = """\
import json, sys
from edgelite.convert.loading import import_tensorflow
import_tensorflow()
from edgelite.convert.loading import load_model
from edgelite.convert.keras_facts import keras_spec
from edgelite.preprocess import to_float
from pathlib import Path
model = load_model(sys.argv[1])
choice = sys.argv[3] if len(sys.argv) > 3 else None
spec = keras_spec(model, Path(sys.argv[1]), json.loads(choice) if choice and choice.startswith("{") else choice)
model.predict(to_float(sys.argv[2], spec)[None], verbose=0)
"""


def measure_processes(commands: dict[str, list[str]], repeat: int = 3, env: dict | None = None) -> dict[str, dict]:
    """name -> {"wall_s", "peak_rss_mib"} medians (or {"error"}) over `repeat` interleaved runs (in `env`)."""
    try:
        done = subprocess.run([sys.executable, "-c", LAUNCHER, json.dumps(commands), str(repeat)],
                              capture_output=True, text=True, check=True, env=env)
    except (OSError, subprocess.CalledProcessError) as exc:  # e.g. under user-mode emulation
        return {name: {"error": f"cannot start processes: {exc}"} for name in commands}
    summary = {}
    for name, runs in json.loads(done.stdout).items():
        good = [r for r in runs if "error" not in r]
        if not good:
            summary[name] = {"error": runs[0]["error"]}
            continue
        summary[name] = {"wall_s": statistics.median(r["wall_s"] for r in good),
                         "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in good)}
    return summary


def artifact_command(path, image) -> list[str]:
    return [sys.executable, "-c", ARTIFACT_CODE, str(path), str(image)]


def keras_command(path, image, preprocess: str | dict | None = None) -> list[str]:
    choice = json.dumps(preprocess) if isinstance(preprocess, dict) else preprocess
    return [sys.executable, "-c", KERAS_CODE, str(path), str(image), *([choice] if choice else [])]
