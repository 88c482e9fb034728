"""A per-layer quantization error report (written by the converter's rescue, `<model>.layers.json`),
ranked and shown: `edgelite inspect` reads it on the device, the converter prints it."""
from __future__ import annotations

import math


def worst_first(layers: list[dict], key: str) -> list[dict]:
    """Rows with a `key` value and a node name, worst first: lowest for a ratio in dB (sqnr_db),
    else largest in size (rmse_scale, mean_error...)."""
    rated = [r for r in layers if r.get(key) is not None and not math.isnan(r[key]) and r.get("node")]
    return sorted(rated, key=lambda r: -r[key] if key.endswith("_db") else abs(r[key]), reverse=True)


def method_label(method: str) -> str:
    """How a rescue's method reads: 'entropy calibration' (ONNX), 'bias correction' (TFLite dynamic range),
    'calibration without atypical samples' (int8: convert/atypical.py)."""
    return {"bias_correction": "bias correction", "typical": "calibration without atypical samples"}.get(
        method, f"{method} calibration")


def format_tries(tries: list[dict]) -> str:
    """'percentile calibration: 96.0%, entropy calibration: far: total variation 0.72, 1 in float: 97.0%,
    2 in float + bias correction: failed (...)' for the console."""
    def label(t: dict) -> str:
        parts = ([f"{t['excluded']} in float"] if t.get("excluded") or not t.get("method") else []) + \
                ([method_label(t["method"])] if t.get("method") else [])
        return " + ".join(parts)

    def figure(t: dict) -> str:
        error = t.get("error", "?")
        return f"{t['agreement']:.1%}" if t.get("agreement") is not None else (
            error if error.startswith("far:") else f"failed ({error})")

    return ", ".join(f"{label(t)}: {figure(t)}" for t in tries)


def format_table(layers: list[dict], key: str, worst: int = 10) -> str:
    """The worst layers by `key`, one per line."""
    rows = worst_first(layers, key)[:worst]
    if not rows:
        return f"no layer has a {key}"
    width = min(60, max(len(r["layer"]) for r in rows))
    lines = [f"{key:>12}  {'op':<18} layer"]
    for r in rows:
        name = r["layer"] if len(r["layer"]) <= width else "..." + r["layer"][-(width - 3):]
        lines.append(f"{r[key]:>12.3f}  {r['op']:<18} {name}")
    return "\n".join(lines)
