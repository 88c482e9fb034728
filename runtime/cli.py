"""The `edgelite` command. Heavy sides (TensorFlow) are imported only by the subcommands
that need them; `predict` runs on the device with numpy, Pillow and one backend."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import EdgeliteError, guarded

DESCRIPTION = "Keras image classifiers to small devices: convert, run, benchmark, train."
EXIT_CODES = ("exit codes: 0 all good; 1 some inputs failed, or an artifact is below its gate (convert, verify); "
              "2 usage or input error (a bad flag, file, model or folder); 3 internal error (a bug: "
              "EDGELITE_DEBUG=1 shows the traceback); 130 interrupted")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    return guarded(lambda: args.run(args))


def preprocessing_options(p: argparse.ArgumentParser) -> None:
    """The same preprocessing options on every command, merged field by field over what the model carries."""
    g = p.add_argument_group("preprocessing (merged over what the model carries; see edgelite/resolve.py)")
    g.add_argument("--preprocess", metavar="PRESET|SPEC.json",
                   help="a preset (mobilenet, unit, raw, caffe, torch: sets the normalisation) or a spec .json")
    g.add_argument("--resize", choices=["crop", "stretch"], help="centre crop, or the whole frame")
    g.add_argument("--crop-fraction", type=float, help="with --resize crop: the share of the shorter side kept")
    g.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=None,
                   help="Pillow's antialiasing bilinear, or (--no-antialias) TFLite's RESIZE_BILINEAR")
    g.add_argument("--mean", type=float, nargs="+", metavar="V", help="pixel mean(s) in 0..255: (pixel - mean) / std")
    g.add_argument("--std", type=float, nargs="+", metavar="V", help="pixel std(s) in 0..255")
    g.add_argument("--channel-order", choices=["RGB", "BGR"])


def describe(spec) -> str:
    """One line: what a prediction's pixels went through."""
    resize = f"centre crop {spec.crop_fraction:g}" if spec.resize == "crop" else "whole frame"
    norm = spec.preset if spec.preset != "custom" else f"mean {list(spec.mean)} std {list(spec.std)}"
    return (f"{spec.size[0]}x{spec.size[1]} {'gray' if spec.channels == 1 else spec.channel_order}, {resize}, "
            f"bilinear {'with' if spec.antialias else 'without'} antialias, {norm}, {spec.layout}")


