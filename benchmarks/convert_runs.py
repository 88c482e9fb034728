"""A conversion as a user runs it, for the measuring programs (keras_families, torch_families): `edgelite convert`
in a process of its own, its table read back, and the result's tflite-int8 / tflite-fp32 speed."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from edgelite.convert.pipeline import FORMATS
from edgelite.files import write_atomic

ROW = re.compile(r"^\s+(tflite-\w+|onnx-\w+)\s+(ok|BELOW THRESHOLD|FAILED)\b\s*(.*)$")


def convert_cli(path: Path, calib: Path, out: Path, timeout: float, *extra: str, log: Path | None = None) -> dict:
    """`edgelite convert PATH --calib CALIB --out OUT --force` in a process of its own, as a user runs it: exit,
    wall seconds, the formats that passed and what failed (from its table), the preprocessing it recorded; all
    it printed goes to `log`, when given."""
    command = [sys.executable, "-m", "edgelite.cli", "convert", str(path), "--calib", str(calib), "--out", str(out),
               "--force", *extra]
    print(f"{path.stem}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout, stderr = "timeout", _text(exc.stdout), _text(exc.stderr)
    wall = time.perf_counter() - started
    if log is not None:
        write_atomic(log, f"{stdout}\n--- stderr ---\n{stderr}")
    formats = {m[1]: (m[2], m[3]) for m in map(ROW.match, stdout.splitlines()) if m}
    asked = list(extra[extra.index("--formats") + 1:]) if "--formats" in extra else FORMATS
    for name in asked:  # a process that was killed or timed out never printed these rows
        if name in FORMATS and name not in formats:
            formats[name] = ("MISSING", f"no result: the process ended first (exit {code})")
    preprocessing = next((line.split(":", 1)[1].strip() for line in stderr.splitlines()
                          if line.startswith("preprocessing:")), None)
    return {"exit": code, "wall_s": wall,
            "passed": sorted(f for f, (verdict, _) in formats.items() if verdict == "ok"),
            "failed": {f: detail for f, (verdict, detail) in formats.items() if verdict != "ok"},
            "preprocessing": preprocessing, "stderr_tail": stderr.strip().splitlines()[-3:]}


def speed(out: Path, family: str, rounds: int) -> dict:
    """tflite-int8 and tflite-fp32 ms per image, one thread, each timed alone in alternating rounds."""
    from edgelite.timing import measure, opener, summary

    files = {kind: out / f"{family}_{kind}.tflite" for kind in ("int8", "fp32")}
    if not all(p.exists() for p in files.values()):
        return {}
    per_turn = measure({kind: opener(p, 1) for kind, p in files.items()}, rounds, 5)
    return {f"{kind}_ms": summary(turns)["ms"] for kind, turns in per_turn.items()}


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")
