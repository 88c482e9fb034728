"""The noise floor of float model files (edgelite.noise): how many answers each changes when its input pixels
move by +-0.5 or +-1 level, the scale an int8 file's agreement is read against (issues 28 and 30). Measured as
the user's model runs: the file as the runtime opens it, each photo decoded and resized once.

    python -m edgelite.benchmarks.noise_floor MODEL_FILE ... [--photos DIR] [--count 100] [--levels 0.5 1]

(default photos: the shared big-cats, spread over its classes); keras_families and int8_agreement print it per
row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgelite.errors import EdgeliteError, guarded
from edgelite.noise import describe, of_file

from .shared_data import shared_dir, spread

LEVELS = (0.5, 1.0)  # +- pixel levels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="float model files (.tflite, .onnx)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the shared big-cats)")
    parser.add_argument("--count", type=int, default=100, help="photos (default 100)")
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS),
                        help="+- pixel levels of uniform noise (default 0.5 1)")
    args = parser.parse_args(argv)

    def run() -> int:
        from edgelite.files import find_images

        photos = spread(find_images([args.photos or shared_dir() / "data" / "big-cats"]), args.count)
        if not photos:
            raise EdgeliteError("no photos found (give --photos or set EDGELITE_SHARED)")
        for model in args.models:
            for row in of_file(model, photos, args.levels):
                print(f"{model.name}: {describe(row)} of {row['images']} photos", flush=True)
        return 0

    return guarded(run, prog="noise_floor")


if __name__ == "__main__":
    sys.exit(main())
