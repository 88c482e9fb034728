"""Figures written as PNG files: matplotlib on its file-only Agg backend, imported only when a figure is made
(the device has no matplotlib: callers that plot there catch the ImportError)."""
from __future__ import annotations

from pathlib import Path

from .files import write_staged


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(fig, path: str | Path, dpi: int = 120, force: bool = True) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    return write_staged(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi), force)
