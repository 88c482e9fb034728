"""`edgelite bench`: latency, size and accuracy of artifacts against the Keras reference."""
from __future__ import annotations

import argparse
import os

from .options import model_choice, preprocess_choice, preprocessing_options
from .ray_options import add_ray_options


def add(sub) -> None:
    p = sub.add_parser("bench", help="latency, size and accuracy of artifacts against the Keras reference",
                       description="Benchmark .tflite/.onnx artifacts (files, or folders such as a convert "
                                   "output) and optionally the Keras model they came from: latency percentiles, "
                                   "threads sweep, cold start, peak RSS, size, top-1/top-5 on a labeled folder "
                                   "and agreement with Keras. Prints a table; --out writes JSON, CSV, Markdown "
                                   "and a plot.")
    p.add_argument("models", nargs="+", help=".tflite/.onnx files or folders holding them (a bundle folder: the "
                                             "artifact and threads edgelite tune chose there)")
    p.add_argument("--source", dest="keras", metavar="MODEL",
                   help="the model the artifacts came from, as reference: a Keras model (.keras, .h5, SavedModel), "
                        "or a float .onnx (run by onnxruntime) / .pt2 / .pt (run by torch), as convert takes them; "
                        "needs TensorFlow")
    p.add_argument("--keras", dest="keras", help="a Keras model as reference (as --source)")
    p.add_argument("--reference", dest="keras", help=argparse.SUPPRESS)  # its name until 0.2: kept for one release
    p.add_argument("--data", help="labeled images: class sub-folders, or <wnid>_*.JPEG with wnids.txt")
    p.add_argument("--out", help="folder for results.json/.csv/.md/.png")
    p.add_argument("--runs", type=int, default=100,
                   help="timed calls per setting (default 100), spread over up to 5 rounds of turns (edgelite.timing)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up calls at the start of each turn (default 10)")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: sweep 1..cores)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--limit", type=int, help="use at most this many labeled images")
    p.add_argument("--quick", action="store_true", help="short run: 20 runs, all cores only, 50 images")
    preprocessing_options(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing --out folder")
    add_ray_options(p, evaluation=True)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.benchmarks import report
    from edgelite.benchmarks.bench import bench

    if args.ray is not None:
        return run_on_ray(args)
    if args.actors:
        from edgelite.errors import EdgeliteError

        raise EdgeliteError("--actors goes with --ray")
    models, options, chosen = _resolved(args.models)
    runs, threads, limit, repeat = args.runs, args.threads or (sorted(set(chosen)) or None), args.limit, 3
    if args.quick:
        runs, threads, limit, repeat = min(runs, 20), threads or [os.cpu_count() or 1], limit or 50, 1
    document = bench(models, data=args.data, keras=args.keras, out=args.out, runs=runs, warmup=args.warmup,
                     threads=threads, batches=args.batch, limit=limit, cold_repeat=repeat,
                     preprocess=preprocess_choice(args), force=args.force, options=options)
    env, settings = document["environment"], document["settings"]
    print(f"\n{env['cpu']}, {env['cores']} cores; {settings['images']} images; batch 1, "
          f"{settings['threads']} threads, {settings['runs']} runs\n")
    print(report.markdown(document["rows"]), end="")
    if document.get("files"):
        print(f"\nwritten: {', '.join(document['files'].values())}")
    return 0


def _resolved(models: list[str]) -> tuple[list[str], dict, list[int]]:
    """The models as given, each bundle folder as the artifact tune chose for this machine: (models, that
    artifact's backend options by path, the thread counts chosen)."""
    resolved, options, chosen = [], {}, []
    for model in models:
        choice = model_choice(model)
        resolved.append(choice["model"])
        if "options" in choice:
            options[choice["model"]], chosen = choice["options"], [*chosen, choice["threads"]]
    return resolved, options, chosen


def run_on_ray(args) -> int:
    """--ray: top-1/top-5 and agreement between the artifacts over the whole labeled set, on a Ray cluster
    (edgelite.cluster.evaluate); latency stays a local measurement, made on the device without --ray."""
    from edgelite.benchmarks import report
    from edgelite.cluster import evaluate
    from edgelite.errors import EdgeliteError
    from edgelite.files import prepare_out_dir

    if args.keras:
        raise EdgeliteError("bench --ray measures the artifacts on the cluster; the Keras reference runs locally "
                            "(bench --keras without --ray)")
    out = prepare_out_dir(args.out, args.force) if args.out else None
    models, options, _ = _resolved(args.models)  # a bundle: its tuned choice, as local bench runs it
    document = evaluate(models, args.data, address=args.ray, actors=args.actors, options=options,
                        limit=args.limit or (50 if args.quick else None), preprocess=preprocess_choice(args))
    rows, settings, cluster = document["rows"], document["settings"], document["cluster"]
    print(f"\n{settings['images']} images of {settings['data']} on Ray ({cluster['address']}, {cluster['nodes']} "
          f"node(s), {cluster['cpus']} CPUs); top-1 agreement with {rows[0]['name']}; latency: bench without --ray, "
          "on the device\n")
    print(report.markdown(rows), end="")
    if out is not None:
        files = report.save(rows, out, document, "edgelite bench --ray")
        print(f"\nwritten: {', '.join(files.values())}")
    return 0
