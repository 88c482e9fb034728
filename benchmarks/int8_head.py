"""What the int8 head costs or saves: int8 files ending in an int8 SOFTMAX (output scale fixed at 1/256) against
int8 logits at their own scale with the softmax in float after them (what `convert` makes now).

    python -m edgelite.benchmarks.int8_head [--model M.keras] [--out DIR] [--rounds 8]

Converts the shared MobileNetV2 (default) to tflite-int8 and onnx-int8 both ways, calibrated on
imagenet-sample's calibration half, checked on its held-back half plus big-cats photos (none used for
calibration), no rescue. Prints per file: strict top-1 agreement with Keras (whose fp32 export agrees with it to
1e-5), total variation between the file's and Keras's probabilities (mean over images), images whose top-1 is
an exact tie in the file's scores, dead outputs, XNNPACK delegate partitions, and
ms per image (one thread, each file timed alone in alternating rounds: edgelite.timing). Writes int8_head.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgelite.errors import EdgeliteError, guarded
from edgelite.files import find_images, write_atomic
from edgelite.parity import exact_ties

from .shared_data import shared_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Keras model (default: the shared MobileNetV2)")
    parser.add_argument("--out", type=Path, help="folder for the artifacts and int8_head.json")
    parser.add_argument("--check-count", type=int, default=500, help="check images (default 500)")
    parser.add_argument("--rounds", type=int, default=8, help="timing rounds (default 8)")
    args = parser.parse_args(argv)
    return guarded(lambda: run(args), prog="int8_head")


def run(args) -> int:
    data = shared_dir() / "data"
    model = Path(args.model) if args.model else data / "models" / "mobilenet_v2_1.0_224_imagenet.keras"
    if not model.exists():
        raise EdgeliteError(f"no such model: {model}")
    photos = find_images([data / "imagenet-sample"])
    if not photos:
        raise EdgeliteError(f"{data / 'imagenet-sample'}: no images found")
    from edgelite.convert import convert, keras_variants
    from edgelite.convert.samples import choose, split_images
    from edgelite.timing import measure, opener, summary

    calibration, held_back = split_images(photos)
    check = choose(held_back + find_images([data / "big-cats"]), args.check_count)
    out = args.out or Path(tempfile.mkdtemp(prefix="int8-head-"))
    rows, real = {}, keras_variants.without_softmax
    for head in ("int8 softmax", "int8 logits"):
        keras_variants.without_softmax = real if head == "int8 logits" else (lambda model, sample: None)
        try:
            result = convert(model, out / head.replace(" ", "-"), choose(calibration, 200), check,
                             formats=["tflite-int8", "onnx-int8"], rescue=False, verbose=False, force=True)
        finally:
            keras_variants.without_softmax = real
        for a in result.artifacts:
            if a.error:
                raise EdgeliteError(f"{a.format} ({head}): {a.error}")
            rows[(a.format, head)] = {"format": a.format, "head": head, "path": str(a.path),
                                      "strict_top1": a.parity["top1_agreement"],
                                      "exact_ties": exact_ties(a.scores),
                                      "dead_outputs": a.parity["dead_outputs"],
                                      "total_variation": a.parity["total_variation"],
                                      "partitions": _partitions(a.path) if a.format == "tflite-int8" else None}
    tflites = {key: opener(row["path"], 1) for key, row in rows.items() if key[0] == "tflite-int8"}
    for key, turns in measure(tflites, args.rounds, 20).items():
        rows[key]["ms"] = summary(turns)["ms"]
    print(f"{len(check)} check images; strict top-1 agreement with Keras")
    print(f"{'file':12s} {'head':13s} {'strict':>7s} {'TV':>6s} {'ties':>5s} {'dead':>5s} {'parts':>5s} {'ms':>6s}")
    for row in rows.values():
        print(f"{row['format']:12s} {row['head']:13s} {row['strict_top1']:7.1%} {row['total_variation']:6.3f} "
              f"{row['exact_ties']:5d} "
              f"{row['dead_outputs']:5d} {row['partitions'] if row['partitions'] is not None else '-':>5} "
              f"{row['ms'] if 'ms' in row else float('nan'):6.2f}")
    write_atomic(out / "int8_head.json", json.dumps({"check_images": len(check), "rows": list(rows.values())},
                                                    indent=1).encode())
    print(f"wrote {out / 'int8_head.json'}", file=sys.stderr)
    return 0


def _partitions(path) -> int:
    """XNNPACK delegate partitions LiteRT makes of the file (1: the whole graph runs in one)."""
    from edgelite.backends import open_backend

    interpreter = open_backend(path).interpreter
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


if __name__ == "__main__":
    sys.exit(main())
