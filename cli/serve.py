"""`edgelite serve`: a small HTTP classifier service with a camera page (no TensorFlow)."""
from __future__ import annotations

from edgelite.errors import EdgeliteError

from .options import model_choice, preprocess_choice, preprocessing_options


def add(sub) -> None:
    p = sub.add_parser("serve", help="a small HTTP classifier service with a camera page (no TensorFlow)",
                       description="Serve a model over HTTP with the standard library: POST /classify (multipart "
                                   "field 'image' or the raw image) -> top-k JSON, GET / a page that takes a photo, "
                                   "GET /health, GET /model. Stops cleanly on SIGTERM or Ctrl-C.")
    p.add_argument("model", help=".tflite or .onnx file, or a bundle folder (its tuned choice: edgelite tune)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port)")
    p.add_argument("--labels", help="labels file for models that carry none")
    preprocessing_options(p)
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--max-bytes", type=int, default=16 * 1024 * 1024,
                   help="largest request body accepted (default 16 MiB; larger: 413)")
    p.set_defaults(run=run)


def run(args) -> int:
    from edgelite.classifier import Classifier
    from edgelite.serve import serve

    if args.max_bytes < 1:
        raise EdgeliteError("--max-bytes must be at least 1")
    classifier = Classifier(**model_choice(args.model, threads=args.threads), labels=args.labels,
                            preprocess=preprocess_choice(args))

    def ready(url: str, classes: int) -> None:
        print(f"edgelite serve: {url} model {classifier.path.name}, {classes} classes "
              f"(max body {args.max_bytes:,} bytes; Ctrl-C to stop)", flush=True)

    return serve(classifier, host=args.host, port=args.port, max_bytes=args.max_bytes, ready=ready)
