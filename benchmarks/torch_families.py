"""The torchvision architectures people bring (issue 29, point 5) through `edgelite convert`, as a user runs it.

    python -m edgelite.benchmarks.torch_families --out DIR [--archs resnet18 ...] [--sources onnx onnx-dynamo]
        [--torch-python /work/tv-venv/bin/python] [--timeout 1800] [--rounds 4]

Each architecture is built with random weights (`weights=None`, seed 0; nothing is downloaded: structure, ops and
speed, not accuracy) and exported by `torch_export.py`: in this interpreter when torchvision imports here, else in
--torch-python (an environment with torch and torchvision; edgelite need not be installed there). Then
`edgelite convert MODEL.onnx --calib imagenet-sample --out ...` runs in a process of its own (no other flag), and a
row per architecture and source file prints: exit, wall seconds, the formats that passed, the tflite-int8 op
list, its TRANSPOSEs, float islands (DEQUANTIZE, QUANTIZE and float ops in the int8 graph), XNNPACK delegate
partitions, and tflite-int8 against tflite-fp32 ms (one thread, edgelite.timing). Writes torch_families.json in
--out; each conversion's artifacts stay in --out/ARCH-SOURCE."""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from edgelite.errors import EdgeliteError, guarded
from edgelite.files import write_atomic

from .convert_runs import convert_cli, speed
from .shared_data import shared_dir
from .tflite_ops import op_facts, op_list

# smallest first
ARCHS = ["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "resnet50", "vgg11"]
SOURCES = {"onnx": "{arch}.onnx", "onnx-dynamo": "{arch}-dynamo/{arch}.onnx", "pt2": "{arch}.pt2"}
EXPORT_SCRIPT = Path(__file__).with_name("torch_export.py")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, artifacts and JSON")
    parser.add_argument("--archs", nargs="+", default=ARCHS, help=f"default: {' '.join(ARCHS)}")
    parser.add_argument("--sources", nargs="+", default=["onnx"], choices=list(SOURCES),
                        help="which exported file to convert (default: onnx, torch.onnx's TorchScript exporter)")
    parser.add_argument("--torch-python", type=Path, help="an interpreter with torch and torchvision to export with "
                        "(default: this one, which then needs torchvision)")
    parser.add_argument("--skip-export", action="store_true", help="convert the files an earlier run left in --out")
    parser.add_argument("--formats", nargs="+", help="formats to make (default: all)")
    parser.add_argument("--calib", type=Path, help="calibration folder (default: shared imagenet-sample)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per convert (default 1800)")
    parser.add_argument("--rounds", type=int, default=4, help="timing rounds (default 4)")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args), prog="torch_families")


def run(args) -> int:
    unknown = [a for a in args.archs if a not in ARCHS]
    if unknown:
        raise EdgeliteError(f"unknown architectures {', '.join(unknown)} (choose from {', '.join(ARCHS)})")
    calib = args.calib or shared_dir() / "data" / "imagenet-sample"
    if not calib.is_dir():
        raise EdgeliteError(f"no calibration folder {calib}")
    models = args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    exports = {} if args.skip_export else export(args.archs, models, args.torch_python, calib)
    rows = []
    for arch in args.archs:
        for source in args.sources:
            rows.append(one(arch, source, models, calib, exports.get(arch, {}), args))
            print(table_line(rows[-1]), flush=True)
            write_atomic(args.out / "torch_families.json", json.dumps(rows, indent=1))
    print("\n" + table(rows))
    return 0


def export(archs: list[str], models: Path, torch_python: Path | None, photos: Path) -> dict:
    """Each architecture's export report (torch_export.py's JSON lines), run by `torch_python` or this interpreter
    (a process of its own either way: the exports' memory goes with it)."""
    if torch_python is None:
        if importlib.util.find_spec("torchvision") is None:
            raise EdgeliteError("torchvision is not importable here: pass --torch-python with an interpreter that "
                                "has torch and torchvision")
        torch_python = Path(sys.executable)
    elif not torch_python.exists():
        raise EdgeliteError(f"--torch-python {torch_python}: no such interpreter")
    done = subprocess.run([str(torch_python), str(EXPORT_SCRIPT), "--out", str(models), "--photos", str(photos),
                           *archs],
                          capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 and not rows:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeliteError(f"exporting with {torch_python} failed: {tail}")
    return {row["arch"]: row for row in rows}


def one(arch: str, source: str, models: Path, calib: Path, exported: dict, args) -> dict:
    path = models / SOURCES[source].format(arch=arch)
    row = {"arch": arch, "source": source, "bn_statistics_set": exported.get("bn_statistics_set"),
           "export_failed": exported.get("failed", {}).get(source)}
    if not path.exists():
        return {**row, "exit": "no file", "wall_s": 0.0, "passed": [], "failed": {}}
    out = args.out / f"{arch}-{source}"
    row.update(convert_cli(path, calib, out, args.timeout, *(["--formats", *args.formats] if args.formats else [])))
    int8 = out / f"{arch}_int8.tflite"
    if int8.exists():
        row["int8_tflite"] = op_facts(int8)
    row.update(speed(out, arch, args.rounds))
    return row


def table_line(row: dict) -> str:
    facts = row.get("int8_tflite")
    ms = f"{row['int8_ms']:.1f} / {row['fp32_ms']:.1f}" if "int8_ms" in row else "-"
    if facts:
        islands = f"{facts['dequantize']} / {facts['quantize']} / {facts['float_ops']}"
        ops = f"{facts['transposes']} | {islands} | {facts['partitions']} | {op_list(facts)}"
    else:
        ops = "- | - | - | -"
    failed = "; ".join(f"{f}: {d}" for f, d in row["failed"].items()) or (row.get("stderr_tail") or [""])[-1]
    if row["exit"] == 0:
        failed = "-"
    return (f"| {row['arch']} | {row['source']} | {row['exit']} | {row['wall_s']:.0f} | {len(row['passed'])} | "
            f"{ops} | {ms} | {failed or '-'} |")


def table(rows: list) -> str:
    head = ("| arch | source | exit | wall s | formats passed | TRANSPOSE | DEQUANTIZE / QUANTIZE / float ops | "
            "partitions | tflite-int8 ops | int8 / fp32 ms | what failed |\n|---|---|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *map(table_line, rows)])


if __name__ == "__main__":
    sys.exit(main())
