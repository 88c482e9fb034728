"""How long `edgelite convert` takes, format by format: wall and CPU seconds, and what each export agreed.

    python -m edgelite.benchmarks.convert_speed MODEL --calib DIR [--out DIR] [--formats ...] [--force]

Converts MODEL to every format (or --formats) as `edgelite convert MODEL --calib DIR` does (the same split of
DIR into calibration and held-back images), in this process, and prints one row per format: wall seconds,
CPU seconds of this process (all its threads: on a machine shared with other jobs the wall time grows, the CPU
time much less), agreement with Keras and strict top-1 agreement. A format's time includes the shared work it
is the first to need (the SavedModel export for the first TFLite format, the float conversion and its
calibration for int8, the tf2onnx export for the first ONNX format). `setup` is everything before the first
export: loading the model, decoding the images, the Keras reference. The load average before and after is
printed and recorded: compare wall times only between runs on an idle machine. Writes
`convert_speed.json` in --out (default: a fresh temporary folder for the artifacts, the JSON in the current
folder).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_atomic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="Keras model (.keras, .h5, SavedModel folder)")
    parser.add_argument("--calib", required=True, help="image folder, split as `edgelite convert` splits it")
    parser.add_argument("--out", type=Path, help="folder for the artifacts and convert_speed.json")
    parser.add_argument("--formats", nargs="+", help="default: all")
    parser.add_argument("--preprocess", help="as convert's --preprocess (a preset name)")
    parser.add_argument("--labels", help="as convert's --labels")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args), prog="convert_speed")


def run(args) -> int:
    started, cpu_started = time.perf_counter(), time.process_time()
    load_before = os.getloadavg()
    if not Path(args.model).exists():
        raise EdgeliteError(f"no such model: {args.model}")
    images = find_images([args.calib])
    if not images:
        raise EdgeliteError(f"{args.calib}: no images found")
    from edgelite.convert import FORMATS, convert
    from edgelite.convert.samples import choose, split_images

    from .bench import environment

    imported = (time.perf_counter() - started, time.process_time() - cpu_started)
    calibration, check = split_images(images)
    out = args.out or Path(tempfile.mkdtemp(prefix="convert-speed-"))
    began, cpu_began = time.perf_counter(), time.process_time()
    result = convert(args.model, out, choose(calibration, 200), choose(check, 500), formats=args.formats or FORMATS,
                     preprocess=args.preprocess, labels=args.labels, force=args.force or args.out is None,
                     verbose=False, done=lambda a: print(a.summary(), flush=True))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    rows = [{"format": a.format, "wall_s": round(a.seconds, 2), "cpu_s": round(a.cpu_seconds, 2),
             "agreement": a.parity.get("agreement"), "top1_agreement": a.parity.get("top1_agreement"),
             "passed": a.passed, "error": a.error,
             "rescue": bool(a.path and _rescued(a.path))} for a in result.artifacts]
    setup = {"wall_s": round(wall - sum(a.seconds for a in result.artifacts), 2),
             "cpu_s": round(cpu - sum(a.cpu_seconds for a in result.artifacts), 2)}
    env = environment()
    document = {"model": str(args.model), "calibration_images": min(len(calibration), 200),
                "check_images": min(len(check), 500), "formats": rows, "setup": setup,
                "convert": {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)},
                "imports": {"wall_s": round(imported[0], 2), "cpu_s": round(imported[1], 2)},
                "load_average": {"before": [round(x, 2) for x in load_before],
                                 "after": [round(x, 2) for x in os.getloadavg()]},
                "machine": env}
    print(table(document))
    path = write_atomic((args.out or Path.cwd()) / "convert_speed.json", json.dumps(document, indent=2))
    print(f"written: {path}")
    return 0 if result.ok else 1


def _rescued(path: Path) -> bool:
    from edgelite.classifier import Classifier

    return "rescue" in Classifier(path).metadata.get("quantization", {})


def table(document: dict) -> str:
    lines = [f"{'format':16s} {'wall s':>8s} {'CPU s':>8s} {'agreement':>10s} {'top-1':>7s}"]
    for r in document["formats"]:
        if r["error"]:
            lines.append(f"{r['format']:16s} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} FAILED {r['error']}")
            continue
        note = " rescued" if r["rescue"] else ("" if r["passed"] else " BELOW GATE")
        lines.append(f"{r['format']:16s} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['agreement']:10.1%} "
                     f"{r['top1_agreement']:7.1%}{note}")
    for name in ("setup", "convert", "imports"):
        label = {"setup": "setup", "convert": "total (convert)", "imports": "imports"}[name]
        lines.append(f"{label:16s} {document[name]['wall_s']:8.1f} {document[name]['cpu_s']:8.1f}")
    env, load = document["machine"], document["load_average"]
    lines.append(f"machine: {env['cpu']}, {env['cores']} cores [{' '.join(env['flags'])}]; load average "
                 f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
