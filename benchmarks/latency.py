"""Latency of a callable: warm-up, then timed runs, summarised as percentiles."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

from edgelite.timing import time_calls


def measure(run: Callable[[], object], runs: int = 50, warmup: int = 5) -> dict:
    """Milliseconds per call: p50, p90, p99, mean, std over `runs` calls after `warmup`."""
    time_calls(run, warmup)
    return {"runs": runs, **percentiles(time_calls(run, runs))}


def percentiles(ms) -> dict:
    """p50, p90, p99, mean and std of times in milliseconds (None each when there are none)."""
    ms = np.asarray(ms, dtype=float)
    if not len(ms):
        return {key: None for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")}
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "std_ms": float(ms.std())}


def per_item_ms(run_pass: Callable[[], object], items: int, repeat: int = 3) -> float:
    """Median over `repeat` whole passes of the mean milliseconds per item (throughput, not latency)."""
    passes = []
    for _ in range(repeat):
        start = time.perf_counter()
        run_pass()
        passes.append((time.perf_counter() - start) * 1000 / items)
    return statistics.median(passes)


def keras_call(model, x: np.ndarray) -> Callable[[], object]:
    """The fair Keras baseline: the model traced once as a tf.function, called on one batch."""
    import tensorflow as tf

    fn = tf.function(lambda t: model(t, training=False), jit_compile=False)
    tensor = tf.constant(x)
    return lambda: fn(tensor).numpy()


def artifact_call(classifier, x: np.ndarray) -> Callable[[], object]:
    """One backend invoke on an already prepared input."""
    prepared = classifier.prepare(x)
    return lambda: classifier.backend.run(prepared)
