"""A small CNN trained in PyTorch on ../shared/data/big-cats (issue 29, point 5), converted by edgelite and measured
on the photos it was not trained or calibrated on.

    python -m edgelite.benchmarks.torch_cnn --out DIR [--epochs 5] [--size 96]

The network is the Keras custom recipe's (edgelite.train.models.small_cnn) as an `nn.Module`: two conv 3x3 + ReLU +
max-pool blocks, Flatten, Linear 64 + ReLU, Dropout, Linear (logits). Trained with torch on the CPU: the seeded 80/20
split of `edgelite train` (edgelite.train.data.load_dataset), Adam, random horizontal flips, pixels as torchvision
evaluates them (the shorter side to size / 0.875, the centre crop, ImageNet mean/std: the convention `convert`
assumes for a model from PyTorch). Saved as .onnx (torch.onnx, TorchScript exporter) and .pt2 (torch.export), both
converted with no preprocessing flag, calibrated and checked on the training split. Prints and writes
torch_cnn.json: torch's top-1 on the held-back split, and each artifact's strict top-1 agreement with torch (bar
>= 98.5 % for int8) and its top-1 loss against torch (bar <= 0.5 pt)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgelite.errors import guarded
from edgelite.files import write_atomic

from .shared_data import SHARED


def build(size: int, classes: int):
    from torch import nn

    side = ((size - 2) // 2 - 2) // 2
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(1), nn.Linear(64 * side * side, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, classes))


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, log) -> list:
    import torch

    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), 3e-4)
    rng = np.random.default_rng(0)
    history = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        losses, started = [], time.perf_counter()
        for i in range(0, len(order), 32):
            batch = x[order[i:i + 32]].copy()
            flip = rng.random(len(batch)) < 0.5
            batch[flip] = batch[flip][..., ::-1]
            logits = model(torch.from_numpy(np.ascontiguousarray(batch)))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[order[i:i + 32]]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": round(time.perf_counter() - started, 1)})
        log(f"epoch {epoch + 1}: loss {history[-1]['loss']:.3f} ({history[-1]['seconds']} s)")
    model.eval()
    return history


def logits_of(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + 64])).numpy() for i in range(0, len(x), 64)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=SHARED / "data/big-cats")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--calib-count", type=int, default=200)
    args = parser.parse_args(argv)
    return guarded(lambda: run(args), prog="torch_cnn")


def run(args) -> int:
    import torch

    from edgelite import Classifier
    from edgelite.convert import convert
    from edgelite.convert.samples import choose
    from edgelite.preprocess import PreprocessSpec, batch
    from edgelite.train.data import load_dataset

    def log(line):
        print(line, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data, val_split=0.2, seed=0)
    spec = PreprocessSpec(size=(args.size, args.size), preset="torch", resize="crop", crop_fraction=0.875,
                          antialias=True)  # torchvision's evaluation convention
    train_paths = [str(p) for p, _ in data.train]
    held_paths = [str(p) for p, _ in data.val]
    y_train = np.array([c for _, c in data.train], np.int64)
    y_held = np.array([c for _, c in data.val])
    x_train = batch(train_paths, spec).transpose(0, 3, 1, 2).copy()
    x_held = batch(held_paths, spec).transpose(0, 3, 1, 2).copy()
    log(f"{len(train_paths)} training photos, {len(held_paths)} held back, {len(data.labels)} classes, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads")

    torch.manual_seed(0)
    model = build(args.size, len(data.labels))
    started = time.perf_counter()
    report: dict = {"torch": torch.__version__, "size": args.size, "train_photos": len(train_paths),
                    "held_photos": len(held_paths), "history": train(model, x_train, y_train, args.epochs, log)}
    report["train_seconds"] = round(time.perf_counter() - started, 1)
    reference = logits_of(model, x_held).argmax(1)
    report["torch_top1"] = float((reference == y_held).mean())
    log(f"torch top-1 on the held-back split: {report['torch_top1']:.3f}")

    onnx_path, pt2_path = args.out / "big_cats_cnn.onnx", args.out / "big_cats_cnn.pt2"
    example = torch.zeros(1, 3, args.size, args.size)
    torch.onnx.export(model, (example,), str(onnx_path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    torch.export.save(torch.export.export(model, (example,)), str(pt2_path))
    (args.out / "labels.txt").write_text("\n".join(data.labels) + "\n")

    calibration = choose(train_paths, args.calib_count)
    check = choose([p for p in train_paths if p not in set(calibration)], 100)
    rows = {}
    for name, source, formats in [("onnx", onnx_path, None), ("pt2", pt2_path, ["tflite-int8", "onnx-int8"])]:
        started = time.perf_counter()
        result = convert(source, args.out / f"art-{name}", calibration, check, force=True, verbose=False,
                         labels=data.labels, **({"formats": formats} if formats else {}))
        log(f"convert {name}: {time.perf_counter() - started:.0f} s")
        for artifact in result.artifacts:
            row = {"passed": artifact.passed, "error": artifact.error}
            if artifact.path and Path(artifact.path).exists():
                clf = Classifier(artifact.path)
                top = np.array([int(np.argmax(clf.scores(clf.prepare(p)))) for p in held_paths])
                row.update(agreement=float((top == reference).mean()), top1=float((top == y_held).mean()),
                           spec_as_trained=_same_pixels(clf.spec, spec))
                row["loss_pt"] = round(100 * (report["torch_top1"] - row["top1"]), 2)
            rows[f"{name}:{artifact.format}"] = row
            log(f"{name}:{artifact.format} {row}")
    report["artifacts"] = rows
    write_atomic(args.out / "torch_cnn.json", json.dumps(report, indent=1))
    print(table(report))
    return 0


def _same_pixels(a, b) -> bool:
    """Whether the artifact's recorded preprocessing makes the pixels torch was trained on."""
    fields = ("size", "resize", "crop_fraction", "antialias", "mean", "std", "channel_order")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def table(report: dict) -> str:
    lines = [f"torch top-1 on {report['held_photos']} held-back photos: {100 * report['torch_top1']:.1f} %",
             "| artifact | gate | agreement with torch | top-1 | loss vs torch (pt) | preprocessing as trained |",
             "|---|---|---|---|---|---|"]
    for key, row in report["artifacts"].items():
        if "agreement" in row:
            lines.append(f"| {key} | {'ok' if row['passed'] else 'failed'} | {100 * row['agreement']:.1f} % | "
                         f"{100 * row['top1']:.1f} % | {row['loss_pt']:.1f} | {row['spec_as_trained']} |")
        else:
            lines.append(f"| {key} | {row['error']} | - | - | - | - |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
