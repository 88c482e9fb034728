"""What the benchmarks time besides settings (edgelite.timing times those): passes over many items, and the
fair Keras baseline."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np



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
