"""Parity of an artifact with its Keras model: the figures, and the gate they are judged by.

Top-1 agreement alone punishes near-ties. A weak model (a MobileNet v1 0.25 gives half its answers
below 0.5) often ranks two classes within a few points of probability; any rounding, int8 or even
fp16, flips some of them, and such a flip changes no answer Keras was sure of. So the gate counts a
differing top-1 as agreeing when Keras itself scored the artifact's choice within `near_tie` of its
own top-1 (default 0.05 of probability); strict agreement is reported beside it. A broken int8
kernel is not hidden by this: the saturating u8 x s8 MobileNetV2 (92.0 % strict) is 93.6 % with
near-ties counted, still under the 95 % gate.
"""
from __future__ import annotations

import numpy as np

# minimum agreement with Keras (near-ties counted), by precision
THRESHOLDS = {"fp32": 0.995, "fp16": 0.995, "dynamic": 0.95, "int8": 0.95}
NEAR_TIE = 0.05  # a differing top-1 that Keras scored within this of its own counts as agreeing


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
    same = ref_top[:, 0] == art_top[:, 0]
    # how far below its own top-1 Keras scored the artifact's top-1
    gap = reference.max(axis=1) - np.take_along_axis(reference, art_top[:, :1], axis=1)[:, 0]
    return {
        "images": int(reference.shape[0]),
        "top1_agreement": float(np.mean(same)),
        "agreement": float(np.mean(same | (gap <= near_tie))),
        "near_tie": near_tie,
        "near_ties_flipped": int(np.sum(~same & (gap <= near_tie))),
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def min_agreement(precision: str, thresholds: dict | None = None) -> float:
    """The least agreement an artifact of this precision must reach (defaults or given)."""
    return {**THRESHOLDS, **(thresholds or {})}[precision]
