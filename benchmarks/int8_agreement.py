"""How many answers int8 changes, per int8 method, artifact and kernel path (issue 30).

    python -m edgelite.benchmarks.int8_agreement --out DIR [--models M ...] [--methods M ...]
        [--directions D ...] [--calib-count 200] [--measure-count 500]

For each model and calibration direction (calibrate on imagenet-sample, measure on big-cats; and the other way
round), `convert` makes the fp32 exports (once per model: the reference) and, with each int8 method
(edgelite.convert.int8_methods), tflite-int8 and onnx-int8. Every file is then run on the measured photos
(none used for calibration or by the export's own check) on each kernel path: LiteRT with XNNPACK, LiteRT's
builtin kernels, onnxruntime (as the runtime opens it: uint8 weights where this CPU's u8 x s8 kernels saturate).
Prints a table per model: strict top-1 agreement with the fp32 export of the same format (no near-tie rule),
the answers that changed, top-1 loss against that export where the photo's ImageNet class is known
(imagenet-sample: its wnid; big-cats: the 7 ImageNet cat classes), exact top-1 ties in the int8 output, the
bias-correction count, and the int8 export's convert seconds (wall, shared work it needs included). Beside it,
the noise floor (edgelite.noise): how many answers the fp32 export itself changes on the same photos when their
pixels move by +-0.5 or +-1 level, the scale an int8 file's changed answers are read against. Writes
int8_agreement.json in --out.

Models: `mobilenetv2` (the shared Keras MobileNetV2), `mobilenet-v1-legacy` (the legacy Keras-2 MobileNet v1
0.25 that tests/legacy_mobilenet.py builds from shared data), `torch-mobilenetv2` (torchvision's MobileNetV2
carrying the same ImageNet weights, torch_port.py, converted from its .onnx; needs torch).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_json
from edgelite.noise import describe, of_file

from .shared_data import IMAGENET_CATS, shared_dir

MODELS = ("mobilenetv2", "mobilenet-v1-legacy", "torch-mobilenetv2")
# calibrated on -> measured on
DIRECTIONS = {"imagenet-to-cats": ("imagenet-sample", "big-cats"), "cats-to-imagenet": ("big-cats", "imagenet-sample")}
INT8 = {"tflite-int8": "tflite-fp32", "onnx-int8": "onnx-fp32"}  # int8 artifact -> its fp32 reference
KERNELS = {"tflite": {"xnnpack": {}, "builtin": {"xnnpack": False}}, "onnx": {"onnxruntime": {}}}


def main(argv=None) -> int:
    from edgelite.convert.int8_methods import DEFAULT, METHODS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, artifacts and JSON")
    parser.add_argument("--models", nargs="+", default=["mobilenetv2"], choices=MODELS)
    parser.add_argument("--methods", nargs="+", default=[DEFAULT], choices=list(METHODS))
    parser.add_argument("--artifacts", nargs="+", default=list(INT8), choices=list(INT8))
    parser.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=list(DIRECTIONS))
    parser.add_argument("--calib-count", type=int, default=200, help="calibration photos (default 200, + mirror)")
    parser.add_argument("--measure-count", type=int, default=500, help="measured photos at most (default 500)")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args), prog="int8_agreement")


def run(args) -> int:
    data = shared_dir() / "data"
    for folder in ("imagenet-sample", "big-cats"):
        if not find_images([data / folder]):
            raise EdgeliteError(f"{data / folder}: no images found (set EDGELITE_SHARED)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"calibration_photos": args.calib_count, "with_mirror_images": True, "rows": [], "exports": [],
              "noise_floor": []}
    for name in args.models:
        source = model_source(name, args.out / "models")
        fp32 = None
        for direction in args.directions:
            calibration, check, measured = photo_sets(data, direction, args.calib_count, args.measure_count)
            if fp32 is None:  # the references do not depend on calibration: made once per model
                fp32 = exported(source, args.out / name / "fp32", [], check, list(INT8.values()), None)
                report["exports"] += [{"model": name, **row} for row in fp32.values()]
            for fmt in sorted({INT8[a] for a in args.artifacts}):
                for row in of_file(fp32[fmt]["path"], [p for p, _ in measured], levels=(0.5, 1.0)):
                    report["noise_floor"].append({"model": name, "direction": direction, "format": fmt, **row})
                    print(f"{direction:16s} {fmt} noise floor {describe(row)}", flush=True)
            cache = {}
            for method in args.methods:
                int8 = exported(source, args.out / name / direction / method, calibration,
                                check, args.artifacts, method)
                report["exports"] += [{"model": name, "direction": direction, "method": method, **row}
                                      for row in int8.values()]
                for fmt, row in int8.items():
                    reference = answers(fp32[INT8[fmt]]["path"], {}, measured, cache)
                    for kernels, options in KERNELS[fmt.split("-")[0]].items():
                        scores = answers(row["path"], options, measured, cache)
                        report["rows"].append({"model": name, "direction": direction, "method": method,
                                               "artifact": fmt, "kernels": kernels,
                                               **compare(reference, scores, measured), "convert_s": row["seconds"],
                                               "bias_correction": row["bias_correction"], "rescue": row["rescue"]})
                        print(line(report["rows"][-1]), flush=True)
    print()
    for name in args.models:
        print(table([r for r in report["rows"] if r["model"] == name], name))
        print(floor_table([r for r in report["noise_floor"] if r["model"] == name], name))
    write_json(args.out / "int8_agreement.json", report)
    print(f"wrote {args.out / 'int8_agreement.json'}", file=sys.stderr)
    return 0


def model_source(name: str, folder: Path) -> Path:
    """The model file of a --models name, built into `folder` where it is not shared data itself."""
    from .torch_port import KERAS_MODEL

    folder.mkdir(parents=True, exist_ok=True)
    if name == "mobilenetv2":
        return KERAS_MODEL
    if name == "mobilenet-v1-legacy":
        path = folder / "mobilenet_v1_0.25_legacy.h5"
        builder = Path(__file__).resolve().parents[1] / "tests" / "legacy_mobilenet.py"
        if not path.exists():
            if not builder.exists():
                raise EdgeliteError(f"{builder}: not found (the legacy model is built by the repository's tests)")
            done = subprocess.run([sys.executable, str(builder), str(path)], capture_output=True, text=True)
            if done.returncode:
                raise EdgeliteError(f"building {path.name} failed: {done.stderr.strip().splitlines()[-1:]}")
        return path
    path = folder / "mobilenet_v2_torch.onnx"
    if not path.exists():
        if importlib.util.find_spec("torch") is None:
            raise EdgeliteError("torch-mobilenetv2 needs torch: pip install 'edgelite[torch]'")
        import keras

        from .torch_port import build_torch, export_onnx, port

        module = build_torch()
        port(module, keras.saving.load_model(KERAS_MODEL, compile=False))
        export_onnx(module, path)
    return path


def photo_sets(data: Path, direction: str, calib_count: int, measure_count: int):
    """(calibration photos, the export's check photos, [(measured photo, ImageNet class or None)]): calibration
    and check from one folder, the measured photos from the other."""
    from edgelite.convert.samples import choose

    calib_folder, measure_folder = DIRECTIONS[direction]
    pool = find_images([data / calib_folder])
    calibration = choose(pool, calib_count)
    chosen = set(calibration)
    check = choose([p for p in pool if p not in chosen], 100)
    measured = choose(find_images([data / measure_folder]), measure_count)
    return calibration, check, [(p, imagenet_class(p, data)) for p in measured]


def imagenet_class(photo: Path, data: Path) -> int | None:
    """A photo's ImageNet class index (0-999): an imagenet-sample file's wnid, a big-cats folder's cat."""
    if photo.parent.name == "imagenet-sample":
        wnids = _wnids(data / "imagenet-sample" / "wnids.txt")
        return wnids.get(photo.name.split("_")[0])
    return IMAGENET_CATS.get(photo.parent.name)


_WNIDS: dict = {}


def _wnids(path: Path) -> dict:
    if path not in _WNIDS:
        _WNIDS[path] = {w: i for i, w in enumerate(path.read_text().split())}
    return _WNIDS[path]


def exported(source: Path, out: Path, calibration, check, formats, method) -> dict:
    """convert() of `formats` -> {format: path, seconds, bias correction and rescue from its metadata}."""
    from edgelite import Classifier
    from edgelite.convert import convert

    result = convert(source, out, calibration, check, formats=formats, verbose=False, force=True,
                     int8_method=method)
    rows = {}
    for a in result.artifacts:
        if a.error:
            raise EdgeliteError(f"{source.name} {a.format}: {a.error}")
        recipe = Classifier(a.path).metadata.get("quantization", {})
        rows[a.format] = {"format": a.format, "path": str(a.path), "seconds": round(a.seconds, 1),
                          "bias_correction": recipe.get("bias_correction"),
                          "bias_correction_skipped": recipe.get("bias_correction_skipped"),
                          "rescue": "rescue" in recipe, "recipe": recipe}
    return rows


def answers(path: str, options: dict, measured: list, cache: dict) -> np.ndarray:
    """Probabilities [N, C] of one file on one kernel path over the measured photos, each photo decoded and
    preprocessed once per preprocessing (cached in `cache`)."""
    from edgelite import Classifier
    from edgelite.preprocess import batch

    classifier = Classifier(path, options=options)
    spec = dataclasses.replace(classifier.spec, layout="NHWC")
    key = repr(spec)
    if key not in cache:
        cache[key] = batch([p for p, _ in measured], spec)
    images = cache[key].transpose(0, 3, 1, 2) if classifier.spec.layout == "NCHW" else cache[key]
    return np.concatenate([classifier.scores(classifier.prepare(x[None])) for x in images])


def compare(reference: np.ndarray, scores: np.ndarray, measured: list) -> dict:
    """Strict top-1 agreement with the reference, changed answers, exact ties, top-1 of both where labelled."""
    from edgelite.classifier import background_offset
    from edgelite.parity import exact_ties

    ref, got = reference.argmax(1), scores.argmax(1)
    offset = background_offset(reference.shape[1], 1000)
    truth = np.array([-1 if c is None else c + offset for _, c in measured])
    known = truth >= 0
    row = {"photos": len(measured), "strict_top1": float(np.mean(ref == got)), "changed": int(np.sum(ref != got)),
           "exact_ties": exact_ties(scores), "labelled": int(known.sum())}
    if known.any():
        row["fp32_top1"] = float(np.mean(ref[known] == truth[known]))
        row["int8_top1"] = float(np.mean(got[known] == truth[known]))
        row["top1_loss_pt"] = round(100 * (row["fp32_top1"] - row["int8_top1"]), 2)
    return row


def line(row: dict) -> str:
    loss = f"{row['top1_loss_pt']:.1f} pt of {row['labelled']}" if "top1_loss_pt" in row else "-"
    return (f"{row['direction']:16s} {row['method']:14s} {row['artifact']:12s} {row['kernels']:12s} "
            f"{row['strict_top1']:7.1%} {row['changed']:4d} {loss:>16s} {row['exact_ties']:4d} "
            f"{row['bias_correction']!s:>5s} {row['convert_s']:7.1f}{'  rescued' if row['rescue'] else ''}")


def table(rows: list[dict], model: str) -> str:
    """A Markdown table of one model's rows."""
    lines = [f"**{model}**", "",
             "| calibrated -> measured | method | artifact | kernels | strict top-1 | changed | top-1 loss | ties "
             "| bias-corrected | convert s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        loss = f"{r['top1_loss_pt']:.1f} pt ({r['labelled']})" if "top1_loss_pt" in r else "-"
        lines.append(f"| {r['direction']} | {r['method']} | {r['artifact']} | {r['kernels']} | "
                     f"{r['strict_top1']:.1%} | {r['changed']}/{r['photos']} | {loss} | {r['exact_ties']} | "
                     f"{r['bias_correction']} | {r['convert_s']:.1f}{' (rescued)' if r['rescue'] else ''} |")
    return "\n".join(lines) + "\n"


def floor_table(rows: list[dict], model: str) -> str:
    """A Markdown table of one model's noise floor: the fp32 export against itself under pixel noise."""
    lines = [f"**{model}: the fp32 export under pixel noise (noise floor)**", "",
             "| measured on | export | noise | strict top-1 kept (median; min-max over seeds) | changed (median) "
             "| with near-ties |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {DIRECTIONS[r['direction']][1]} | {r['format']} | +-{r['level']:g} px | "
                     f"{r['strict_median']:.1%} ({r['strict_min']:.1%}-{r['strict_max']:.1%}) | "
                     f"{r['changed_median']}/{r['images']} | {r['gate_agreement_median']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
