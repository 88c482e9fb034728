"""Files -> a Ray dataset -> the actor pool -> result tables streamed back to the driver, with progress."""
from __future__ import annotations

import logging
import math
import sys
import time
from typing import Iterator, Sequence

import pyarrow as pa
from tqdm import tqdm

from edgelite.errors import EdgeliteError, one_line

from .shipped_model import ShippedModel
from .session import Cluster, import_ray, pool_size
from .workers import ClassifyFiles

log = logging.getLogger(__name__)


# Files per block (one actor call each): measured on 2 cores, an actor call costs about 25 ms of CPU beyond its
# files (Ray Data's task and block handling), and the driver about 10 ms per block: 16 files per call spent
# 6.1 ms of CPU per photo in all, 128 files 3.6 ms (benchmarks/RESULTS.md). Large blocks, but at least
# BLOCKS_PER_ACTOR per actor so that the pool stays busy to the end and rows come back as it goes.
MIN_BLOCK, MAX_BLOCK, BLOCKS_PER_ACTOR, MAX_BLOCKS = 16, 256, 8, 20_000


def plan(files: int, actors: int | None, cluster: Cluster,
         batch_size: int | None = None) -> tuple[int, float, int, int]:
    """(actors, CPUs for each, files per block, blocks) for `files` files: batch_size files per block when
    given, else as large as keeps BLOCKS_PER_ACTOR blocks for every actor, within MIN_BLOCK..MAX_BLOCK."""
    wanted, _ = pool_size(actors, cluster)
    per_block = batch_size or min(MAX_BLOCK, max(MIN_BLOCK, files // (wanted * BLOCKS_PER_ACTOR)))
    per_block = max(per_block, math.ceil(files / MAX_BLOCKS))
    blocks = max(1, math.ceil(files / per_block))
    size, cpus = pool_size(actors, cluster, blocks)
    return size, cpus, per_block, blocks


class Timing:
    """When the stream started, when rows came back (the first ones: the fixed cost of a run, actors started and
    the model shipped and opened), and the size of the pool."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first: float | None = None
        self.end: float | None = None
        self.marks: list[tuple[float, int]] = []  # (time, rows so far) at each table
        self.actors = 0

    def arrived(self, rows: int) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.marks.append((now, rows + (self.marks[-1][1] if self.marks else 0)))

    @property
    def start_s(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def total_s(self) -> float:
        return (self.end or time.perf_counter()) - self.start

    def steady_rate(self) -> float | None:
        """Files per second from the time a quarter of the rows were back to the last: the pool's pace once
        every actor is running, without the start (None for runs too short to tell)."""
        if len(self.marks) < 4:
            return None
        total = self.marks[-1][1]
        since, rows = next((t, n) for t, n in self.marks if n >= total / 4)
        end = self.marks[-1][0]
        return (total - rows) / (end - since) if end > since else None


def classify(paths: Sequence[str], model: ShippedModel, cluster: Cluster, *, actors: int | None = None,
             top_k: int = 5, probabilities: bool = False, batch_size: int | None = None, timing: Timing | None = None,
             verbose: bool = True, desc: str = "classified") -> Iterator[pa.Table]:
    """Tables of rows (workers.ROWS, plus `probabilities` if asked) in the order they finish.

    The paths are read on the workers: on a cluster of several machines they must be at the same path on
    every node (a shared filesystem, or the same copy)."""
    ray = import_ray()
    timing = timing or Timing()
    size, cpus, per_block, blocks = plan(len(paths), actors, cluster, batch_size)
    timing.actors = size
    if verbose:
        log.info(f"ray: {size} actor(s) of {model.name} (sha256 {model.sha256[:12]}, {len(model.data) / 1e6:.1f} "
                 f"MB through the object store), {cpus:g} CPU each; {len(paths)} files")
    # the model travels inside the actors' constructor arguments, which Ray Data puts in the object store once
    # for the whole pool: each node fetches its bytes once, whatever the number of actors on it
    ds = ray.data.from_items([{"path": str(p)} for p in paths], override_num_blocks=blocks)
    ds = ds.map_batches(ClassifyFiles, fn_constructor_kwargs={"model": model, "top_k": top_k,
                                                              "probabilities": probabilities},
                        compute=ray.data.ActorPoolStrategy(size=size), batch_size=None, num_cpus=cpus,
                        batch_format="numpy")
    with tqdm(total=len(paths), unit="file", desc=desc, disable=not verbose, smoothing=0.05,
              file=sys.stderr) as bar:
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                timing.arrived(table.num_rows)
                bar.update(table.num_rows)
                yield table
        except ray.exceptions.RayError as exc:  # e.g. a node without edgelite, or a model its backend refuses
            raise EdgeliteError(f"the Ray workers failed: {worker_error(exc)}") from None
    timing.end = time.perf_counter()


def worker_error(exc: BaseException) -> str:
    """A worker's failure as one line: the exception it raised (the last line of Ray's message), without the
    "module.Class: " prefix for an EdgeliteError."""
    line = one_line(exc, last=True)
    prefix = "edgelite.errors.EdgeliteError: "
    return line[len(prefix):] if line.startswith(prefix) else line
