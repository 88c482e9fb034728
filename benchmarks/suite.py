"""The reproducible benchmark suite: convert and benchmark the shared MobileNetV2 on the
ImageNet sample photos, and the demo's small CNN on its digits, then time the runtime.

    python -m edgelite.benchmarks.suite --out bench-out [--quick] [--force]

Writes one folder per model (artifacts, results.json/.csv/.md/.png) and `suite.md` with every
table, the command, the machine and the date. Needs the project's shared data
($EDGELITE_SHARED, default ../shared).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from edgelite.convert.samples import split_images
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import prepare_out_dir, write_atomic
from edgelite.labeled import labeled_images

from . import report
from .bench import bench_conversion, environment
from .shared_data import DEFAULT_MODEL
from .shared_data import SHARED


def held_out(items: list, seed: int = 0) -> tuple[list, list]:
    """(calibration images, held-back labeled items): a seeded half/half split."""
    truth = dict(items)
    first, held = split_images([p for p, _ in items], 0.5, seed)
    return first, [(p, truth[p]) for p in held]


def run_model(name: str, model, items: list, out: Path, args, formats=None) -> str:
    from edgelite.convert import FORMATS, convert

    calibration, held = held_out(items)
    print(f"\n## {name}: converting ({len(calibration)} calibration / {len(held)} held-back images)")
    started = time.perf_counter()
    conversion = convert(model, out / "artifacts", calibration[:200], [p for p, _ in held],
                         formats=formats or FORMATS, force=True)
    convert_s = time.perf_counter() - started
    print(f"   converted in {convert_s:.0f}s; benchmarking ...")
    document = bench_conversion(conversion, model, held, out=out, runs=args.runs, warmup=10,
                                threads=[args.threads or os.cpu_count() or 1] if args.quick else None, batches=[1],
                                cold_repeat=1 if args.quick else 3, force=True, title=name)
    table = report.markdown(document["rows"])
    print(table)
    sweep = ", ".join(f"{r['name']}: " + " / ".join(f"{t}T {ms:.2f}" for t, ms in r["threads"].items())
                      for r in document["rows"] if "threads" in r)
    return (f"## {name}\n\n{len(calibration[:200])} calibration images, {len(held)} held-back images; "
            f"all formats converted in {convert_s:.0f} s; batch 1, {document['settings']['threads']} threads, "
            f"{args.runs} runs.\n\n{table}\nThreads sweep, p50 ms: {sweep}.\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, help="with --quick: the thread count (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, no threads sweep, one cold start each")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 30)
    return guarded(lambda: _run(args))


def _run(args) -> int:
    started = time.perf_counter()
    mobilenet = SHARED / "data/models/mobilenet_v2_1.0_224_imagenet.keras"
    photos = SHARED / "data/imagenet-sample"
    if not mobilenet.exists() or not photos.exists():
        raise EdgeliteError(f"the shared data is not at {SHARED} (set EDGELITE_SHARED)")
    out = prepare_out_dir(args.out, args.force)
    sections = [run_model("MobileNetV2 (ImageNet weights) on imagenet-sample", mobilenet,
                          labeled_images(photos, None, 1000), out / "mobilenetv2", args)]

    from edgelite.train.datasets import write_digits
    from edgelite.train.recipes import train_cnn

    digits = write_digits(out / "cnn" / "data")
    trained = train_cnn(digits, out / "cnn" / "keras", size=32, epochs=10, force=True, augment=False, verbose=0)
    sections.append(run_model("Small CNN (the demo's) on scikit-learn digits", trained.model_path,
                              labeled_images(digits, trained.labels, len(trained.labels)), out / "cnn", args))

    from .runtime_speed import main as runtime_speed

    print("\n## runtime speed")
    runtime_speed(["--model", str(DEFAULT_MODEL), "--out", str(out)])
    speed = (out / "runtime_speed.md").read_text() if (out / "runtime_speed.md").exists() else ""

    env = environment()
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    text = (f"# edgelite benchmark suite\n\nCommand: `python -m edgelite.benchmarks.suite "
            f"{'--quick ' if args.quick else ''}--out {args.out}`  \nMachine: {env['cpu']}, {env['cores']} cores, "
            f"{env['machine']} [{' '.join(env['flags'])}]; {versions}  \nDate: {env['date']}; whole suite {time.perf_counter() - started:.0f} s\n\n"
            + "\n".join(sections) + ("\n" + speed if speed else ""))
    write_atomic(out / "suite.md", text)
    print(f"\nwritten: {out / 'suite.md'} ({time.perf_counter() - started:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
