"""edgelite past one machine: classify and evaluate whole archives on a Ray cluster (Ray Data).

Installed by the `cluster` extra (`pip install 'edgelite[cluster]'`); the device side never imports it (the
commands import it inside `run`, only with --ray; their --ray options are cli/ray_options.py). The functions
here are what `edgelite predict --ray` and `edgelite bench --ray` call. Ray itself is imported only when they
run, so a missing Ray is one line, not an ImportError at import time.
"""
from __future__ import annotations

__all__ = ["predict_files", "evaluate"]


def predict_files(*args, **kwargs):
    """See edgelite.cluster.predict.predict_files."""
    from .predict import predict_files as run

    return run(*args, **kwargs)


def evaluate(*args, **kwargs):
    """See edgelite.cluster.accuracy.evaluate."""
    from .accuracy import evaluate as run

    return run(*args, **kwargs)
