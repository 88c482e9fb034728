"""How fast the device runtime is, as ratios against the plainest code that does the same.

    python -m edgelite.benchmarks.runtime_speed [--model M.tflite] [--images DIR...] [--limit N] [--out DIR]
        [--onnx M_int8.onnx M_fp32.onnx]

Prints a table and writes runtime_speed.json. Ratios, not absolute times, so that a
machine's speed cancels out; each pair is measured in the same run. With --onnx (an
`edgelite convert` pair), also: onnx-int8 folder throughput, and onnx-int8's cold start against
its fp32 sibling's on this CPU and with the int8 re-encoding an AVX2 CPU without VNNI needs
(forced here: the same work, timed on this CPU).

Children start with bytecode caching on (PYTHONDONTWRITEBYTECODE unset): an installed wheel has
its .pyc files, and a cold start that compiles edgelite's sources every time measures the compiler.
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
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_atomic, write_json
from edgelite.preprocess import PreprocessSpec

from .coldstart import ARTIFACT_CODE, artifact_command, measure_processes
from edgelite.timing import measure, summary

from .latency import per_item_ms
from .shared_data import DEFAULT_IMAGES, DEFAULT_LABELS, DEFAULT_MODEL


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


# an artifact's cold start where onnxruntime's u8 x s8 kernels saturate (no VNNI): the probe runs, then says so
RE_ENCODED_CODE = ("import edgelite.int8 as m; probe = m.saturates; m.saturates = lambda: probe() or True; "
                   + ARTIFACT_CODE)


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


def in_turn(first, second, rounds: int) -> tuple[float, float]:
    """Medians of two measurements (callables returning ms) taken in alternating rounds, so drift hits both."""
    a, b = [], []
    for _ in range(rounds):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def interleaved(first, second, rounds: int = 7, runs: int = 50) -> tuple[float, float]:
    """Median latency of two callables, timed as edgelite.timing times settings: turns in alternating rounds."""
    per_turn = measure({"first": lambda: first, "second": lambda: second}, rounds, runs, warmup=5)
    return summary(per_turn["first"])["ms"], summary(per_turn["second"])["ms"]


def folder_throughput(clf: Classifier, paths, rounds: int = 5) -> tuple[float, float]:
    """ms per image of a loop of predict and of predict_batch, passes taken in alternating rounds."""
    list(clf.predict_batch(paths[:4]))  # its single-threaded interpreters are opened once, not timed
    return in_turn(lambda: per_image_ms(clf.predict, paths, repeat=1),
                   lambda: per_item_ms(lambda: list(clf.predict_batch(paths)), len(paths), 1), rounds)


# one of N processes that classify a share of the photos at once, each on one thread: what the cores give
# with nothing shared (no GIL, no thread pool), to compare predict_batch's threads with
SHARE_CODE = """\
import sys, time
from edgelite import Classifier
classifier, paths = Classifier(sys.argv[1], threads=1), sys.argv[3:]
for path in paths:  # warm, as the passes of predict_batch it is compared with are
    classifier.predict(path)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
start = time.time()
for path in paths:
    classifier.predict(path)
