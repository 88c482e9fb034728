"""`edgelite predict --ray`: classify every file of an archive on a Ray cluster into one results file."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Sequence

from edgelite import Classifier
from edgelite.errors import EdgeliteError
from edgelite.files import find_images

from .shipped_model import ShippedModel
from .output import ResultsWriter, output_format
from .batch_inference import Timing, classify
from .session import connect, import_ray

log = logging.getLogger(__name__)


def predict_files(artifact: str | Path, sources: Sequence[str | Path], *, address: str | None = "local",
                  out: str | Path | None = None, top_k: int = 5, actors: int | None = None, resume: bool = False,
                  force: bool = False, preprocess=None, labels=None, output: int | str | None = None,
                  backend: str | None = None, options: dict | None = None, batch_size: int | None = None,
                  verbose: bool = True,
                  on_ready: Callable[[Classifier], None] | None = None) -> dict:
    """Classify the images under `sources` (files, folders, globs: as `edgelite predict`) with `artifact` on
    the Ray cluster at `address`, writing one row per input to `out` (.parquet, .csv or .jsonl):
    path, indices, labels, scores (top-k, as local `predict` gives them), error (the one line of a file
    that could not be read), artifact, sha256. Returns a summary of the run. `backend` and `options`: the
    backend and its speed options (a bundle's tuned choice), on single-threaded actors.

    `resume`: the paths already in `out` are skipped and the new rows added to it. Interrupted (Ctrl-C),
    `out` holds the rows finished so far. `on_ready(classifier)` is called once everything is checked
    (the artifact opened on the driver, `out` accepted), before the cluster is reached."""
    if out is None:
        raise EdgeliteError("--ray needs --out RESULTS.parquet|.csv|.jsonl")
    output_format(out)
    if top_k < 1:
        raise EdgeliteError(f"--top-k must be at least 1, got {top_k}")
    if batch_size is not None and batch_size < 1:
        raise EdgeliteError(f"batch size must be at least 1, got {batch_size}")
    import_ray()  # a missing Ray is said before any work
    paths = [str(p) for p in find_images(sources)]
    if not paths:
        raise EdgeliteError("no images found")
    model, classifier = ShippedModel.read(artifact, labels=labels, preprocess=preprocess, output=output,
                                          backend=backend, options=options)
    run = Run(model, out, paths, verbose)
    run.summary["preprocess"] = classifier.spec.to_dict()
    writer = ResultsWriter(out, force=force, resume=resume, sha256=model.sha256)
    if on_ready is not None:
        on_ready(classifier)
    try:
        with writer:
            run.go(writer, address, actors=actors, top_k=top_k, batch_size=batch_size)
    except KeyboardInterrupt:
        log.info(f"interrupted: {writer.rows} rows in {out} (--resume goes on from there)")
        raise
    return run.finish(writer)


class Run:
    """One predict run's bookkeeping: what was skipped, done and failed, and how long each part took."""

    def __init__(self, model: ShippedModel, out, paths: list[str], verbose: bool):
        self.model, self.out, self.paths, self.verbose = model, out, paths, verbose
        self.summary = {"out": str(out), "artifact": model.name, "sha256": model.sha256, "inputs": len(paths)}
        self.began = time.perf_counter()
        self.timing: Timing | None = None
        self.errors = 0

    def go(self, writer: ResultsWriter, address, **options) -> None:
        todo = [p for p in self.paths if p not in writer.done]
        self.summary["skipped"] = len(self.paths) - len(todo)
        if self.verbose and self.summary["skipped"]:
            log.info(f"resume: {self.summary['skipped']} of {len(self.paths)} files already in {self.out}")
        if not todo:
            return
        with connect(address, verbose=self.verbose) as cluster:
            self.summary.update(address=cluster.address, nodes=cluster.nodes, cpus=cluster.cpus,
                                connect_s=time.perf_counter() - self.began)
            self.timing = Timing()
            for table in classify(todo, self.model, cluster, timing=self.timing, verbose=self.verbose, **options):
                writer.write(table)
                self.errors += table.num_rows - table.column("error").null_count
            self.summary["actors"] = self.timing.actors

    def finish(self, writer: ResultsWriter) -> dict:
        timing = self.timing
        seconds = (timing.end if timing and timing.end else time.perf_counter()) - self.began
        done = writer.rows - (writer.previous.num_rows if writer.previous is not None else 0)
        self.summary.update(done=done, errors=self.errors, rows=writer.rows, seconds=seconds,
                            start_s=timing.start_s if timing else None,
                            files_per_s=done / seconds if done else None,
                            steady_files_per_s=timing.steady_rate() if timing else None)
        if self.verbose:
            rate = f", {self.summary['files_per_s']:.1f} files/s" if done else ""
            log.info(f"{done} files in {seconds:.1f} s{rate}; {self.errors} unreadable; {writer.rows} rows in "
                     f"{self.out}")
        return self.summary
