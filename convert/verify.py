"""Parity of an exported artifact with its Keras model on held-back images."""
from __future__ import annotations

import numpy as np

# minimum top-1 agreement with Keras, by precision
THRESHOLDS = {"fp32": 0.995, "fp16": 0.995, "dynamic": 0.95, "int8": 0.95}


def parity(reference: np.ndarray, scores: np.ndarray) -> dict:
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
    return {
        "images": int(reference.shape[0]),
        "top1_agreement": float(np.mean(ref_top[:, 0] == art_top[:, 0])),
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def min_agreement(precision: str, thresholds: dict | None = None) -> float:
    """The least top-1 agreement an artifact of this precision must reach (defaults or given)."""
    return {**THRESHOLDS, **(thresholds or {})}[precision]
