"""`edgelite bench`: every artifact against the Keras reference, on one machine and one dataset.

Latency (batch 1 by default; every artifact x threads setting timed as it will run, alone, in alternating
rounds of turns: edgelite.timing, the method tune uses), cold start and peak
memory in fresh processes, file size, accuracy on a labeled folder and agreement with Keras.
Without TensorFlow (on the device) the Keras rows are left out and agreement is measured on
the check set each artifact carries (`edgelite verify`), on this machine's kernels.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from edgelite import Classifier
from edgelite.errors import EdgeliteError, one_line
from edgelite.files import find_artifacts, prepare_out_dir
from edgelite.labeled import accuracy, labeled_images
from edgelite.result_rows import SELF_AGREEMENT, agreement_fields, artifact_fields, size_mb
from edgelite.timing import METHOD, measure, opener, summary

from . import report
from .coldstart import artifact_command, keras_command, measure_processes
from .latency import keras_call

SOURCE_SUFFIXES = (".onnx", ".pt2", ".pt")  # references convert takes from outside Keras (convert.loading)

def environment() -> dict:
    """The machine and the versions that produced the figures: what tune records (edgelite.machine.machine), the
    int8 kernels' behaviour, and TensorFlow where this run used it."""
    from edgelite.machine import machine

    here = machine()
    versions = {"python": here["python"], **here["packages"]}
    if "tensorflow" in sys.modules:
        versions["tensorflow"] = sys.modules["tensorflow"].__version__
    flags = list(here["flags"])
    try:
        from edgelite.int8 import saturates

        flags.append("u8s8-saturates" if saturates() else "u8s8-exact")  # what onnxruntime's int8 kernels do here
    except ImportError:
        pass
    return {"cpu": here["cpu"], "cores": here["cores"], "machine": platform.machine(), "system": platform.system(),
            "flags": flags, "versions": versions, "date": time.strftime("%Y-%m-%d %H:%M")}


def bench_conversion(conversion, keras: str | Path, items: Sequence[tuple[Path, int | None]], **kwargs) -> dict:
    """bench() for what convert() just made, on its own check images (`items`, in the same
    order): the loaded Keras model and its reference predictions are reused, not redone."""
    if len(items) != len(conversion.reference):
        raise ValueError("items must be the conversion's check images")
    artifacts = [a.path for a in conversion.artifacts if not a.error]
    return bench(artifacts, keras=keras, items=items, keras_model=(conversion.model, conversion.reference), **kwargs)


def bench(artifacts: Sequence[str | Path], data: str | Path | None = None, keras: str | Path | None = None,
          items: Sequence[tuple[Path, int | None]] | None = None, keras_model=None,
          out: str | Path | None = None, runs: int = 100, warmup: int = 10, threads: Sequence[int] | None = None,
          batches: Sequence[int] = (1,), limit: int | None = None, cold_repeat: int = 3, preprocess: str | None = None,
          force: bool = False, title: str | None = None, verbose: bool = True, options: dict | None = None) -> dict:
    """Measure every artifact (and the Keras model) and return the results document.

    `keras`: the reference, a Keras model or, as convert takes them, a float .onnx / .pt2 / .pt (run by onnxruntime
    / torch). Accuracy and agreement are measured on `data` (a labeled folder) or on `items`, a list of
    (image, true class or None). `keras_model`: (model, its probabilities on the images) when
    they are at hand already.
    With `out`, also writes results.json/.csv/.md and .png there. `options`: {artifact path: backend
    options} (what `edgelite tune` chose for it).
    """
    paths = find_artifacts(artifacts)
    out_dir = prepare_out_dir(out, force) if out else None
    cores = os.cpu_count() or 1
    sweep = sorted(set(threads)) if threads else list(range(1, cores + 1))
    main_threads = max(sweep)
    options = {Path(p): o for p, o in (options or {}).items()}
    first = Classifier(paths[0], preprocess=preprocess)
    labels, classes, first_spec = first.labels, first.output.shape[-1], first.spec
    del first  # nothing is loaded while the settings are timed

    if items is None:
        items = labeled_images(data, labels, classes) if data else []
    if limit:
        items = items[:limit]
    images = [p for p, _ in items]
    truth = [t for _, t in items]
    sample = images[0] if images else None

    rows = []
    reference = None
    if keras is not None and Path(keras).suffix.lower() in SOURCE_SUFFIXES:
        source_rows, reference = _source_rows(keras, images, truth, runs, warmup, first_spec, verbose)
        rows.extend(source_rows)
    elif keras is not None:
        keras_rows, reference = _keras_rows(keras, keras_model, images, truth, runs, warmup, cold_repeat, preprocess,
                                            first_spec, verbose)
        rows.extend(keras_rows)
    latency = _latency(paths, sweep, options, runs, warmup, verbose)
    for path in tqdm(paths, desc="artifacts", disable=not verbose):  # one artifact loaded at a time
        clf = Classifier(path, threads=main_threads, preprocess=preprocess, options=options.get(path))
        rows.append(_artifact_row(path, clf, sweep, main_threads, images, truth, reference, latency, runs,
                                  batches, cold_repeat, sample))
        del clf
    report.add_speedups(rows)
    document = {
        "title": title or "edgelite bench",
        "environment": environment(),
        "settings": {"runs": runs, "warmup": warmup, "threads": main_threads, "threads_sweep": sweep,
                     "latency": {**METHOD, "measure": "Classifier.scores on a prepared input"},
                     "batches": list(batches), "images": len(images), "data": str(data) if data else "given list",
                     "keras": str(keras) if keras else None},
        "rows": rows,
    }
    if out_dir:
        document["files"] = report.save(rows, out_dir, document, document["title"])
    return document


