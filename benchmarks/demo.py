"""`edgelite demo`: train (or take) a model, export it, verify it, run it, and compare."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

from edgelite import Classifier
from edgelite.convert.samples import split_images
from edgelite.errors import EdgeliteError
from edgelite.files import find_images, prepare_out_dir
from edgelite.labeled import labeled_images

from . import report
from .bench import bench_conversion

log = logging.getLogger(__name__)
DEMO_FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8")


def run_demo(out: str | Path = "edgelite-demo", model: str | Path | None = None, data: str | Path | None = None,
             preprocess: str | None = None, labels: str | None = None, force: bool = False, epochs: int = 10,
             formats=DEMO_FORMATS, calibration: int = 200, check: int | None = None, runs: int = 50,
             examples: int = 3, threads: int | None = None, seed: int = 0,
             say: Callable[[str], None] | None = None) -> dict:
    """The whole trip on one model; returns the results document (also saved in `out`). Each step and the
    table are told to `say` (default: logged; `edgelite demo` prints them)."""
    say = say or log.info
    from edgelite.convert import convert

    started = time.perf_counter()
    out = prepare_out_dir(out, force)
    threads = threads or os.cpu_count()
    if model is None:
        from edgelite.train.datasets import write_digits
        from edgelite.train.recipes import train_cnn

        if data is None:
            say("1. dataset: scikit-learn's handwritten digits, written as class folders")
            data = write_digits(out / "data")
        say(f"2. training the small CNN on {data} ...")
        trained = train_cnn(data, out / "keras", size=32, epochs=epochs, force=True, seed=seed, augment=False,
                            verbose=0)
        say(f"   {len(trained.train)} training / {len(trained.val)} held-back images, "
              f"val accuracy {trained.val_accuracy:.1%} in {trained.seconds:.0f}s")
        model = trained.model_path
        calib_paths = [p for p, _ in trained.train]
        check_paths = [p for p, _ in trained.val]
    else:
        if data is None:
            raise EdgeliteError("--model needs --data: a folder of images to calibrate and check on")
        images = find_images([data])
        if len(images) < 2:
            raise EdgeliteError(f"{data}: need at least 2 images, found {len(images)}")
        calib_paths, check_paths = split_images(images, 0.5, seed)
        say(f"1-2. model {model}; {len(calib_paths)} calibration / {len(check_paths)} held-back images from {data}")
    calib_paths = calib_paths[:calibration]
    check_paths = check_paths[:check] if check else check_paths

    say(f"3-4. exporting to {', '.join(formats)}, each checked against Keras on {len(check_paths)} held-back images")
    conversion = convert(model, out / "artifacts", calib_paths, check_paths, formats=formats,
                         preprocess=preprocess, labels=labels, force=True)
    classes = conversion.reference.shape[1]
    truth_of = dict(labeled_images(data, conversion.labels, classes))
    say("     measuring latency, accuracy and cold start of the Keras model and the artifacts ...")
    results = bench_conversion(conversion, model, [(p, truth_of.get(p)) for p in check_paths], runs=runs,
                    threads=[threads], cold_repeat=1, preprocess=preprocess, verbose=False,
                    title=f"edgelite demo: {Path(model).name}")
    rows = results["rows"] + [
        {"name": a.format, "format": a.format, "error": a.error} for a in conversion.artifacts if a.error]

    shown = next((a for a in conversion.artifacts if a.format == "tflite-int8" and not a.error),
                 next((a for a in conversion.artifacts if not a.error), None))
    if shown is not None:
        say(f"5. the TensorFlow-free runtime on {shown.path.name}:")
        classifier = Classifier(shown.path, threads=threads)
        for path in check_paths[::max(1, len(check_paths) // examples)][:examples]:
            truth_name = _name(conversion.labels, truth_of.get(path))
            say(f"   {path.name}" + (f" (true: {truth_name})" if truth_name else ""))
            for p in classifier.predict(path, top_k=5):
                say(f"      {p.score:6.3f}  {p.label}")

    document = {**results, "model": str(model), "data": str(data), "held_back_images": len(check_paths),
                "calibration_images": len(calib_paths), "seconds": time.perf_counter() - started}
    paths = report.save(rows, out, document, document["title"])
    say(f"6. results ({len(check_paths)} held-back images, batch 1, {threads} threads):\n")
    say(report.markdown(rows))
    say(f"written: {', '.join(paths.values())}  ({document['seconds']:.0f}s in all)")
    return {**document, "rows": rows, "ok": conversion.ok}


def _name(labels, index) -> str | None:
    if index is None:
        return None
    return labels[index] if labels else str(index)
