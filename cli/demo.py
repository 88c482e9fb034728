"""`edgelite demo`: the whole trip, offline."""
from __future__ import annotations

from .options import preprocess_choice, preprocessing_options


def add(sub) -> None:
    p = sub.add_parser("demo", help="the whole trip, offline: train, convert, verify, predict, compare",
                       description="Train a small CNN on scikit-learn's digits (or take --model and --data), "
                                   "export TFLite/ONNX, verify each against Keras, classify with the runtime, "
                                   "and print/save a comparison table.")
    p.add_argument("--model", help="a Keras model (.keras/.h5/SavedModel) instead of training one")
    p.add_argument("--data", help="image folder for calibration and checks (class folders or ImageNet-style)")
    p.add_argument("--out", default="edgelite-demo", help="output folder (default: ./edgelite-demo)")
    preprocessing_options(p)
    p.add_argument("--labels", help="labels file, one per line, for --model")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--formats", nargs="+", help="formats to export (default: TFLite fp32/int8, ONNX fp32/int8)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    p.add_argument("--check", type=int, help="use at most this many held-back images")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.benchmarks.demo import DEMO_FORMATS, run_demo

    result = run_demo(out=args.out, model=args.model, data=args.data, preprocess=preprocess_choice(args),
                      labels=args.labels, force=args.force, epochs=args.epochs,
                      formats=args.formats or DEMO_FORMATS, runs=args.runs, check=args.check,
                      threads=args.threads, say=lambda line: print(line, flush=True))
    return 0 if result["ok"] else 1
