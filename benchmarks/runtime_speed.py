"""How fast the device runtime is, as ratios against the plainest code that does the same.

    python -m edgelite.benchmarks.runtime_speed [--model M.tflite] [--images DIR] [--out DIR]

Prints a table and writes runtime_speed.json. Ratios, not absolute times, so that a
machine's speed cancels out; each pair is measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edgelite import Classifier
from edgelite.errors import guarded
from edgelite.files import find_images, write_atomic, write_json
from edgelite.preprocess import PreprocessSpec

from .coldstart import measure_processes
from .latency import measure, per_item_ms

SHARED = Path(os.environ.get("EDGELITE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DEFAULT_MODEL = SHARED / "data/third-party-models/mobilenet_v2_1.0_224_quant.tflite"
DEFAULT_LABELS = SHARED / "data/third-party-models/imagenet_labels.txt"
DEFAULT_IMAGES = SHARED / "data/imagenet-sample"

BARE_SCRIPT = """\
import sys
import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=2)
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
image = Image.open(sys.argv[2]).convert("RGB").resize(tuple(inp["shape"][2:0:-1]))
interpreter.set_tensor(inp["index"], np.asarray(image, dtype=inp["dtype"])[None])
interpreter.invoke()
print(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
"""


def plain_pil_input(path, spec: PreprocessSpec, detail) -> np.ndarray:
    """What tutorials do: open, convert, resize, float math, quantize."""
    height, width = spec.size
    image = Image.open(path).convert("RGB").resize((width, height))
    x = (np.asarray(image, np.float32) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    scale, zero_point = detail.scale, detail.zero_point
    if scale:
        info = np.iinfo(detail.dtype)
        x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    return x.astype(detail.dtype)[None]


def interleaved(first, second, rounds: int = 7, runs: int = 50) -> tuple[float, float]:
    """Median p50 of two callables timed in alternating rounds, so drift hits both alike."""
    a, b = [], []
    for _ in range(rounds):
        a.append(measure(first, runs=runs, warmup=5)["p50_ms"])
        b.append(measure(second, runs=runs, warmup=5)["p50_ms"])
    return statistics.median(a), statistics.median(b)


def per_image_ms(fn, paths, repeat: int = 3) -> float:
    """Median over `repeat` passes of the mean milliseconds per image, one call per image."""
    return per_item_ms(lambda: [fn(p) for p in paths], len(paths), repeat)


def synthetic_photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A 12-megapixel JPEG with photo-like smooth structure and grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(xx / 300), 128 + 100 * np.cos(yy / 200), 128 + 60 * np.sin((xx + yy) / 500)], -1)
    rgb += np.random.default_rng(0).normal(0, 8, rgb.shape).astype(np.float32)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)
    return path


def cold_start(model: Path, image: Path, labels: Path | None, repeat: int) -> dict:
    """Median wall seconds and peak RSS of `edgelite predict` against a bare LiteRT script."""
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE_SCRIPT)
        ours = [str(Path(sys.executable).with_name("edgelite")), "predict", str(model), str(image), "--threads", "2"]
        if labels:
            ours += ["--labels", str(labels)]
        return measure_processes({"edgelite": ours, "bare": [sys.executable, str(bare), str(model), str(image)]},
                                 repeat)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=100, help="images to time (default 100)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args) -> int:
    labels = args.labels or (DEFAULT_LABELS if args.model == DEFAULT_MODEL else None)

    clf = Classifier(args.model, threads=args.threads, labels=labels)
    paths = find_images([args.images])[: args.limit]
    x = clf.prepare(paths[0])
    interp = clf.backend.interpreter
    in_index, out_index = clf.backend._in_index, clf.backend._out_index

    def bare_invoke():
        interp.set_tensor(in_index, x)
        interp.invoke()
        return interp.get_tensor(out_index)

    results = {}
    invoke, predict = interleaved(bare_invoke, lambda: clf.predict(x))
    results["predict(array) / bare invoke"] = (predict, invoke)
    raw, run = bare_invoke(), clf.backend.run
    clf.backend.run = lambda batch: raw  # everything predict does besides the interpreter's work
    overhead = measure(lambda: clf.predict(x), runs=3000, warmup=100)["p50_ms"]
    clf.backend.run = run
    results["(invoke + predict's own work) / invoke"] = (invoke + overhead, invoke)

    ours = per_image_ms(clf.prepare, paths)
    plain = per_image_ms(lambda p: plain_pil_input(p, clf.spec, clf.input), paths)
    results["JPEG -> input / invoke (sample photos)"] = (ours, invoke)
    results["plain PIL JPEG -> input / invoke"] = (plain, invoke)

    with tempfile.TemporaryDirectory() as tmp:
        big = synthetic_photo(Path(tmp) / "12mp.jpg")
        big_ms = per_image_ms(clf.prepare, [big] * 5)
        big_plain = per_image_ms(lambda p: plain_pil_input(p, clf.spec, clf.input), [big] * 3, repeat=1)
    results["12 MP JPEG -> input / invoke"] = (big_ms, invoke)
    results["plain PIL 12 MP JPEG -> input / invoke"] = (big_plain, invoke)

    sequential = per_image_ms(clf.predict, paths, repeat=2)
    batched = per_item_ms(lambda: list(clf.predict_batch(paths)), len(paths), repeat=2)
    results["folder throughput: predict_batch vs a loop of predict"] = (sequential, batched)

    cold = cold_start(args.model, paths[0], labels, repeat=7)
    results["CLI cold start wall: edgelite / bare script"] = (cold["edgelite"]["wall_s"] * 1000, cold["bare"]["wall_s"] * 1000)
    results["CLI peak RSS: edgelite / bare script"] = (cold["edgelite"]["peak_rss_mib"], cold["bare"]["peak_rss_mib"])

    goals = {
        "predict(array) / bare invoke": "<= 1.05",
        "(invoke + predict's own work) / invoke": "<= 1.05",
        "JPEG -> input / invoke (sample photos)": "<= 1.0",
        "12 MP JPEG -> input / invoke": "<= 5",
        "folder throughput: predict_batch vs a loop of predict": ">= 1.5",
        "CLI cold start wall: edgelite / bare script": "<= 1.25",
        "CLI peak RSS: edgelite / bare script": "<= 1.2",
    }
    rows = []
    print(f"\nruntime speed: {args.model.name}, {len(paths)} images, {args.threads} threads, "
          f"{platform.machine()} {os.cpu_count()} cores\n")
    print("| measure | ours | baseline | ratio | goal |\n|---|---:|---:|---:|---:|")
    for name, (a, b) in results.items():
        ratio = a / b
        rows.append({"measure": name, "value": a, "baseline": b, "ratio": ratio, "goal": goals.get(name, "")})
        print(f"| {name} | {a:.2f} | {b:.2f} | {ratio:.2f}x | {goals.get(name, '')} |")
    note = "(ms per call or image; MiB for RSS; throughput ratio = loop ms / batch ms per image)"
    print("\n" + note)
    args.out.mkdir(parents=True, exist_ok=True)
    table = "\n".join(["| measure | ours | baseline | ratio | goal |", "|---|---:|---:|---:|---:|"] + [
        f"| {r['measure']} | {r['value']:.2f} | {r['baseline']:.2f} | {r['ratio']:.2f}x | {r['goal']} |" for r in rows])
    write_atomic(args.out / "runtime_speed.md",
                 f"## Runtime speed: {args.model.name}, {len(paths)} images, {args.threads} threads\n\n{table}\n\n{note}\n")
    document = {"model": str(args.model), "images": len(paths), "threads": args.threads,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                "date": time.strftime("%Y-%m-%d"), "rows": rows, "cold_start": cold}
    path = write_json(args.out / "runtime_speed.json", document)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