def preprocess_choice(args) -> dict | None:
    """What the user said about preprocessing, as fields for the one resolver (None: nothing)."""
    from .resolve import merge, user_fields

    singles = {"resize": args.resize, "crop_fraction": args.crop_fraction, "antialias": args.antialias,
               "channel_order": args.channel_order, "mean": args.mean, "std": args.std}
    chosen = merge(user_fields(args.preprocess), singles)
    return chosen or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgelite", description=DESCRIPTION, epilog=EXIT_CODES)
    from . import __version__
    from .parity import NEAR_TIE
    parser.add_argument("--version", action="version", version=f"edgelite {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

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
    p.set_defaults(run=_demo)

    p = sub.add_parser("convert", help="Keras model -> verified TFLite and ONNX artifacts",
                       description="Export a Keras model, calibrated on your images, and check each "
                                   "artifact against Keras. Exits 1 if any falls below its threshold.")
    p.add_argument("model", help=".keras, .h5 or SavedModel folder, or 'mobilenetv2' with --weights")
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
    p.add_argument("--nchw", action="store_true", help="ONNX with NCHW input")
    p.add_argument("--no-calib-mirror", action="store_true",
                   help="calibrate on the images only, not also on their mirror images")
    p.add_argument("--no-rescue", action="store_true",
                   help="leave an int8 artifact below its gate as it is (default: per-layer report, then the fewest "
                        "layers kept in float that pass)")
    p.add_argument("--unsafe", action="store_true", help="allow Keras to load arbitrary code (lambda layers)")
    p.add_argument("--output", help="for a model with several outputs: the class scores (name or index)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(run=_convert)

    p = sub.add_parser("verify", help="measure an artifact's agreement with Keras on this machine (no TensorFlow)",
                       description="Run the check set an edgelite artifact carries (images at the model's size and "
                                   "the Keras model's probabilities on them) through this machine's backend and "
                                   "integer kernels. Exit 0 if the top-1 agreement reaches the gate, 1 if not.")
    p.add_argument("models", nargs="+", help=".tflite or .onnx files made by edgelite convert")
    p.add_argument("--min-agreement", type=float, help="the gate (default: the one recorded at export)")
    p.add_argument("--backend", help="force a backend: litert or onnxruntime")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(run=_verify)

    p = sub.add_parser("inspect", help="an artifact's metadata and per-layer quantization report",
                       description="Show what an artifact carries: format, labels, preprocessing, quantization "
                                   "recipe (layers kept in float), parity at export and where it was measured, and "
                                   "the per-layer error report written when an int8 export was rescued (or "
                                   "--layers to compute it now from the ONNX float and int8 files).")
    p.add_argument("model", help=".tflite or .onnx file")
    p.add_argument("--float", dest="float_model", help="the float .onnx export, to compute the per-layer report now")
    p.add_argument("--worst", type=int, default=10, help="layers to list (default 10)")
    p.set_defaults(run=_inspect)

    p = sub.add_parser("predict", help="classify images with a .tflite or .onnx model (no TensorFlow)",
                       description="Top-k classes for image files, folders (recursive) and globs.")
    p.add_argument("model", help=".tflite or .onnx file")
    p.add_argument("images", nargs="*", help="image files, folders or glob patterns")
    p.add_argument("--camera", nargs="?", const="0", metavar="SOURCE",
                   help="classify a camera continuously with a frames/s readout: 'pi' (picamera2), a webcam "
                        "number (default 0) or a video file/URL (OpenCV)")
    p.add_argument("--frames", type=int, help="with --camera: stop after this many frames")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--labels", help="labels file for models that carry none")
    preprocessing_options(p)
    p.add_argument("--annotate", metavar="OUTDIR", help="also write each image with its top-k drawn on it (PNG)")
    p.add_argument("--force", action="store_true", help="overwrite annotated images that exist")
    p.add_argument("--backend", help="force a backend: litert or onnxruntime")
    p.add_argument("--threads", type=int)
    p.add_argument("--output", help="for a model with several outputs: the one that holds the scores (name or index)")
    p.set_defaults(run=_predict)

    p = sub.add_parser("serve", help="a small HTTP classifier service with a camera page (no TensorFlow)",
                       description="Serve a model over HTTP with the standard library: POST /classify (multipart "
                                   "field 'image' or the raw image) -> top-k JSON, GET / a page that takes a photo, "
                                   "GET /health, GET /model. Stops cleanly on SIGTERM or Ctrl-C.")
    p.add_argument("model", help=".tflite or .onnx file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port)")
    p.add_argument("--labels", help="labels file for models that carry none")
    preprocessing_options(p)
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--max-bytes", type=int, default=16 * 1024 * 1024,
                   help="largest request body accepted (default 16 MiB; larger: 413)")
    p.set_defaults(run=_serve)

    p = sub.add_parser("bench", help="latency, size and accuracy of artifacts against the Keras reference",
                       description="Benchmark .tflite/.onnx artifacts (files, or folders such as a convert "
                                   "output) and optionally the Keras model they came from: latency percentiles, "
                                   "threads sweep, cold start, peak RSS, size, top-1/top-5 on a labeled folder "
                                   "and agreement with Keras. Prints a table; --out writes JSON, CSV, Markdown "
                                   "and a plot.")
    p.add_argument("models", nargs="+", help=".tflite/.onnx files or folders holding them")
    p.add_argument("--keras", help="the Keras model as reference (needs TensorFlow)")
    p.add_argument("--data", help="labeled images: class sub-folders, or <wnid>_*.JPEG with wnids.txt")
    p.add_argument("--out", help="folder for results.json/.csv/.md/.png")
    p.add_argument("--runs", type=int, default=100, help="timed runs per measurement (default 100)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: sweep 1..cores)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--limit", type=int, help="use at most this many labeled images")
    p.add_argument("--quick", action="store_true", help="short run: 20 runs, all cores only, 50 images")
    preprocessing_options(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing --out folder")
    p.set_defaults(run=_bench)

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
    p.set_defaults(run=_bundle)

    p = sub.add_parser("train", help="train a classifier on a folder of class sub-folders",
                       description="Train on DATA_DIR/<class>/*: MobileNetV2 transfer learning (frozen backbone, "
                                   "then fine-tuning its last layers) or the small custom CNN. Seeded stratified "
                                   "split, augmentation, best epoch by validation accuracy, evaluation and plots; "
                                   "saves model.keras with its labels and preprocessing.")
    p.add_argument("data", help="folder with one sub-folder per class")
    p.add_argument("--recipe", choices=["mobilenetv2", "cnn"], default="mobilenetv2")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, help="input size (default 224 for mobilenetv2, 150 for cnn)")
    p.add_argument("--epochs", type=int, help="epochs (default 8 for mobilenetv2's frozen stage, 20 for cnn)")
    p.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width (default 1.0)")
    p.add_argument("--weights", default="imagenet",
                   help="MobileNetV2 backbone: imagenet (Keras download), none, or a local ImageNet model file; "
                        "or a previous run's model.keras, to resume (either recipe)")
    p.add_argument("--fine-tune-last", type=int, default=30, help="backbone layers to fine-tune (default 30; 0: none)")
    p.add_argument("--fine-tune-epochs", type=int, default=6)
    p.add_argument("--val-split", type=float, default=0.2)
    p.add_argument("--val", help="a separate validation folder (same class folders)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-augment", action="store_true", help="train without flip/rotation/zoom")
    p.add_argument("--cache", metavar="DIR",
                   help="keep decoded pixels in DIR (one file per split, keyed by the files and preprocessing) "
                        "and reuse them in later runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", action="store_true", help="run `edgelite convert` on the result (into OUT/artifacts)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(run=_train)
    return parser


def _demo(args) -> int:
    from edgelite.benchmarks.demo import DEMO_FORMATS, run_demo

    result = run_demo(out=args.out, model=args.model, data=args.data, preprocess=preprocess_choice(args),
                      labels=args.labels, force=args.force, epochs=args.epochs,
                      formats=args.formats or DEMO_FORMATS, runs=args.runs, check=args.check,
                      threads=args.threads)
    return 0 if result["ok"] else 1


def _convert(args) -> int:
    from edgelite.convert import FORMATS, convert
    from edgelite.files import choose, find_images, split_images

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
                     near_tie=args.near_tie)
    failed = [a.format for a in result.artifacts if not a.passed]
    if failed:
        print(f"edgelite: {len(failed)} artifact(s) failed or fell below threshold: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _verify(args) -> int:
    from .checkset import verify
    from .classifier import Classifier

    failed = 0
    for model in args.models:
        report = verify(Classifier(model, backend=args.backend), args.min_agreement)
        failed += not report["passed"]
        if args.json:
            print(json.dumps(report))
            continue
        k = report["kernels"]
        gate = "no gate" if report["min_agreement"] is None else f"gate {report['min_agreement']:.1%}"
        print(f"{model}: agreement with Keras {report['agreement']:.1%} on {report['images']} check images ({gate}) "
              f"-> {'ok' if report['passed'] else 'BELOW THE GATE'}; top-1 {report['top1_agreement']:.1%}, "
              f"{report['near_ties_flipped']} near-ties (within {report['near_tie']:g}) flipped")
        print(f"  max |dp| vs Keras {report['max_abs_diff']:.3f}; vs the exporting machine: same top-1 "
              f"{report['same_top1_as_export']:.1%}, max |dp| {report['max_abs_diff_from_export']:.3f}"
              + ("" if report["pixels_identical"] else "; check images decode differently here"))
        exported = report["exported_on"] or {}
        print(f"  here: {k['machine']} [{' '.join(k['flags'])}] {k['backend']}; exported on: "
              f"{exported.get('machine', '?')} [{' '.join(exported.get('flags', []))}] {exported.get('backend', '')}")
    return 1 if failed else 0


def _inspect(args) -> int:
    from pathlib import Path

    from .classifier import Classifier

    clf = Classifier(args.model)
    meta = clf.metadata
    print(f"{args.model}: {meta.get('format', 'no edgelite metadata')}; input {clf.input.shape} {clf.input.dtype}, "
          f"output {clf.output.shape} {clf.output.dtype}; {len(clf.labels or [])} labels")
    print(f"  preprocessing: {json.dumps(clf.spec.to_dict())}")
    recipe = meta.get("quantization", {})
    if recipe:
        print(f"  quantization: {json.dumps({k: v for k, v in recipe.items() if k != 'rescue'})}")
    if "parity" in meta:
        p = meta["parity"]
        k = p.get("kernels", {})
        agreement = f"agreement {p['agreement']:.1%}, top-1 " if "agreement" in p else "top-1 agreement "
        print(f"  parity at export: {agreement}{p['top1_agreement']:.1%} on {p['images']} images (gate "
              f"{p['min_agreement']:.1%}), max |dp| {p['max_abs_diff']:.3f}; measured on {k.get('machine', '?')} "
              f"[{' '.join(k.get('flags', []))}] {k.get('backend', '')}")
    rescue = recipe.get("rescue")
    if rescue:
        from edgelite.convert.rescue import format_tries

        kept = (", ".join(rescue["excluded"]) or "none") if rescue.get("passed") else "none (no try passed)"
        method = f"; calibration: {rescue['method']}" if rescue.get("passed") and rescue.get("method") else ""
        print(f"  rescue: {format_tries(rescue['tries'])}{method}; kept in float: {kept}")
    layers = None
    if args.float_model:
        from edgelite.convert.rescue import onnx_layer_report
        from .checkset import decode, unpack

        payload = clf.backend.check_set()
        blobs = unpack(payload)[0] if payload else []
        if not blobs:
            raise EdgeliteError(f"{args.model} carries no check set to compute the report on")
        import numpy as np

        inputs = np.concatenate([clf.prepare_pixels(decode(b)) for b in blobs[:16]]).astype(np.float32)
        layers = onnx_layer_report(Path(args.float_model), Path(args.model), inputs, clf.backend.session.get_inputs()[0].name)
    else:
        report = Path(args.model).with_name(rescue["report"]) if rescue and rescue.get("report") else None
        if report and report.is_file():
            layers = json.loads(report.read_text())
    if layers:
        from edgelite.convert.rescue import format_table

        key = "sqnr_db" if Path(args.model).suffix == ".onnx" else "rmse_scale"
        print(format_table(layers, key, worst=args.worst))
    elif recipe.get("weights") == "int8":
        print("  no per-layer report stored (written when an int8 export is rescued); "
              "for ONNX pass --float MODEL_fp32.onnx to compute one")
    return 0


def _predict(args) -> int:
    from .classifier import Classifier
    from .files import find_images

    classifier = Classifier(args.model, backend=args.backend, threads=args.threads, labels=args.labels,
                            preprocess=preprocess_choice(args), output=args.output)
    if not args.json:
        print(f"preprocessing: {describe(classifier.spec)}", file=sys.stderr)
    if args.camera is not None:
        from .camera import classify_stream, frames

        classify_stream(classifier, frames(args.camera), top_k=min(args.top_k, 3), limit=args.frames)
        return 0
    if not args.images:
        raise EdgeliteError("give images (files, folders or globs) or --camera")
    images = find_images(args.images)
    if not images:
        raise EdgeliteError("no images found")
    annotate_dir = None
    if args.annotate:
        from pathlib import Path

        from .annotate import save_annotated

        annotate_dir, taken = Path(args.annotate), set()
        try:
            annotate_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeliteError(f"cannot write to {annotate_dir}: {exc.strerror or exc}") from None
    failures = 0
    results = classifier.predict_batch(images, top_k=args.top_k) if len(images) > 1 else [
        classifier.predict_safely(images[0], args.top_k)]
    for result in results:
        if result.error is None and annotate_dir is not None:
            try:
                save_annotated(result.source, result.predictions, annotate_dir, taken, args.force)
            except EdgeliteError as exc:
                result = result._replace(predictions=None, error=str(exc))
        if result.error:
            failures += 1
            print(f"edgelite: error: {result.error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"image": str(result.source), "predictions": [p._asdict() for p in result.predictions],
                              "preprocess": classifier.spec.to_dict()}))
        else:
            print(result.source)
            for rank, p in enumerate(result.predictions, 1):
                print(f"  {rank}. {p.score:6.3f}  {p.label} ({p.index})")
    if failures:
        print(f"edgelite: {failures} of {len(images)} images failed", file=sys.stderr)
        return 1
    return 0


