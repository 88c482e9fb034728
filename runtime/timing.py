"""How edgelite times a setting (an artifact on a backend, with its thread count and options): as a process
that runs nothing else would run it. One method, used by `tune`, `bench` and the benchmark programs.

- **A turn** opens the setting (loads the model), warms it (at least WARM_CALLS calls and WARM_MS: its thread
  pool awake, its weights in cache), times `calls` calls and releases it. So nothing of any other setting is
  loaded, spinning or warm while a setting is timed: not in this process (`turn`), and not in any other
  (`Worker`: the same turns, each setting in a child process of its own).
- **Rounds** give every setting one turn each, in an order that changes every round (rotated by one, and
  reversed every other round), and follow each other over the whole measuring time, so a moment of
  contention (another job, a second core the host takes away for a while) falls on all settings alike.
- **Figures**: a turn's figure is the median of its calls; a setting's `ms` the median over its turns, its
  spread the 10th to 90th percentile over turns, and `slow_ms` (the 90th percentile) what a choice weighs: a
  setting that is fast only at some moments does not win on those moments.

Why (2-core Intel Xeon VM, MobileNetV2 LiteRT int8 on 2 threads): raced round-robin with every setting
loaded, 3 calls a round and no warm-up per turn, it read 4.04 ms right after the other settings had each run
once against 1.92 ms alone; onnxruntime's spinning pool threads slowed whatever ran next (0.90 -> 1.25 ms,
AMD EPYC). Its figure in a process of its own was then 3.5-3.8 ms or 1.8 ms depending on the moment.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from .errors import EdgeliteError

WARM_CALLS, WARM_MS, WARM_MAX = 3, 30.0, 200  # a turn's warm-up: at least 3 calls and 30 ms, at most 200 calls
METHOD = {"isolation": "one setting loaded at a time: opened for each turn, warmed, timed, released",
          "warm_up": f"at least {WARM_CALLS} calls and {WARM_MS:g} ms per turn",
          "order": "every setting one turn per round; the order rotated each round and reversed every other",
          "ms": "median over turns of each turn's median call", "spread": "10th-90th percentile over turns",
          "slow_ms": "90th percentile over turns (what the choice weighs)"}

Clock = Callable[[], int]  # nanoseconds
Opener = Callable[[], Callable[[], object]]  # loads a setting, returns the call to time
Turn = Callable[[int], list]  # times `calls` calls of a setting as it runs alone: their milliseconds


def time_calls(run: Callable[[], object], calls: int, clock: Clock = time.perf_counter_ns) -> list[float]:
    """Milliseconds of each of `calls` calls of `run`."""
    times = []
    for _ in range(calls):
        start = clock()
        run()
        times.append((clock() - start) / 1e6)
    return times


def warm(run: Callable[[], object], clock: Clock = time.perf_counter_ns, calls: int = WARM_CALLS) -> None:
    """Calls `run` until it has run `calls` times and WARM_MS have passed (at most WARM_MAX calls beyond)."""
    start, done = clock(), 0
    while done < calls or ((clock() - start) / 1e6 < WARM_MS and done < WARM_MAX):
        run()
        done += 1


def turn(open_setting: Opener, calls: int, clock: Clock = time.perf_counter_ns, warmup: int = WARM_CALLS
         ) -> list[float]:
    """One turn of a setting in this process: open it, warm it, time `calls` calls, release it."""
    run = open_setting()
    warm(run, clock, warmup)
    times = time_calls(run, calls, clock)
    del run  # the interpreter or session and its thread pool go with it
    gc.collect()
    return times


def order(keys: Sequence, number: int) -> list:
    """Round `number`'s order of `keys`: rotated by the round's number, reversed every other round."""
    keys = list(keys)
    shift = number % len(keys) if keys else 0
    rotated = keys[shift:] + keys[:shift]
    return rotated[::-1] if number % 2 else rotated


def in_rounds(turns: Mapping[Hashable, Turn], rounds: int, calls: int, drop_after: int | None = None,
              drop: Callable[[dict], set] | None = None, tick: Callable[[int], None] | None = None,
              until: Callable[[int], bool] | None = None) -> dict:
    """`rounds` rounds, each giving every setting still in one turn of `calls` calls (`order`); returns {key:
    [each turn's call times]}. After `drop_after` rounds, `drop({key: its turn medians so far})` names settings
    that leave (clearly slower ones: a shorter measurement, their turns so far kept). `until(rounds done)`
    true ends it after that round (a time budget)."""
    per_turn: dict = {key: [] for key in turns}
    running = list(turns)
    for number in range(rounds):
        for key in order(running, number):
            per_turn[key].append(list(turns[key](calls)))
        if drop is not None and number + 1 == drop_after:
            left = drop({key: medians(per_turn[key]) for key in running})
            running = [key for key in running if key not in left]
        if tick is not None:
            tick(number + 1)
        if until is not None and until(number + 1):
            break
    return per_turn


def measure(openers: Mapping[Hashable, Opener], rounds: int, calls: int, clock: Clock = time.perf_counter_ns,
            warmup: int = WARM_CALLS, **options) -> dict:
    """`in_rounds` of in-process turns (`turn`) over settings given as openers. A setting already loaded (a
    Keras model in memory, one pass of a benchmark) is an opener that returns its call: it is warmed and
    timed in its turns all the same."""
    return in_rounds({key: (lambda calls, o=o: turn(o, calls, clock, warmup)) for key, o in openers.items()},
                     rounds, calls, **options)


def medians(per_turn: list) -> list[float]:
    return [float(statistics.median(times)) for times in per_turn]


def summary(per_turn: list) -> dict:
    """A setting's figures from its turns: ms (median over turns), fast_ms/slow_ms (10th/90th percentile over
    turns), turns, calls; and over every call: p50/p90/p99/mean/std."""
    by_turn, every = medians(per_turn), np.concatenate([np.asarray(t, float) for t in per_turn])
    return {"ms": float(np.median(by_turn)), "fast_ms": float(np.percentile(by_turn, 10)),
            "slow_ms": float(np.percentile(by_turn, 90)), "turns": len(by_turn), "calls": len(every),
            **percentiles(every)}


def percentiles(ms) -> dict:
    """p50, p90, p99, mean and std of call times in milliseconds (None each when there are none)."""
    ms = np.asarray(ms, dtype=float)
    if not len(ms):
        return {key: None for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")}
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "std_ms": float(ms.std())}


class Load:
    """What else the machine did while settings were timed (Linux, /proc/stat; empty elsewhere): cores kept busy
    by other processes, and cores the hypervisor took away from this VM (steal). Either makes a second thread
    worth less at that moment; they say when figures were taken."""

    def __enter__(self) -> "Load":
        self._start, self.figures = (_cpu_seconds(), os.times(), time.monotonic()), {}
        return self

    def __exit__(self, *exc) -> None:
        (busy0, steal0), own0, wall0 = self._start
        busy1, steal1 = _cpu_seconds()
        own1, wall = os.times(), time.monotonic() - self._start[2]
        if busy0 is None or wall <= 0:
            return
        own = (own1.user + own1.system) - (own0.user + own0.system)
        self.figures = {"other_processes_cores": round(max(0.0, busy1 - busy0 - own) / wall, 2),
                        "stolen_cores": round((steal1 - steal0) / wall, 2)}


def _cpu_seconds() -> tuple:
    """(busy, steal) CPU seconds of the whole machine since boot, or (None, None) where /proc/stat is not."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None, None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks + [0] * (8 - len(ticks))
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def sample_input(classifier) -> np.ndarray:
    """One prepared input: the first check image when the artifact carries them, else zeros."""
    from .checkset import decode, unpack

    payload = classifier.backend.check_set()
    if payload is not None:
        return classifier.prepare_pixels(decode(unpack(payload)[0][0]))
    return np.zeros((1, *[s or 1 for s in classifier.input.shape[1:]]), classifier.input.dtype)


def opener(artifact: str | Path, threads: int, options: dict | None = None) -> Opener:
    """A setting of an artifact as an opener: a Classifier with these threads and options, and the call
    `Classifier.scores` on its sample input (prepared once, on the first open)."""
    from .classifier import Classifier

    prepared: list = []

    def open_setting() -> Callable[[], object]:
        clf = Classifier(artifact, threads=threads, options=options)
        if not prepared:
            prepared.append(sample_input(clf))
        x = prepared[0]
        return lambda: clf.scores(x)

    return open_setting


class Worker:
    """A setting timed in a child process of its own (`python -m edgelite.timing SETTING`): each call is one
    `turn` there, so not even this process's Python or heap is shared with the setting."""

    def __init__(self, artifact: str | Path, threads: int, options: dict | None = None,
                 prefix: Sequence[str] = ()):
        setting = json.dumps({"artifact": str(artifact), "threads": threads, "options": options or {}})
        self.name = f"{Path(artifact).name} {threads}t"
        self.process = subprocess.Popen([*prefix, sys.executable, "-m", "edgelite.timing", setting],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)

    def wait(self) -> "Worker":
        """Until the child has opened the setting once (a setting that cannot run says so here)."""
        self._answer()
        return self

    def __call__(self, calls: int) -> list[float]:
        self.process.stdin.write(f"{calls}\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read().strip().splitlines()
            raise EdgeliteError(f"timing {self.name} in a process of its own failed: "
                                f"{error[-1] if error else 'it exited'}")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


def start_workers(settings: Mapping[Hashable, tuple], prefix: Sequence[str] = ()) -> dict:
    """{key: (artifact, threads, options)} -> {key: Worker}, started side by side and all ready (none is
    still starting while another is timed)."""
    workers = {key: Worker(*setting, prefix=prefix) for key, setting in settings.items()}
    try:
        return {key: worker.wait() for key, worker in workers.items()}
    except BaseException:
        for worker in workers.values():
            worker.process.kill()
        raise


def _serve(setting: dict) -> int:
    """The child's side of `Worker`: one line in (calls), one JSON line out (their milliseconds)."""
    from .errors import one_line

    try:
        open_setting = opener(setting["artifact"], setting["threads"], setting["options"])
        turn(open_setting, 1)
    except EdgeliteError as exc:
        print(one_line(exc), file=sys.stderr)
        return 2
    print("[]", flush=True)
    for line in sys.stdin:
        print(json.dumps(turn(open_setting, int(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_serve(json.loads(sys.argv[1])))
