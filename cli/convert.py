"""`edgelite convert`: a Keras model -> verified TFLite and ONNX artifacts (the workstation)."""
from __future__ import annotations

import sys

from edgelite.errors import EdgeliteError
from edgelite.parity import NEAR_TIE

from .extras import require
from .options import preprocess_choice, preprocessing_options


def add(sub) -> None:
    p = sub.add_parser("convert", help="Keras model -> verified TFLite and ONNX artifacts",
                       description="Export a Keras model, calibrated on your images, and check each "
                                   "artifact against Keras. Exits 1 if any falls below its threshold.")
    p.add_argument("model", help=".keras, .h5 or SavedModel folder, a float classifier .onnx (any producer), or "
                                 "'mobilenetv2' with --weights")
    p.add_argument("--weights", help="with a model name: 'imagenet' (downloads through Keras) or a weights file")
    p.add_argument("--calib", required=True, help="image folder (recursive) for calibration")
    p.add_argument("--check", help="image folder to verify on (default: held back from --calib)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--formats", nargs="+", help="default: all")
    p.add_argument("--calib-count", type=int, default=200, help="calibration images (default 200, a seeded sample)")
    p.add_argument("--check-count", type=int, default=500,
                   help="held-back images the parity is measured on (default 500, a seeded sample: memory stays "
                        "bounded on big folders)")
    p.add_argument("--min-agreement-float", type=float, default=0.995,
                   help="least agreement with Keras for fp32/fp16 (default 0.995)")
    p.add_argument("--min-agreement-int8", type=float, default=0.95,
                   help="least agreement with Keras for int8 and dynamic-range (default 0.95)")
    p.add_argument("--near-tie", type=float, default=NEAR_TIE,
                   help="a differing top-1 counts as agreeing where Keras scored it within this much probability "
                        f"of its own top-1 (default {NEAR_TIE}; 0: strict top-1 agreement)")
    preprocessing_options(p)
    p.add_argument("--labels", help="labels file, one per line")
    p.add_argument("--io-type", choices=["int8", "uint8", "float32"], default="int8",
                   help="input/output type of full-int8 TFLite (default int8)")
    p.add_argument("--int8-method", metavar="NAME",
                   help="how the int8 files are made (default float-logits: min/max ranges, bias correction, and "
                        "the int8 head's sums written as float32 logits; minmax: the same with int8 logits)")
    p.add_argument("--nchw", action="store_true", help="ONNX with NCHW input")
    p.add_argument("--no-calib-mirror", action="store_true",
                   help="calibrate on the images only, not also on their mirror images")
    p.add_argument("--no-rescue", action="store_true",
                   help="leave an artifact below its gate as it is (default: per-layer report, then the fewest "
                        "layers kept in float that pass)")
    p.add_argument("--unsafe", action="store_true", help="allow Keras to load arbitrary code (lambda layers)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="input size for a model whose input size is dynamic (a Keras application family's default "
                        "when not given, e.g. 224 224 for MobileNetV3; needed for other dynamic models, ONNX and "
                        "TorchScript files)")
    p.add_argument("--output", help="for a model with several outputs: the class scores (name or index)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(run=run)


def run(args) -> int:
    require("convert", "tensorflow")
    from edgelite.convert import FORMATS, convert
    from edgelite.convert.int8_methods import offered_method

    offered_method(args.int8_method)  # before any work
    from edgelite.files import find_images
    from edgelite.convert.samples import choose, split_images

    images = find_images([args.calib])
    if not images:
        raise EdgeliteError(f"{args.calib}: no images found")
    if args.check:
        calibration, check = images, find_images([args.check])
    else:
        calibration, check = split_images(images)
    fp, q = args.min_agreement_float, args.min_agreement_int8
    result = convert(args.model, args.out, choose(calibration, args.calib_count), choose(check, args.check_count),
                     formats=args.formats or FORMATS, preprocess=preprocess_choice(args), labels=args.labels,
                     force=args.force, unsafe=args.unsafe, io_type=args.io_type, nchw=args.nchw,
                     weights=args.weights, thresholds={"fp32": fp, "fp16": fp, "dynamic": q, "int8": q},
                     mirror=not args.no_calib_mirror, rescue=not args.no_rescue, output=args.output,
                     near_tie=args.near_tie, done=lambda artifact: print(artifact.summary(), flush=True),
                     size=tuple(args.size) if args.size else None, int8_method=args.int8_method)
    failed = [a.format for a in result.artifacts if not a.passed]
    if failed:
        print(f"edgelite: {len(failed)} artifact(s) failed or fell below threshold: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
