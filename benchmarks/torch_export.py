"""torchvision classifiers with random weights, exported as PyTorch users export them. A plain script that needs
only torch and torchvision (no edgelite), so `torch_families` can run it in another interpreter:

    python benchmarks/torch_export.py --out DIR resnet18 mobilenet_v3_small ...

For each architecture (built with `weights=None` after `torch.manual_seed(0)`: nothing is downloaded) it writes
DIR/NAME.onnx (`torch.onnx.export(dynamo=False)`, opset 17), DIR/NAME-dynamo/NAME.onnx (the dynamo exporter, weights
in NAME.onnx.data beside it) and DIR/NAME.pt2 (`torch.export.save`), and prints one JSON line per architecture:
what was written, what failed (one line each) and whether BatchNorm statistics were set (see `live`)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SIZE = 224


def live(model, photos: Path | None = None) -> bool:
    """The random model with a live output. With random weights some networks shrink every activation layer after
    layer (their logits hardly depend on the photo: nothing to check an export against). There each BatchNorm's
    running mean and variance are set to its input's statistics on a fixed batch (what a few training steps would
    make them; torch's train mode with momentum None is that cumulative average), which keeps activations at unit
    scale: 16 photos from `photos` as torchvision evaluates them, else Gaussian noise (statistics set on noise let
    EfficientNet-B0's logits reach +-1800 on real photos, MobileNetV3Large's activations thousands). Returns
    whether it did (a network whose output already varies is left alone)."""
    import torch

    x = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        spread = model(x).std(0).mean().item()
    if spread > 1e-2:
        return False
    if photos is not None:
        x = photo_batch(photos, 16)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    return True


def photo_batch(folder: Path, count: int):
    """The first `count` JPEGs of `folder` (sorted), as torchvision's ImageNet evaluation makes them."""
    import torch
    from PIL import Image
    from torchvision import transforms

    prepare = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(SIZE), transforms.ToTensor(),
                                  transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    return torch.stack([prepare(Image.open(p).convert("RGB")) for p in paths])


def export(name: str, out: Path, photos: Path | None = None) -> dict:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    row: dict = {"arch": name, "torch": torch.__version__, "torchvision": torchvision.__version__,
                 "bn_statistics_set": live(model, photos), "files": {}, "failed": {}}
    example = torch.zeros(1, 3, SIZE, SIZE)
    with torch.no_grad():
        row["logit_spread"] = float(model(torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
                                    .std(0).mean())
    targets = {
        "onnx": (out / f"{name}.onnx", lambda p: torch.onnx.export(
            model, (example,), str(p), dynamo=False, opset_version=17, input_names=["input"],
            output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})),
        "onnx-dynamo": (out / f"{name}-dynamo" / f"{name}.onnx", lambda p: torch.onnx.export(
            model, (example,), str(p), dynamo=True, external_data=True, input_names=["input"],
            output_names=["logits"])),
        "pt2": (out / f"{name}.pt2", lambda p: torch.export.save(torch.export.export(model, (example,)), str(p))),
    }
    for kind, (path, write) in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            write(path)
            row["files"][kind] = {"path": str(path), "seconds": round(time.perf_counter() - started, 1)}
        except Exception as exc:  # one line per failed export: the run goes on
            row["failed"][kind] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}"
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=Path, help="photos to set BatchNorm statistics on (default: noise)")
    parser.add_argument("archs", nargs="+")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.archs:
        print(json.dumps(export(name, args.out, args.photos)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
