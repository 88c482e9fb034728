"""Peak memory and speed of `edgelite train` as the dataset grows.

    python -m edgelite.benchmarks.train_memory --out DIR [--data DIR] [--weights FILE] [--scales 1 2 4]

Trains one frozen epoch of the MobileNetV2 recipe (no fine-tuning) on 1x, 2x and 4x a class-folder
dataset (default ../shared/data/big-cats): the larger sets are symlinks to the same files under
new names in a temporary folder, so nothing is copied. Each run is a fresh process started from
this small one; its peak RSS is the kernel's ru_maxrss for that child (os.wait4). Prints a table
and writes train_memory.json and train_memory.md into DIR: per run the images, peak RSS, the
frozen epoch's seconds and images/s (training images / epoch seconds, validation pass included),
and the growth of peak RSS per image (least squares over the runs).

(Copies under new names land on both sides of the split, so accuracy here means nothing: this
measures memory and speed only.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgelite.benchmarks.shared_data import SHARED
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import prepare_out_dir, write_atomic, write_json
from edgelite.train.datasets import class_folders

DEFAULT_DATA = SHARED / "data/big-cats"
DEFAULT_WEIGHTS = SHARED / "data/models/mobilenet_v2_1.0_224_imagenet.keras"
BOUND_MIB_PER_IMAGE = 0.1


def scaled_copy(data: Path, folder: Path, times: int) -> int:
    """`folder/<class>/<stem>__<k><suffix>` symlinks, k < times, to every image of `data`; -> count."""
    count = 0
    for path, _ in class_folders(data):
        target = folder / path.parent.name
        target.mkdir(parents=True, exist_ok=True)
        for k in range(times):
            (target / f"{path.stem}__{k}{path.suffix}").symlink_to(path.resolve())
            count += 1
    return count


def run_child(data: Path, weights: Path, work: Path, batch_size: int, cache: Path | None) -> dict:
    """One training run in a fresh process: its figures and its peak RSS."""
    result = work / "result.json"
    command = [sys.executable, "-m", "edgelite.benchmarks.train_memory", "--child", str(data), "--json", str(result),
               "--weights", str(weights), "--train-out", str(work / "run"), "--batch-size", str(batch_size)]
    if cache:
        command += ["--child-cache", str(cache)]
    log = work / "log.txt"
    started = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status or not result.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise EdgeliteError(f"training run on {data} failed: " + " | ".join(tail))
    figures = json.loads(result.read_text())
    return {**figures, "peak_rss_mib": usage.ru_maxrss / 1024, "process_wall_s": wall}


def child(args) -> int:
    """Inside the fresh process: one frozen epoch, figures to --json."""
    import resource

    from edgelite.train.recipes import train

    started = time.perf_counter()
    trained = train(args.child, args.train_out, recipe="mobilenetv2", epochs=1, fine_tune_epochs=0,
                    weights=str(args.weights), batch_size=args.batch_size, cache=args.child_cache, verbose=2, force=True)
    epoch_s = trained.history["epoch_seconds"][0]
    write_json(args.json, {
        "train_images": len(trained.train), "val_images": len(trained.val), "epoch_s": epoch_s,
        "images_per_s": len(trained.train) / epoch_s, "train_call_s": time.perf_counter() - started,
        "val_accuracy": trained.val_accuracy,
        "self_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return 0


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def table(rows: list[dict], growth: float) -> str:
    lines = ["| scale | images (train + val) | peak RSS (MiB) | frozen epoch (s) | images/s | process (s) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scale']}x | {r['images']:,} ({r['train_images']:,} + {r['val_images']:,}) | "
                     f"{r['peak_rss_mib']:,.0f} | {r['epoch_s']:.0f} | {r['images_per_s']:.1f} | "
                     f"{r['process_wall_s']:.0f} |")
    verdict = "within" if growth < BOUND_MIB_PER_IMAGE else "OVER"
    lines.append("")
    lines.append(f"Peak RSS grows {growth:+.4f} MiB per image (least squares over the runs; {verdict} the "
                 f"{BOUND_MIB_PER_IMAGE} MiB bound).")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for train_memory.json and .md")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="class-folder dataset (default big-cats)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="MobileNetV2 ImageNet model file")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="dataset multiples (default 1 2 4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", action="store_true", help="train with --cache (a fresh cache per run)")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--train-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return guarded(lambda: child(args))
    if not args.out:
        parser.error("--out is required")
    return guarded(lambda: measure(args))


def measure(args) -> int:
    """Train one frozen epoch at each scale in a fresh process; the table, JSON and the verdict."""
    for path in (args.data, args.weights):
        if not path.exists():
            raise EdgeliteError(f"no such file or folder: {path}")
    out = prepare_out_dir(args.out, args.force)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgelite-train-memory-") as tmp:
        for scale in args.scales:
            work = Path(tmp) / f"x{scale}"
            images = scaled_copy(args.data, work / "data", scale)
            print(f"{scale}x: {images:,} images, one frozen epoch ...", flush=True)
            row = run_child(work / "data", args.weights, work, args.batch_size,
                            work / "cache" if args.cache else None)
            rows.append({"scale": scale, "images": images, **row})
            print(f"   peak RSS {row['peak_rss_mib']:,.0f} MiB, {row['images_per_s']:.1f} images/s", flush=True)
    growth = slope([r["images"] for r in rows], [r["peak_rss_mib"] for r in rows]) if len(rows) > 1 else 0.0
    text = table(rows, growth)
    document = {"data": str(args.data), "weights": str(args.weights), "batch_size": args.batch_size,
                "cache": args.cache, "cpus": os.cpu_count(), "machine": platform.platform(),
                "rss_growth_mib_per_image": growth, "bound_mib_per_image": BOUND_MIB_PER_IMAGE,
                "within_bound": growth < BOUND_MIB_PER_IMAGE, "runs": rows}
    write_json(out / "train_memory.json", document)
    write_atomic(out / "train_memory.md", f"# Training memory and speed by dataset size\n\n{text}\n")
    print(text)
    return 0 if growth < BOUND_MIB_PER_IMAGE else 1


if __name__ == "__main__":
    sys.exit(main())
