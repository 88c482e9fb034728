"""Parity of an artifact with its Keras model: the figures, and the gate they are judged by.

Top-1 agreement alone punishes near-ties. A weak model (a MobileNet v1 0.25 gives half its answers
below 0.5) often ranks two classes within a few points of probability; any rounding, int8 or even
fp16, flips some of them, and such a flip changes no answer Keras was sure of. So the gate counts a
differing top-1 as agreeing when Keras itself scored the artifact's choice within `near_tie` of its
own top-1 (default 0.05 of probability) and at least UNSURE (half) of it: Keras itself is unsure between
the two classes. Strict agreement is reported beside it. A broken int8 kernel is not hidden by this: the
saturating u8 x s8 MobileNetV2 (92.0 % strict) is 93.6 % with near-ties counted, still under the 95 % gate.

Nor is a dead output: a model whose softmax is about 0.001 everywhere (random weights, a weak 1000-class
model) has every class within 0.05 of its top-1, and its int8 SOFTMAX (output steps of 1/256) printed 1000
zeros, whose argmax is class 0; the absolute rule alone counted every such flip as a near-tie and passed the
file at 100 %. Now an image whose artifact output is all one value never agrees (`dead_outputs` counts them;
where Keras's own output is all one value, only such an artifact output agrees),
and a class Keras scored at under half its top-1 is no near-tie, however small both are.

Nor are outputs that drifted far from the source's: the near-tie rule forgives every flip of a model unsure of
everything (a random EfficientNetB1's softmax is within 1 % of uniform), and that EfficientNetB1's int8 file, whose
probabilities were a spike on some other class (top-5 overlap 13 %), agreed 95.8 % "with near-ties". So an artifact
also fails where the mean total variation between its probabilities and the source's on the check images is above
MAX_TOTAL_VARIATION: 0.74-0.89 for those collapsed int8 files; at most 0.12 for every other int8, dynamic and fp16
file of the Keras families, the PyTorch models and the trained MobileNetV2 (benchmarks/RESULTS.md, issue 28).
"""
from __future__ import annotations

import numpy as np

# minimum agreement with Keras (near-ties counted), by precision
THRESHOLDS = {"fp32": 0.995, "fp16": 0.995, "dynamic": 0.95, "int8": 0.95}
NEAR_TIE = 0.05  # a differing top-1 that Keras scored within this of its own counts as agreeing
UNSURE = 0.5  # ... when Keras scored it at least this fraction of its own top-1
MAX_TOTAL_VARIATION = 0.3  # mean total variation from the source's probabilities beyond which nothing passes


def parity(reference: np.ndarray, scores: np.ndarray, near_tie: float = NEAR_TIE) -> dict:
    """Compare probabilities [N, C] of the artifact with the Keras reference."""
    if reference.shape != scores.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {scores.shape}")
    k = min(5, reference.shape[1])
    ref_top = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    art_top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    # a reference top-k class counts as kept if the artifact scores it at least as high as
    # its own k-th score: quantized outputs tie, and a tie is not a disagreement
    kth = np.take_along_axis(scores, art_top[:, -1:], axis=1)
    kept = np.take_along_axis(scores, ref_top, axis=1) >= kth
    overlap = kept.mean(axis=1)
    diff = np.abs(reference - scores)
    # all one value where Keras's is not: the artifact chose nothing (a Keras output dead itself, as a random
    # MobileNetV3's softmax of exactly 0.001 everywhere, is matched by an artifact as dead: that agrees)
    flat, flat_too = (a.max(axis=1) == a.min(axis=1) for a in (reference, scores))
    dead = flat_too & ~flat
    same = np.where(flat, flat_too, (ref_top[:, 0] == art_top[:, 0]) & ~dead)
    # how far below its own top-1 Keras scored the artifact's top-1
    top, chosen = reference.max(axis=1), np.take_along_axis(reference, art_top[:, :1], axis=1)[:, 0]
    near = ~same & ~dead & ~flat & (top - chosen <= near_tie) & (chosen >= UNSURE * top)
    return {
        "images": int(reference.shape[0]),
        "top1_agreement": float(np.mean(same)),
        "agreement": float(np.mean(same | near)),
        "near_tie": near_tie,
        "near_ties_flipped": int(np.sum(near)),
        "dead_outputs": int(np.sum(dead)),
        "total_variation": float(np.mean(0.5 * np.abs(reference / reference.sum(axis=1, keepdims=True)
                                                      - _distribution(scores)).sum(axis=1))),
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def exact_ties(scores: np.ndarray) -> int:
    """Rows [N, C] whose best score is tied exactly with another (argmax then takes the lower index): what a
    coarse output step (an int8 SOFTMAX's 1/256) turns close answers into."""
    top = np.sort(scores, axis=1)
    return int(np.sum(top[:, -1] == top[:, -2])) if scores.shape[1] > 1 else 0


def _distribution(scores: np.ndarray) -> np.ndarray:
    """Rows as probability distributions (a dead all-zero row: uniform)."""
    total = scores.sum(axis=1, keepdims=True)
    return np.where(total > 0, scores / np.where(total > 0, total, 1), 1.0 / scores.shape[1])


def passes(figures: dict, least: float) -> bool:
    """The gate: agreement (near-ties counted) at least `least`, and probabilities not far from the source's."""
    return figures["agreement"] >= least and not far(figures)


def far(figures: dict) -> bool:
    """Probabilities too far from the source's to pass, whatever the agreement (MAX_TOTAL_VARIATION)."""
    return figures.get("total_variation", 0.0) > MAX_TOTAL_VARIATION


def gate_agreement(figures: dict) -> float:
    """Agreement as the gate counts it, for a search that ranks tries by it (the rescue): none for a far output."""
    return 0.0 if far(figures) else figures["agreement"]


def far_note(figures: dict, reference: str) -> str:
    """The clause a report line adds for a far output ("" otherwise)."""
    return (f", total variation {figures['total_variation']:.2f} > {MAX_TOTAL_VARIATION}: far from {reference}'s "
            "probabilities" if far(figures) else "")


def min_agreement(precision: str, thresholds: dict | None = None) -> float:
    """The least agreement an artifact of this precision must reach (defaults or given)."""
    return {**THRESHOLDS, **(thresholds or {})}[precision]
