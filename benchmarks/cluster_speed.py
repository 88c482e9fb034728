"""Photos/s on one machine: local `predict_batch` against `predict --ray local` with 1 and 2 actors.

    python -m edgelite.benchmarks.cluster_speed ARTIFACT --images DIR... [--limit N] [--actors 1 2] [--out F.json]

The same files in the same order for every row (with --limit larger than the files found, the list is
repeated up to it). Local: `Classifier.predict_batch` (one single-threaded interpreter per core, each
decoding its own files), timed after a warm-up, as `edgelite predict` runs a folder. Ray: what
`edgelite predict --ray local --out results.parquet` does (a Ray instance started for the run, the model
shipped through the object store, the actor pool, the results streamed back and written), timed in parts:
connecting (Ray started), the start of the stream until its first rows (actors started, model opened), and
the steady rate (from a quarter of the rows back to the last); the fixed cost is the whole wall time less what
the photos take at the steady rate. CPU ms/photo: user + system time of every process of the run (local: the
process; Ray: the driver and everything it started, actors, raylet, GCS) per photo, between a quarter and three
quarters of the rows for Ray: what the machine spends per photo, which other jobs on it do not change much.
`--decode-tasks` adds a row where decoding runs in a separate stage of Ray tasks and only the model's input
arrays reach the actors (the design not taken: see benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgelite import Classifier
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=".tflite or .onnx file")
    parser.add_argument("--images", nargs="+", required=True, help="image files or folders")
    parser.add_argument("--limit", type=int, help="this many photos (the list repeated if it is shorter)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="pool sizes (default 1 2)")
    parser.add_argument("--batch-size", type=int, help="files per actor call (default: edgelite.cluster's choice)")
    parser.add_argument("--address", default="local",
                        help="the Ray to use: local (started for each row, the default) or a running cluster "
                             "(auto, HOST:6379): then connecting is all the start costs Ray itself")
    parser.add_argument("--decode-tasks", action="store_true",
                        help="also the variant that decodes in Ray tasks before the actors (largest pool size)")
    parser.add_argument("--out", help="JSON file for the figures")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args))


def photos(sources, limit: int | None) -> list[str]:
    found = [str(p) for p in find_images(sources)]
    if not found:
        raise EdgeliteError("no images found")
    if limit is None:
        return found
    if limit < 1:
        raise EdgeliteError("--limit must be at least 1")
    return list(itertools.islice(itertools.cycle(found), limit))


def run(args) -> int:
    from edgelite.cluster.session import import_ray

    from .bench import environment

    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise EdgeliteError(f"{out} already exists (use --force to overwrite)")
    if any(n < 1 for n in args.actors):
        raise EdgeliteError("--actors must be at least 1")
    import_ray()
    paths = photos(args.images, args.limit)
    print(f"{len(paths)} photos ({len(set(paths))} different), {args.model}", file=sys.stderr)
    rows = [local_row(args.model, paths)]
    print(f"local predict_batch: {rows[0]['photos_per_s']:.1f} photos/s", file=sys.stderr)
    for actors in args.actors:
        rows.append(ray_row(args.model, paths, actors, args.batch_size, args.address))
        print(f"{rows[-1]['name']}: {rows[-1]['photos_per_s']:.1f} photos/s", file=sys.stderr)
    if args.decode_tasks:
        rows.append(ray_row(args.model, paths, max(args.actors), args.batch_size, args.address, decode_tasks=True))
    base = rows[0]["photos_per_s"]
    for row in rows:
        row["vs_local"] = row["photos_per_s"] / base
        if row.get("steady_photos_per_s"):
            row["steady_vs_local"] = row["steady_photos_per_s"] / base
    document = {"environment": environment(), "photos": len(paths), "distinct": len(set(paths)),
                "address": args.address,
                "model": str(args.model), "batch_size": args.batch_size, "rows": rows}
    print(table(rows))
    if out is not None:
        write_json(out, document)
        print(f"written: {out}", file=sys.stderr)
    return 0


def local_row(model: str, paths: list[str]) -> dict:
    began = time.perf_counter()
    classifier = Classifier(model)
    list(classifier.predict_batch(paths[:8]))  # the per-core interpreters made, as in a second call
    start_s = time.perf_counter() - began
    began, cpu = time.perf_counter(), time.process_time()
    results = list(classifier.predict_batch(paths))
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"name": "local predict_batch", "workers": min(4, max(1, os.cpu_count() or 1)),
            "photos_per_s": len(paths) / seconds, "seconds": seconds, "start_s": start_s,
            "cpu_ms_per_photo": 1000 * cpu / len(paths), "errors": sum(r.error is not None for r in results)}


def ray_row(model: str, paths: list[str], actors: int, batch_size: int | None, address: str = "local",
            decode_tasks: bool = False) -> dict:
    from edgelite.cluster.shipped_model import ShippedModel
    from edgelite.cluster.output import ResultsWriter
    from edgelite.cluster.batch_inference import Timing, classify
    from edgelite.cluster.session import connect

    shipped, classifier = ShippedModel.read(model)
    local = address in (None, "", "local")  # a running cluster's processes are not this process's children
    began = time.perf_counter()
    errors = 0
    with tempfile.TemporaryDirectory() as folder:
        with ResultsWriter(Path(folder) / "results.parquet") as writer, connect(address, verbose=False) as cluster:
            connect_s = time.perf_counter() - began
            timing = Timing()
            stream = (decoded_in_tasks(paths, shipped, classifier, cluster, actors, batch_size, timing) if decode_tasks
                      else classify(paths, shipped, cluster, actors=actors, batch_size=batch_size, timing=timing,
                                    verbose=False))
            # (CPU seconds of every process of the run, rows) when a quarter and when three quarters of the rows
            # are back: the actors are running at both (Ray Data ends them as the stream ends)
            window: list[tuple[float | None, int]] = []
            for part in stream:
                writer.write(part)
                errors += part.num_rows - part.column("error").null_count
                if local and len(window) < 2 and writer.rows >= len(paths) * (1 + 2 * len(window)) / 4:
                    window.append((tree_cpu(), writer.rows))
            seconds = timing.end - began
        shutdown_s = time.perf_counter() - began - seconds
        rows = writer.rows
    steady = timing.steady_rate()
    fixed = seconds - rows / steady if steady else None
    where = "local" if local else f"running cluster ({address})"
    return {"name": f"ray {where}, {actors} actor(s)" + (", decoding in tasks" if decode_tasks else ""),
            "actors": actors, "photos_per_s": rows / seconds, "seconds": seconds, "connect_s": connect_s,
            "first_rows_s": timing.start_s, "steady_photos_per_s": steady, "start_s": fixed,
            "shutdown_s": shutdown_s, "rows": rows, "errors": errors,
            "cpu_ms_per_photo": cpu_per_photo(window)}


def cpu_per_photo(window: list[tuple[float | None, int]]) -> float | None:
    """CPU milliseconds per photo between two (CPU seconds, rows) marks."""
    if len(window) < 2 or None in (window[0][0], window[1][0]) or window[1][1] <= window[0][1]:
        return None
    return 1000 * (window[1][0] - window[0][0]) / (window[1][1] - window[0][1])


def tree_cpu(root: int | None = None) -> float | None:
    """CPU seconds (user + system) used so far by a process and every process under it: here the driver and
    the local Ray instance it started (GCS, raylet, the workers). None where there is no /proc."""
    root = root or os.getpid()
    ticks = os.sysconf("SC_CLK_TCK")
    parents, used = {}, {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ..., utime, stime
        parents[int(entry)], used[int(entry)] = int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for pid, seconds in used.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        total += seconds if ancestor == root else 0.0
    return total


class ClassifyInputs:
    """The variant's actor: model inputs decoded elsewhere, run on one single-threaded Classifier."""

    def __init__(self, model):
        from edgelite.cluster.workers import ROWS

        self.model = model
        self.classifier = self.model.open()
        self.schema = ROWS

    def __call__(self, batch: dict) -> "object":
        import pyarrow as pa

        clf, rows = self.classifier, []
        for path, x, error in zip(batch["path"], batch["input"], batch["error"]):
            predictions = None if error else clf.top_k(clf.scores(x[None])[0], 5)
            rows.append({"path": str(path), "error": error or None, "artifact": self.model.name,
                         "sha256": self.model.sha256,
                         **{key: None if predictions is None else [getattr(p, attr) for p in predictions]
                            for key, attr in (("indices", "index"), ("labels", "label"), ("scores", "score"))}})
        return pa.Table.from_pylist(rows, schema=self.schema)


