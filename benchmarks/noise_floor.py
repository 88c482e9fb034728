"""How many answers a float export changes when its input pixels move by less than one level: the noise floor
that an int8 file's agreement is judged against (issues 28 and 30).

An int8 file rounds every layer's activations; a float model that changes its answer when a photo's pixels
move by half a level will change it under int8's rounding too. Measured as the user's model runs: the fp32
export, each photo decoded and resized once (its uint8 pixels), then `level` times uniform noise in
[-1, 1] pixel levels added before the model's normalisation, for a few seeds. Strict top-1 agreement with the
same file on the clean pixels; with `parity`'s near-tie rule too, for the rows that are judged by the gate.

    python -m edgelite.benchmarks.noise_floor MODEL_FILE ... [--photos DIR] [--count 100]

(default photos: the shared big-cats, spread over its classes); keras_families and int8_agreement print it per
row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgelite.errors import EdgeliteError, guarded

LEVELS = (0.5, 1.0)  # +- pixel levels of uniform noise
SEEDS = 3


def noise_floor(path, photos, levels=LEVELS, seeds: int = SEEDS) -> list[dict]:
    """Per noise level: the fp32 file's strict top-1 agreement with itself on clean pixels (min, median, max
    over `seeds`), and the gate's agreement (near-ties counted) at the median seed."""
    from edgelite import Classifier
    from edgelite.parity import parity
    from edgelite.preprocess import from_pixels, pixels

    classifier = Classifier(path)
    spec = classifier.spec
    images = [pixels(p, spec).astype(np.float32) for p in photos]

    def scores(noise):
        return np.concatenate([classifier.scores(from_pixels(np.clip(x + n, 0, 255), spec))
                               for x, n in zip(images, noise)])

    clean = scores([0.0] * len(images))
    rows = []
    for level in levels:
        runs = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            noisy = scores([rng.uniform(-level, level, x.shape).astype(np.float32) for x in images])
            runs.append(parity(clean, noisy))
        strict = sorted(r["top1_agreement"] for r in runs)
        median = sorted(runs, key=lambda r: r["top1_agreement"])[len(runs) // 2]
        rows.append({"level": level, "photos": len(images), "seeds": seeds, "strict_min": strict[0],
                     "strict_median": median["top1_agreement"], "strict_max": strict[-1],
                     "changed_median": int(round((1 - median["top1_agreement"]) * len(images))),
                     "gate_agreement_median": median["agreement"]})
    return rows


def describe(row: dict) -> str:
    """One line: '+-0.5 px: 99.6 % strict (99.2-99.8 %, 3 seeds), 100.0 % with near-ties'."""
    return (f"+-{row['level']:g} px: {row['strict_median']:.1%} strict ({row['strict_min']:.1%}-"
            f"{row['strict_max']:.1%}, {row['seeds']} seeds), {row['gate_agreement_median']:.1%} with near-ties")


def spread(photos: list, count: int) -> list:
    """`count` photos taken evenly through a sorted list (every class folder gets its share)."""
    return photos[:: max(1, len(photos) // count)][:count]


def main(argv=None) -> int:
    from .shared_data import shared_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="float model files (.tflite, .onnx)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the shared big-cats)")
    parser.add_argument("--count", type=int, default=100, help="photos (default 100)")
    args = parser.parse_args(argv)

    def run() -> int:
        from edgelite.files import find_images

        photos = spread(find_images([args.photos or shared_dir() / "data" / "big-cats"]), args.count)
        if not photos:
            raise EdgeliteError("no photos found (give --photos or set EDGELITE_SHARED)")
        for model in args.models:
            for row in noise_floor(model, photos):
                print(f"{model.name}: {describe(row)} of {row['photos']} photos", flush=True)
        return 0

    return guarded(run, prog="noise_floor")


if __name__ == "__main__":
    sys.exit(main())
