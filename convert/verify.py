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
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    art_top = np.argsort(-scores, axis=1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(ref_top, art_top)]
    diff = np.abs(reference - scores)
    return {
        "images": int(reference.shape[0]),
        "top1_agreement": float(np.mean(ref_top[:, 0] == art_top[:, 0])),
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def passes(figures: dict, precision: str, thresholds: dict | None = None) -> bool:
    limit = (thresholds or THRESHOLDS)[precision]
    return figures["top1_agreement"] >= limit