def decode(batch: dict, spec, dtype, quantization, shape) -> dict:
    """A Ray task's work in the variant: files -> the model's input arrays (the runtime's `to_input`)."""
    from edgelite.preprocess import to_input

    inputs, errors = [], []
    for path in batch["path"]:
        try:
            inputs.append(to_input(str(path), spec, dtype, quantization)[0])
            errors.append("")
        except EdgeliteError as exc:
            inputs.append(np.zeros(shape, dtype))
            errors.append(str(exc))
    return {"path": batch["path"], "input": np.stack(inputs), "error": np.array(errors, dtype=object)}


def decoded_in_tasks(paths, shipped, classifier, cluster, actors, batch_size, timing):
    """The pipeline with decoding in a separate stage of Ray tasks (half a CPU each, actors half a CPU)."""
    import ray

    from edgelite.cluster.batch_inference import plan

    actors, _, per_block, blocks = plan(len(paths), actors, cluster, batch_size)
    detail = classifier.input
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    ds = ds.map_batches(decode, fn_kwargs={"spec": classifier.spec, "dtype": detail.dtype,
                                           "quantization": (detail.scale, detail.zero_point),
                                           "shape": tuple(detail.shape[1:])},
                        batch_size=None, num_cpus=0.5)
    ds = ds.map_batches(ClassifyInputs, fn_constructor_kwargs={"model": shipped},
                        compute=ray.data.ActorPoolStrategy(size=actors), batch_size=None, num_cpus=0.5)
    for part in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        timing.arrived(part.num_rows)
        yield part
    timing.end = time.perf_counter()


def table(rows: list[dict]) -> str:
    def cell(value, fmt):
        return fmt.format(value) if value is not None else "-"

    lines = ["| run | photos/s | vs local | steady photos/s | steady vs local | CPU ms/photo | start s | connect s "
             "| wall s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['photos_per_s']:.1f} | {r['vs_local']:.2f}x | "
                     f"{cell(r.get('steady_photos_per_s'), '{:.1f}')} | {cell(r.get('steady_vs_local'), '{:.2f}x')} | "
                     f"{cell(r.get('cpu_ms_per_photo'), '{:.2f}')} | "
                     f"{cell(r.get('start_s'), '{:.2f}')} | {cell(r.get('connect_s'), '{:.2f}')} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