def _serve(args) -> int:
    from .classifier import Classifier
    from .serve import serve

    if args.max_bytes < 1:
        raise EdgeliteError("--max-bytes must be at least 1")
    classifier = Classifier(args.model, threads=args.threads, labels=args.labels, preprocess=preprocess_choice(args))
    return serve(classifier, host=args.host, port=args.port, max_bytes=args.max_bytes)


def _bench(args) -> int:
    from edgelite.benchmarks import report
    from edgelite.benchmarks.bench import bench

    runs, threads, limit, repeat = args.runs, args.threads, args.limit, 3
    if args.quick:
        runs, threads, limit, repeat = min(runs, 20), threads or [os.cpu_count() or 1], limit or 50, 1
    document = bench(args.models, data=args.data, keras=args.keras, out=args.out, runs=runs, warmup=args.warmup,
                     threads=threads, batches=args.batch, limit=limit, cold_repeat=repeat,
                     preprocess=preprocess_choice(args), force=args.force)
    env, settings = document["environment"], document["settings"]
    print(f"\n{env['cpu']}, {env['cores']} cores; {settings['images']} images; batch 1, "
          f"{settings['threads']} threads, {settings['runs']} runs\n")
    print(report.markdown(document["rows"]), end="")
    if document.get("files"):
        print(f"\nwritten: {', '.join(document['files'].values())}")
    return 0


