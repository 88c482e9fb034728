"""A real ImageNet network from PyTorch, end to end: torchvision's MobileNetV2 module shape carrying the shared
Keras MobileNetV2 ImageNet weights (ported tensor by tensor), exported as .onnx and .pt2, converted by edgelite,
and measured against the torch model and against the Keras-made artifacts of the same network.

    python -m edgelite.benchmarks.torch_mobilenet --out torch-bench [--calib-count 200] [--skip-keras]

Prints and writes `torch_mobilenet.json`: torch vs Keras, convert seconds from the .onnx (wall, all formats),
each int8 artifact's strict top-1 agreement with torch and top-1 accuracy on photos not used for calibration,
the TFLite op lists (TRANSPOSE count, delegate partitions), and the speed of the torch-made tflite-int8 /
onnx-int8 against the Keras-made ones (edgelite.timing, round-robin in one process, one thread).

The port: Keras pads stride-2 convolutions bottom/right by one ("same" on an even size), so the torch module
pads (0, 1, 0, 1) before them; BatchNorm eps 1e-3; the Keras model takes [-1, 1], so a fixed per-channel affine
in front maps torchvision's normalisation ((x/255 - mean) / std) to it; the head gives logits (Keras: softmax),
the same top-1."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgelite.preprocess import PRESETS

from .shared_data import SHARED
from .tflite_ops import op_facts

KERAS_MODEL = SHARED / "data/models/mobilenet_v2_1.0_224_imagenet.keras"
# torchvision's normalisation, in 0-1 units: the runtime's "torch" preset (pixel units) is the one definition
MEAN, STD = (np.array(v) / 255 for v in PRESETS["torch"][1:])
# torchvision's inverted residual settings: expansion t, channels c, repeats n, first stride s
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def build_torch():
    """torchvision's MobileNetV2 layout (features: ConvBNReLU, InvertedResidual x17, ConvBNReLU; classifier:
    Dropout, Linear), with Keras' padding and BN epsilon, and the [-1, 1] affine in front."""
    import torch
    from torch import nn

    def conv_bn(cin, cout, k, stride, groups=1, relu=True):
        pad = [nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []
        layers = pad + [nn.Conv2d(cin, cout, k, stride, 0 if stride == 2 else k // 2, groups=groups, bias=False),
                        nn.BatchNorm2d(cout, eps=1e-3)]
        return nn.Sequential(*layers, *([nn.ReLU6()] if relu else []))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            layers = [conv_bn(cin, hidden, 1, 1)] if t != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, relu=False)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            features, cin = [conv_bn(3, 32, 3, 2)], 32
            for t, c, n, s in SETTINGS:
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn(cin, 1280, 1, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
            # torchvision's input x_t = (p/255 - mean)/std; Keras' x_k = p/127.5 - 1 = 2 std x_t + 2 mean - 1
            self.register_buffer("scale", torch.tensor(2 * STD, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("shift", torch.tensor(2 * MEAN - 1, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x):
            x = self.features(x * self.scale + self.shift)
            return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return MobileNetV2().eval()


def port(module, keras_model) -> None:
    """Keras weights into the torch module, in order: every Conv2D/DepthwiseConv2D/BatchNormalization/Dense."""
    import torch
    from torch import nn

    keras_layers = [layer for layer in keras_model.layers if layer.weights]
    torch_layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    assert len(keras_layers) == len(torch_layers), (len(keras_layers), len(torch_layers))
    with torch.no_grad():
        for k, t in zip(keras_layers, torch_layers):
            w = [np.asarray(v) for v in k.get_weights()]
            kind = type(k).__name__
            if kind == "DepthwiseConv2D":
                t.weight.copy_(torch.from_numpy(w[0].transpose(2, 3, 0, 1).reshape(t.weight.shape).copy()))
            elif kind == "Conv2D":
                t.weight.copy_(torch.from_numpy(w[0].transpose(3, 2, 0, 1).copy()))
            elif kind == "BatchNormalization":
                assert abs(k.epsilon - t.eps) < 1e-9
                for target, value in zip((t.weight, t.bias, t.running_mean, t.running_var), w):
                    target.copy_(torch.from_numpy(value))
            elif kind == "Dense":
                t.weight.copy_(torch.from_numpy(w[0].T.copy()))
                t.bias.copy_(torch.from_numpy(w[1]))
            else:
                raise AssertionError(kind)


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

    onnx_path, pt2_path = out / "mobilenet_v2_torch.onnx", out / "mobilenet_v2_torch.pt2"
    example = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(module, (example,), str(onnx_path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    torch.export.save(torch.export.export(module, (example,)), str(pt2_path))

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
