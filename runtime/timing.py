"""Timing calls: one timing loop, and a round-robin race between candidates.

Drift (another job on a core, a CPU clocking down) hits whatever runs at that moment. Timing one
candidate after another lets drift decide the order (one job on one core doubled tflite-int8's
latency here); a race runs rounds over all candidates, each timed for a few calls per round, and
takes the median over rounds, so drift hits every candidate alike.
"""
from __future__ import annotations

import time
from typing import Callable, Hashable, Mapping

import numpy as np


def time_calls(run: Callable[[], object], calls: int) -> np.ndarray:
    """Milliseconds of each of `calls` calls of `run`."""
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        run()
        times[i] = (time.perf_counter_ns() - start) / 1e6
    return times


def race(runs: Mapping[Hashable, Callable[[], object]], rounds: int = 20, calls: int = 3, warmup: int = 3,
         drop_after: int | None = None, drop: Callable[[dict], set] | None = None,
         tick: Callable[[int], None] | None = None) -> dict:
    """Round-robin: `rounds` rounds, each timing `calls` calls of every candidate still in; returns
    {key: [mean ms of each round it ran]}. After `drop_after` rounds, `drop({key: its rounds so far})` names
    candidates to leave out of the rounds that follow (clearly slower ones: a shorter race, their rounds
    so far kept)."""
    for run in runs.values():
        time_calls(run, warmup)
    per_round: dict = {key: [] for key in runs}
    running = list(runs)
    for number in range(1, rounds + 1):
        for key in running:
            per_round[key].append(float(time_calls(runs[key], calls).mean()))
        if drop is not None and number == drop_after:
            dropped = drop({key: per_round[key] for key in running})
            running = [key for key in running if key not in dropped]
        if tick is not None:
            tick(number)
    return per_round
