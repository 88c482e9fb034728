"""What every per-layer quantization error report shares: converters silenced while they measure, the SQNR
measure, and the report written as <model>.layers.json and .png."""
from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import numpy as np

from edgelite.figures import write_figure
from edgelite.files import write_json
from edgelite.layers import worst_first
from edgelite.quiet import quiet


@contextlib.contextmanager
def silent():
    """quiet() plus Python warnings (the converters' deprecation and debug-mode notices)."""
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def sqnr_db(signal: float, noise: float) -> float | None:
    """Signal over noise in dB: None without signal, infinite without noise."""
    if signal <= 0:
        return None
    return 10 * math.log10(signal / noise) if noise > 0 else math.inf


def write_report(layers: list[dict], path_stem: Path, title: str, key: str) -> dict[str, Path]:
    """<stem>.layers.json, and <stem>.layers.png (error per layer in graph order, the worst 5 in
    red and labelled with their position and op) when matplotlib is installed."""
    path_stem = Path(path_stem)
    written = {"json": write_json(path_stem.with_name(path_stem.name + ".layers.json"), layers)}
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg
    except ImportError:
        return written
    values = [r[key] if r.get(key) is not None and math.isfinite(r[key]) else np.nan for r in layers]
    position = {id(r): i for i, r in enumerate(layers)}
    fig = Figure(figsize=(max(6.0, 0.12 * len(layers)), 4))
    ax = fig.subplots()
    worst = [position[id(r)] for r in worst_first(layers, key) if math.isfinite(r[key])][:5]
    colours = ["tab:red" if i in worst else "tab:blue" for i in range(len(layers))]
    ax.bar(range(len(values)), values, color=colours)
    for i in worst:  # short labels that fit; the table and the JSON give the full names
        ax.annotate(f"#{i} {layers[i]['op']}", (i, values[i]), fontsize=7, color="tab:red", ha="center", rotation=90,
                    va="bottom", xytext=(0, 2), textcoords="offset points")
    ax.margins(y=0.2)
    ax.set(title=title, xlabel="layer (graph order)", ylabel=key)
    fig.tight_layout()
    written["png"] = write_figure(fig, path_stem.with_name(path_stem.name + ".layers.png"))
    return written