def _keras_rows(keras_path, loaded, images, truth, runs, warmup, cold_repeat, preprocess, first_spec, verbose):
    """Two reference rows: the model traced once (the fair baseline) and `model.predict`
    called per image (what most tutorials time)."""
    from edgelite.convert.loading import import_tensorflow

    import_tensorflow()
    from edgelite.convert.loading import load_model
    from edgelite.convert.keras_facts import keras_spec
    from edgelite.preprocess import batch, to_float

    keras_path = Path(keras_path)
    model, reference = loaded if loaded is not None else (load_model(keras_path), None)
    spec = keras_spec(model, keras_path, preprocess or (first_spec if first_spec.layout == "NHWC" else None))
    if images:
        if reference is None:
            probabilities = []
            for start in tqdm(range(0, len(images), 32), desc="Keras reference", disable=not verbose):
                probabilities.append(model.predict(batch(images[start:start + 32], spec), verbose=0))
            reference = np.concatenate(probabilities)
        x = to_float(images[0], spec)[None]
    else:
        reference = None
        x = np.zeros((1, *spec.size, 3), np.float32)
    size = size_mb(keras_path)
    acc = accuracy(reference, truth) if reference is not None else {}
    traced = keras_call(model, x)  # in memory already: its turns warm and time it, nothing to open
    compiled = _timed({"compiled": lambda: traced}, runs, warmup)["compiled"]
    plain = _timed({"plain": lambda: (lambda: model.predict(x, verbose=0))}, max(5, runs // 5), 2)["plain"]
    cold = (measure_processes({"keras": keras_command(keras_path, images[0], preprocess)}, cold_repeat)["keras"]
            if images else {})
    common = {"format": "keras", "path": str(keras_path), "size_mb": size, "top1": acc.get("top1"),
              "top5": acc.get("top5"), **SELF_AGREEMENT,
              "cold_start_s": cold.get("wall_s"), "peak_rss_mib": cold.get("peak_rss_mib")}
    rows = [{"name": "Keras (compiled)", **common, **_latency_fields(compiled)},
            {"name": "Keras predict()", **common, **_latency_fields(plain)}]
    return rows, reference


def _source_rows(path, images, truth, runs, warmup, first_spec, verbose):
    """The reference row of a model from outside Keras (a float .onnx, a .pt2, a TorchScript .pt): run as convert
    runs it for its gate (onnxruntime on the ONNX file, torch on a .pt2/.pt), on the pixels the artifacts take (the
    first artifact's recorded preprocessing, held NHWC). Its latency is that runner's on one image."""
    import dataclasses

    from edgelite.classifier import scores_from_output
    from edgelite.convert.loading import import_tensorflow, load_source
    from edgelite.preprocess import batch

    import_tensorflow()  # the ONNX route rebuilds the model in Keras while reading it
    path = Path(path)
    source = load_source(path)
    spec = dataclasses.replace(first_spec, layout="NHWC")
    probabilities = source.outputs == "probabilities"
    reference, x = None, np.zeros((1, *spec.size, 3), np.float32)
    if images:
        reference = np.concatenate([scores_from_output(source.run(batch(images[i:i + 32], spec)),
                                                       probabilities=probabilities)
                                    for i in tqdm(range(0, len(images), 32), desc="source reference",
                                                  disable=not verbose)])
        x = batch(images[:1], spec)
    timed = _timed({"source": lambda: (lambda: source.run(x))}, runs, warmup)["source"]
    acc = accuracy(reference, truth) if reference is not None else {}
    runner = "onnxruntime" if path.suffix.lower() == ".onnx" else "torch"
    row = {"name": f"source ({runner})", "format": f"source{path.suffix.lower()}", "path": str(path),
           "size_mb": size_mb(path), "top1": acc.get("top1"), "top5": acc.get("top5"), **SELF_AGREEMENT,
           **_latency_fields(timed)}
    return [row], reference


def _timed(openers: dict, runs: int, warmup: int) -> dict:
    """edgelite.timing's method on these settings: `runs` calls each, in alternating rounds of turns."""
    rounds = max(1, min(5, runs // 10))
    per_turn = measure(openers, rounds, -(-runs // rounds), warmup=warmup)
    return {key: {"runs": sum(map(len, turns)), **summary(turns)} for key, turns in per_turn.items()}


def _latency(paths, sweep, options, runs, warmup, verbose) -> dict:
    """{(artifact, threads): figures}: every setting timed as it will run, alone (edgelite.timing), the
    settings in alternating rounds so that drift hits them alike."""
    openers = {(path, t): opener(path, t, options.get(path)) for path in paths for t in sweep}
    if verbose:
        print(f"timing {len(openers)} settings, each alone, in alternating rounds", file=sys.stderr)
    return _timed(openers, runs, warmup)


def _artifact_row(path, clf, sweep, main_threads, images, truth, reference, latency, runs, batches,
                  cold_repeat, sample):
    x = clf.prepare(sample) if sample else np.zeros((1, *clf.input.shape[1:]), clf.input.dtype)
    by_threads = {t: latency[(path, t)] for t in sweep}
    row = {**artifact_fields(path, clf.metadata), **_latency_fields(by_threads[main_threads]),
           "threads": {str(t): m["p50_ms"] for t, m in by_threads.items()}}
    row["batch_ms_per_image"] = _batches(clf, x, batches, runs)
    if images:
        scores = np.concatenate([clf.scores(clf.prepare(p)) for p in images])
        acc = accuracy(scores, truth)
        row.update(top1=acc["top1"], top5=acc["top5"])
        if reference is not None:
            from edgelite.parity import parity

            row.update(agreement_fields(parity(reference, scores)), agreement_source="measured")
        cold = measure_processes({"artifact": artifact_command(path, sample)}, cold_repeat)["artifact"]
        row.update(cold_start_s=cold.get("wall_s"), peak_rss_mib=cold.get("peak_rss_mib"))
    if reference is None and clf.backend.check_set() is not None:
        from edgelite.checkset import verify  # the check set it carries, on this machine's kernels

        measured = verify(clf)
        row.update(agreement_fields(measured), agreement_source=f"measured here on its {measured['images']} check images")
    elif reference is None and "parity" in clf.metadata:
        row.update(agreement_fields(clf.metadata["parity"]), agreement_source="export metadata")
    return row


def _batches(clf, x, batches, runs) -> dict:
    result = {}
    for b in batches:
        if b == 1:
            continue
        xb = np.repeat(x, b, axis=0)
        try:
            call = lambda: clf.backend.run(xb)  # noqa: E731
            result[str(b)] = _timed({b: lambda: call}, max(5, runs // b), 2)[b]["p50_ms"] / b
        except (RuntimeError, ValueError, EdgeliteError) as exc:  # e.g. a model fixed to batch 1
            result[str(b)] = f"unsupported: {one_line(exc, limit=120)}"
    clf.backend.run(x)  # back to batch 1
    return result


def _latency_fields(figures: dict) -> dict:
    return {key: value for key, value in figures.items() if key.endswith("_ms")}
