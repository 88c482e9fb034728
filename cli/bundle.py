"""`edgelite bundle`: a folder to copy to the device."""
from __future__ import annotations

from .options import preprocess_choice, preprocessing_options


def add(sub) -> None:
    p = sub.add_parser("bundle", help="a folder to copy to the device: artifacts, requirements, README, wheel",
                       description="Write every artifact that passed its gate at export (files, or the .tflite/.onnx "
                                   "files of a convert output folder) with its metadata, a bundle.json listing them, a "
                                   "requirements.txt that installs only the device side with pinned aarch64-capable "
                                   "versions of every backend they need, a README with the commands to run there, and "
                                   "a wheel of edgelite. On the device, `edgelite tune BUNDLE` picks the fastest.")
    p.add_argument("models", nargs="+", metavar="ARTIFACT", help=".tflite or .onnx files, or folders holding them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--labels", help="labels file for models that carry none (written into a sidecar)")
    preprocessing_options(p)
    p.add_argument("--no-wheel", action="store_true", help="require edgelite from a package index instead")
    p.add_argument("--force", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.bundle import bundle

    files = bundle(args.models, args.out, labels=args.labels, preprocess=preprocess_choice(args),
                   wheel=not args.no_wheel, force=args.force)
    for excluded in files.pop("excluded"):
        print(f"left out      {excluded['artifact']}: {excluded['reason']}")
    for kind, paths in files.items():
        for path in paths if isinstance(paths, list) else [paths]:
            print(f"{kind.removesuffix('s'):13s} {path}")
    return 0
