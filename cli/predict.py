"""`edgelite predict`: top-k classes for image files, folders, globs or a camera (no TensorFlow)."""
from __future__ import annotations

import json
import sys

from edgelite.errors import EdgeliteError

from .options import model_choice, preprocess_choice, preprocessing_options
from .ray_options import add_ray_options


def add(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a .tflite or .onnx model (no TensorFlow)",
                       description="Top-k classes for image files, folders (recursive) and globs.")
    p.add_argument("model", help=".tflite or .onnx file, or a bundle folder (its tuned choice: edgelite tune)")
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
    add_ray_options(p, evaluation=False)
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.classifier import Classifier
    from edgelite.files import find_images
    from edgelite.preprocess import describe

    if args.ray is not None:
        return run_on_ray(args)
    if args.out or args.resume or args.actors:
        raise EdgeliteError("--out, --resume and --actors go with --ray (local predict prints its results)")
    classifier = Classifier(**model_choice(args.model, args.backend, args.threads), labels=args.labels,
                            preprocess=preprocess_choice(args), output=args.output)
    if not args.json:
        print(f"preprocessing: {describe(classifier.spec)}", file=sys.stderr)
    if args.camera is not None:
        from edgelite.camera import classify_stream, frames

        classify_stream(classifier, frames(args.camera), top_k=min(args.top_k, 3), limit=args.frames,
                        say=lambda line: print(line, end="\r" if sys.stdout.isatty() else "\n", flush=True))
        return 0
    if not args.images:
        raise EdgeliteError("give images (files, folders or globs) or --camera")
    images = find_images(args.images)
    if not images:
        raise EdgeliteError("no images found")
    annotate = _annotator(args.annotate, args.force) if args.annotate else None
    failures = 0
    results = classifier.predict_batch(images, top_k=args.top_k) if len(images) > 1 else [
        classifier.predict_safely(images[0], args.top_k)]
    for result in results:
        if result.error is None and annotate is not None:
            try:
                annotate(result)
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


def _annotator(folder: str, force: bool):
    """A function that writes each result's image with its top-k drawn on it into `folder`."""
    from pathlib import Path

    from edgelite.annotate import save_annotated

    out, taken = Path(folder), set()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeliteError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return lambda result: save_annotated(result.source, result.predictions, out, taken, force)


def run_on_ray(args) -> int:
    """--ray: the files classified on a Ray cluster into --out, one row per input (edgelite.cluster)."""
    if args.camera is not None or args.annotate:
        raise EdgeliteError("--ray classifies files into --out: --camera and --annotate are local only")
    if not args.images:
        raise EdgeliteError("give images (files, folders or globs)")
    from edgelite.cluster import predict_files
    from edgelite.preprocess import describe

    def ready(classifier) -> None:
        if not args.json:
            print(f"preprocessing: {describe(classifier.spec)}", file=sys.stderr)

    choice = model_choice(args.model, args.backend)  # a bundle: the artifact and options tune chose (threads: 1)
    summary = predict_files(choice["model"], args.images, address=args.ray, out=args.out, top_k=args.top_k,
                            actors=args.actors, resume=args.resume, force=args.force,
                            preprocess=preprocess_choice(args), labels=args.labels, output=args.output,
                            backend=choice["backend"], options=choice.get("options"), on_ready=ready)
    if args.json:
        print(json.dumps(summary))
    return 1 if summary["errors"] else 0
