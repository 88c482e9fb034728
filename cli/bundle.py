"""`edgelite bundle`: a folder to copy to the device."""
from __future__ import annotations

from .options import preprocess_choice, preprocessing_options


def add(sub) -> None:
    p = sub.add_parser("bundle", help="a folder to copy to the device: model, requirements, README, wheel",
                       description="Write the model (with its metadata), a requirements.txt that installs only "
                                   "the device side with pinned aarch64-capable versions, a README with the "
                                   "commands to run there, and a wheel of edgelite.")
    p.add_argument("model", help=".tflite or .onnx file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--labels", help="labels file for models that carry none (written into a sidecar)")
    preprocessing_options(p)
    p.add_argument("--no-wheel", action="store_true", help="require edgelite from a package index instead")
    p.add_argument("--force", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.bundle import bundle

    files = bundle(args.model, args.out, labels=args.labels, preprocess=preprocess_choice(args),
                   wheel=not args.no_wheel, force=args.force)
    for kind, path in files.items():
        print(f"{kind:13s} {path}")
    return 0
