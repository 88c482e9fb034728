"""The noise floor: how many answers a float model changes when its input pixels move by less than one level.

An int8 file rounds every layer's activations. A float model that changes its answer when a photo's pixels move
by half a level changes it under int8's rounding too, so this is the scale an int8 file's agreement is read
against (issues 28 and 30). Measured: the trained MobileNetV2 keeps 99.6 % of its top-1 answers on 500 big-cats
photos under +-0.5 level and 99.0 % under +-1 (its int8 files 98.0-98.2 %, as many as +-1.5 levels change); the
legacy MobileNet v1 0.25 98.4 % and 97.0 %; a random-weight EfficientNetB1 91 % and 88 %
(benchmarks/RESULTS.md). The noise is uniform in [-level, level] pixel levels, added to the model's input, where
one level is 1/std of the preprocessing's normalisation: the same as adding it to the pixels before it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .parity import parity

LEVEL = 0.5  # +- pixel levels: below what a JPEG re-encoding or a resize moves
SEEDS = 3


def noise_floor(score: Callable[[np.ndarray], np.ndarray], inputs: Sequence[np.ndarray], step,
                levels: Sequence[float] = (LEVEL,), seeds: int = SEEDS) -> list[dict]:
    """Per noise level: strict top-1 agreement of `score` (probabilities of a float input batch) with itself on
    the clean inputs, min, median and max over `seeds`, and the gate's agreement (near-ties counted) at the
    median seed. `inputs`: float model inputs, each a batch of one; `step`: one pixel level in input units,
    broadcastable to an input (1 / the normalisation's std, per channel in the input's layout)."""
    step = np.asarray(step, np.float32)
    clean = np.concatenate([score(x) for x in inputs])
    rows = []
    for level in levels:
        runs = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            noisy = np.concatenate([score(x + rng.uniform(-level, level, x.shape).astype(np.float32) * step)
                                    for x in inputs])
            runs.append(parity(clean, noisy))
        runs.sort(key=lambda r: r["top1_agreement"])
        median = runs[len(runs) // 2]
        rows.append({"level": level, "images": len(clean), "seeds": seeds, "strict_min": runs[0]["top1_agreement"],
                     "strict_median": median["top1_agreement"], "strict_max": runs[-1]["top1_agreement"],
                     "changed_median": int(round((1 - median["top1_agreement"]) * len(clean))),
                     "gate_agreement_median": median["agreement"]})
    return rows


def of_file(model, photos, levels: Sequence[float] = (LEVEL,), seeds: int = SEEDS) -> list[dict]:
    """noise_floor() of a float model file on photos, as the runtime opens and prepares them (each photo decoded
    and resized once; the noise added to its normalised pixels)."""
    from .classifier import Classifier
    from .preprocess import pixels

    classifier = Classifier(model)
    spec = classifier.spec
    inputs = [classifier.prepare_pixels(pixels(p, spec)) for p in photos]
    return noise_floor(classifier.scores, inputs, pixel_step(spec.std, spec.layout), levels, seeds)


def pixel_step(std, layout: str = "NHWC") -> np.ndarray:
    """One pixel level in the units of an input normalised by `std` (per channel), shaped for the layout."""
    step = 1.0 / np.asarray(std, np.float32).reshape(-1)
    return step.reshape(-1, 1, 1) if layout == "NCHW" else step


def describe(row: dict) -> str:
    """One line: '+-0.5 px: 99.6% strict (99.2%-99.8%, 3 seeds), 100.0% with near-ties'."""
    return (f"+-{row['level']:g} px: {row['strict_median']:.1%} strict ({row['strict_min']:.1%}-"
            f"{row['strict_max']:.1%}, {row['seeds']} seeds), {row['gate_agreement_median']:.1%} with near-ties")