def _bundle(args) -> int:
    from .bundle import bundle

    files = bundle(args.model, args.out, labels=args.labels, preprocess=preprocess_choice(args), wheel=not args.no_wheel,
                   force=args.force)
    for kind, path in files.items():
        print(f"{kind:13s} {path}")
    return 0


def _train(args) -> int:
    from edgelite.train.recipes import train

    trained = train(args.data, args.out, recipe=args.recipe, size=args.size, epochs=args.epochs,
                    fine_tune_epochs=args.fine_tune_epochs, fine_tune_last=args.fine_tune_last, alpha=args.alpha,
                    weights=args.weights, val_split=args.val_split, val_dir=args.val, batch_size=args.batch_size,
                    seed=args.seed, augment=not args.no_augment, force=args.force, cache=args.cache)
    print(f"validation accuracy {trained.val_accuracy:.1%} ({len(trained.val)} images), "
          f"{trained.seconds:.0f}s of training; saved {trained.model_path}")
    print(f"plots: {trained.files['history_plot']}, {trained.files['confusion_plot']}")
    if not args.export:
        return 0
    from edgelite.convert import FORMATS, convert
    from edgelite.files import choose

    from edgelite.benchmarks.labeled import accuracy

    result = convert(trained.model_path, trained.model_path.parent / "artifacts",
                     choose([p for p, _ in trained.train], 200), [p for p, _ in trained.val],
                     formats=FORMATS, force=args.force)
    truth = [y for _, y in trained.val]
    print(f"validation accuracy: Keras {accuracy(result.reference, truth)['top1']:.1%}", end="")
    for a in result.artifacts:
        if a.scores is not None:
            print(f", {a.format} {accuracy(a.scores, truth)['top1']:.1%}", end="")
    print()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
