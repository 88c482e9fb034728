"""A real ImageNet network from PyTorch, end to end: torchvision's MobileNetV2 module shape carrying the shared
Keras MobileNetV2 ImageNet weights (ported tensor by tensor), exported as .onnx and .pt2, converted by edgelite,
and measured against the torch model and against the Keras-made artifacts of the same network.

    python -m edgelite.benchmarks.torch_mobilenet --out torch-bench [--calib-count 200] [--skip-keras]

Prints and writes `torch_mobilenet.json`: torch vs Keras, convert seconds from the .onnx (wall, all formats),
each int8 artifact's strict top-1 agreement with torch and top-1 accuracy on photos not used for calibration,
the TFLite op lists (TRANSPOSE count, delegate partitions), and the speed of the torch-made tflite-int8 /
onnx-int8 against the Keras-made ones (edgelite.timing, round-robin in one process, one thread). The port:
torch_port.py."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .shared_data import SHARED
from .tflite_ops import op_facts
from .torch_port import KERAS_MODEL, build_torch, export_onnx, port


def imagenet_photos():
    from edgelite.files import find_images

    folder = SHARED / "data/imagenet-sample"
    wnids = (folder / "wnids.txt").read_text().split()
    photos = find_images([folder])
    return photos, np.array([wnids.index(Path(p).name.split("_")[0]) for p in photos])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="torch-bench")
    p.add_argument("--calib-count", type=int, default=200)
    p.add_argument("--measure-count", type=int, default=500, help="big-cats photos (not calibrated on) measured")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--skip-keras", action="store_true", help="no Keras-made artifacts (speed not compared)")
    p.add_argument("--speed-only", action="store_true", help="only time the int8 files an earlier run left in --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.speed_only:
        speed(out, args.rounds)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    import torch

    from edgelite import Classifier
    from edgelite.convert import convert
    from edgelite.convert.loading import import_tensorflow
    from edgelite.convert.samples import choose
    from edgelite.files import find_images
    from edgelite.preprocess import PreprocessSpec, batch

    import_tensorflow()
    import keras

    report: dict = {"torch": torch.__version__}
    keras_model = keras.saving.load_model(KERAS_MODEL, compile=False)
    module = build_torch()
    port(module, keras_model)

    photos, labels = imagenet_photos()
    cats = find_images([SHARED / "data/big-cats"])
    calibration = choose(cats, args.calib_count)  # calibrate on big-cats, measure on ImageNet photos (labelled)
    held = [c for c in cats if c not in set(calibration)]
    measured_cats = choose(held, args.measure_count)
    check = choose([c for c in held if c not in set(measured_cats)], 100)

    torch_spec = PreprocessSpec(preset="torch")
    x = batch(photos, torch_spec)

    def torch_logits(images):
        with torch.no_grad():
            return np.concatenate([module(torch.from_numpy(images[i:i + 25].transpose(0, 3, 1, 2).copy())).numpy()
                                   for i in range(0, len(images), 25)])

    reference = torch_logits(x)
    keras_spec = PreprocessSpec(preset="mobilenet")
    keras_probs = np.asarray(keras_model.predict(batch(photos, keras_spec), verbose=0))
    report["torch_vs_keras"] = {"top1_agreement": float((reference.argmax(1) == keras_probs.argmax(1)).mean()),
                                "torch_top1": float((reference.argmax(1) == labels).mean()),
                                "keras_top1": float((keras_probs.argmax(1) == labels).mean()), "photos": len(photos)}
    print("torch vs Keras:", report["torch_vs_keras"], flush=True)

    onnx_path, pt2_path = export_onnx(module, out / "mobilenet_v2_torch.onnx"), out / "mobilenet_v2_torch.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(1, 3, 224, 224),)), str(pt2_path))

    conversions = {}
    for name, source, kwargs in [("onnx", onnx_path, {}), ("pt2", pt2_path, {"formats": ["tflite-int8"]}),
                                 *([] if args.skip_keras else [("keras", KERAS_MODEL,
                                                                 {"formats": ["tflite-int8", "onnx-int8"]})])]:
        started = time.perf_counter()
        result = convert(source, out / f"art-{name}", calibration, check, force=True, verbose=False, **kwargs)
        conversions[name] = {"seconds": round(time.perf_counter() - started, 1),
                             "artifacts": {a.format: {"path": str(a.path), "passed": a.passed, "error": a.error,
                                                      "seconds": round(a.seconds, 1)} for a in result.artifacts}}
        print(f"convert {name}: {conversions[name]['seconds']} s", flush=True)
    report["convert"] = conversions

    cats_x = batch(measured_cats, torch_spec)
    cats_reference = torch_logits(cats_x).argmax(1)
    rows = {}
    for name, conv in conversions.items():
        for fmt, artifact in conv["artifacts"].items():
            if not artifact["path"] or artifact["path"] == "None":
                continue
            clf = Classifier(artifact["path"])
            top = [int(np.argmax(clf.scores(clf.prepare(p)))) for p in photos]
            top_cats = [int(np.argmax(clf.scores(clf.prepare(p)))) for p in measured_cats]
            row = {"imagenet_agreement_with_torch": float(np.mean(np.array(top) == reference.argmax(1))),
                   "imagenet_top1": float(np.mean(np.array(top) == labels)),
                   "bigcats_agreement_with_torch": float(np.mean(np.array(top_cats) == cats_reference))}
            if fmt.startswith("tflite"):
                row.update(tflite_ops(artifact["path"]))
            rows[f"{name}:{fmt}"] = row
            print(f"{name}:{fmt}", row, flush=True)
    report["artifacts"] = rows
    report["torch_top1"] = report["torch_vs_keras"]["torch_top1"]

    (out / "torch_mobilenet.json").write_text(json.dumps(report, indent=1))
    if not args.skip_keras:
        report["speed_1_thread"] = speed(out, args.rounds)
    (out / "torch_mobilenet.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / 'torch_mobilenet.json'}")
    return 0


def speed(out: Path, rounds: int) -> dict:
    """The torch-made (from the .onnx) and Keras-made int8 files of each format, one thread, round-robin in one
    process (edgelite.timing: each setting opened, warmed, timed and released in its turn)."""
    from edgelite.timing import measure, opener, summary

    stems = {"onnx": out / "art-onnx" / "mobilenet_v2_torch", "keras": out / "art-keras" / KERAS_MODEL.stem}
    settings = {f"{name}:{fmt}": f"{stem}_int8.{fmt.split('-')[0]}" for name, stem in stems.items()
                for fmt in ("tflite-int8", "onnx-int8")}
    per_turn = measure({key: opener(path, 1) for key, path in settings.items()}, rounds, 20)
    figures = {key: {k: round(v, 3) for k, v in summary(per_turn[key]).items() if k in ("ms", "fast_ms", "slow_ms")}
               for key in settings}
    for fmt in ("tflite-int8", "onnx-int8"):
        figures[f"ratio {fmt}"] = round(figures[f"onnx:{fmt}"]["ms"] / figures[f"keras:{fmt}"]["ms"], 3)
    print("speed (1 thread, ms):", figures, flush=True)
    return figures


def tflite_ops(path: str) -> dict:
    facts = op_facts(path)
    return {"transposes": facts["transposes"], "partitions": facts["partitions"], "dequantize": facts["dequantize"],
            "ops": facts["op_count"]}


if __name__ == "__main__":
    raise SystemExit(main())
