"""edgelite past one machine: classify and evaluate whole archives on a Ray cluster (Ray Data).

Installed by the `cluster` extra (`pip install 'edgelite[cluster]'`); the device side never imports it.
The functions here are what `edgelite predict --ray` and `edgelite bench --ray` call. Ray itself is
imported only when they run, so a missing Ray is one line, not an ImportError at import time.
"""
from __future__ import annotations

from .options import add_ray_options

__all__ = ["predict_files", "evaluate", "add_ray_options"]


def predict_files(*args, **kwargs):
    """See edgelite.cluster.predict.predict_files."""
    from .predict import predict_files as run

    return run(*args, **kwargs)


def evaluate(*args, **kwargs):
    """See edgelite.cluster.evaluation.evaluate."""
    from .evaluation import evaluate as run

    return run(*args, **kwargs)