print(start, time.time())
"""


def processes_ms(model: Path, paths, rounds: int = 3) -> float:
    """ms per image when one process per core classifies its share of `paths` (median of `rounds`)."""
    import subprocess

    cores, runs = os.cpu_count() or 1, []
    for _ in range(rounds):
        begin = time.time() + 8  # every process has opened its model and made a first pass by then
        procs = [subprocess.Popen([sys.executable, "-c", SHARE_CODE, str(model), str(begin),
                                   *map(str, paths[i::cores])], stdout=subprocess.PIPE, text=True,
                                  env=cached_bytecode()) for i in range(cores)]
        spans = [tuple(map(float, proc.communicate()[0].split())) for proc in procs]
        if any(len(span) != 2 for span in spans):
            raise EdgeliteError(f"a process classifying its share of the photos with {model.name} failed")
        runs.append((max(end for _, end in spans) - min(start for start, _ in spans)) * 1000 / len(paths))
    return statistics.median(runs)


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
                                 repeat, env=cached_bytecode())


def cached_bytecode() -> dict:
    """This environment with bytecode caching on (see the module's docstring)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def onnx_rows(int8_model: Path, fp32_model: Path, paths, threads: int) -> tuple[dict, dict]:
    """onnx-int8's folder throughput and its cold start against fp32's (natural and re-encoded)."""
    loop, batch = folder_throughput(Classifier(int8_model, threads=threads), paths)
    rows = {"onnx-int8 folder throughput: predict_batch vs a loop of predict": (loop, batch),
            "onnx-int8: one process per core vs a loop of predict": (loop, processes_ms(int8_model, paths))}
    image = str(paths[0])
    cold = measure_processes({"int8": artifact_command(int8_model, image), "fp32": artifact_command(fp32_model, image),
                              "int8 re-encoded": [sys.executable, "-c", RE_ENCODED_CODE, str(int8_model), image]},
                             repeat=7, env=cached_bytecode())
    wall = {name: run.get("wall_s", float("nan")) * 1000 for name, run in cold.items()}
    rows["cold start: onnx-int8 / onnx-fp32 (this CPU's kernels)"] = (wall["int8"], wall["fp32"])
    rows["cold start: onnx-int8 re-encoded (as without VNNI) / onnx-fp32"] = (wall["int8 re-encoded"], wall["fp32"])
    return rows, cold


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--images", type=Path, nargs="+", default=[DEFAULT_IMAGES], help="folders or files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=100, help="images to time (default 100)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--onnx", type=Path, nargs=2, metavar=("INT8", "FP32"),
                        help="an onnx-int8 artifact and its onnx-fp32 sibling: their throughput and cold start too")
    args = parser.parse_args(argv)
    return guarded(lambda: _run(args))


def _run(args) -> int:
    labels = args.labels or (DEFAULT_LABELS if args.model == DEFAULT_MODEL else None)

    if args.model.suffix.lower() != ".tflite":
        raise EdgeliteError(f"--model takes a .tflite (the baseline is a bare LiteRT script), not {args.model.name}: "
                            "an onnx-int8 / onnx-fp32 pair goes in --onnx")
    paths = find_images(args.images)[: args.limit]
    if not paths:
        raise EdgeliteError(f"no images found in {' '.join(map(str, args.images))}")
    clf = Classifier(args.model, threads=args.threads, labels=labels)
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
    overhead = summary(measure({"predict": lambda: (lambda: clf.predict(x))}, 1, 3000, warmup=100)["predict"])["ms"]
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

    results["folder throughput: predict_batch vs a loop of predict"] = folder_throughput(clf, paths)
    results["one process per core vs a loop of predict"] = (
        results["folder throughput: predict_batch vs a loop of predict"][0], processes_ms(args.model, paths))

    cold = cold_start(args.model, paths[0], labels, repeat=7)
    results["CLI cold start wall: edgelite / bare script"] = (cold["edgelite"]["wall_s"] * 1000, cold["bare"]["wall_s"] * 1000)
    results["CLI peak RSS: edgelite / bare script"] = (cold["edgelite"]["peak_rss_mib"], cold["bare"]["peak_rss_mib"])
    if args.onnx:
        rows, cold["onnx"] = onnx_rows(*args.onnx, paths, args.threads)
        results.update(rows)

    goals = {
        "predict(array) / bare invoke": "<= 1.05",
        "(invoke + predict's own work) / invoke": "<= 1.05",
        "JPEG -> input / invoke (sample photos)": "<= 1.0",
        "12 MP JPEG -> input / invoke": "<= 5",
        "folder throughput: predict_batch vs a loop of predict": ">= 1.5",
        "CLI cold start wall: edgelite / bare script": "<= 1.25",
        "CLI peak RSS: edgelite / bare script": "<= 1.2",
        "onnx-int8 folder throughput: predict_batch vs a loop of predict": ">= 1.5",
        "cold start: onnx-int8 re-encoded (as without VNNI) / onnx-fp32": "<= 1.25",
    }
    rows = []
    print(f"\nruntime speed: {args.model.name}, {len(paths)} images, {args.threads} threads, "
          f"{platform.machine()} {os.cpu_count()} cores\n")
    print("| measure | ours | baseline | ratio | goal |\n|---|---:|---:|---:|---:|")
    for name, (a, b) in results.items():
        ratio = a / b
        rows.append({"measure": name, "value": a, "baseline": b, "ratio": ratio, "goal": goals.get(name, "")})
        print(f"| {name} | {a:.2f} | {b:.2f} | {ratio:.2f}x | {goals.get(name, '')} |")
    note = ("(ms per call or image; MiB for RSS; throughput ratio = loop ms / batch ms per image; one process per core: "
            "loop ms / ms per image of one single-threaded process per core, each on its share of the photos at once)")
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
