"""Calibration samples that would set the int8 ranges alone: the rescue's calibration without them (issue 28).

Min/max calibration takes each tensor's range from the most extreme calibration sample. A model can answer a
few photos with activations far beyond what every other photo gives: a random-weight EfficientNetB1 gives
n04548280_wall_clock.JPEG of imagenet-sample a pooled feature of 294 where the median photo's is 0.29, and
34 of the folder's 250 samples span more than 8x the median at some tensor. The ranges those few set leave
every other image a handful of int8 levels: that int8 file's probabilities were 0.81 (total variation) from
the float model's; calibrated without those 34, 0.04. A trained model has no such samples (the shared
MobileNetV2: at most 2.0x the median, every sample kept), so this is a rescue's try, not the default: the
cheapest change for an export whose outputs collapsed that way. The samples left out still run on the
device; their own activations clip.
"""
from __future__ import annotations

import warnings

import numpy as np

from edgelite.errors import EdgeliteError

FACTOR = 8.0  # a sample spanning more than this many times the median sample's range at some tensor is atypical


def spans(float_tflite: bytes, batches) -> np.ndarray:
    """[samples, tensors]: each float32 tensor's span (max(0, max) - min(0, min)) per calibration batch of one,
    from the float TFLite model with every tensor kept."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "for debugging purposes only": it is what keeps every tensor
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=float_tflite, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    tensors = [d["index"] for d in interpreter.get_tensor_details()
               if d["dtype"] == np.float32 and d["index"] != feed and len(d["shape"])]
    rows = []
    for x in batches:
        interpreter.set_tensor(feed, np.asarray(x, np.float32))
        interpreter.invoke()
        row = []
        for index in tensors:
            try:
                values = interpreter.get_tensor(index)
            except ValueError:  # a tensor with no data (a constant folded away)
                row.append(0.0)
                continue
            row.append(float(max(values.max(), 0.0) - min(values.min(), 0.0)) if values.size else 0.0)
        rows.append(row)
    return np.asarray(rows, np.float64)


def atypical(spans_: np.ndarray, factor: float = FACTOR) -> np.ndarray:
    """Which samples span more than `factor` times the median sample's range at some tensor (bool [samples])."""
    if len(spans_) < 2:
        return np.zeros(len(spans_), bool)
    median = np.median(spans_, axis=0)
    ratio = spans_ / np.where(median > 0, median, np.inf)
    return ratio.max(axis=1) > factor


def typical_samples(float_tflite: bytes, calib: np.ndarray, batches) -> np.ndarray:
    """The calibration samples that are not atypical; an error (one line) where none is, or too few remain
    (the rescue counts it as a failed try)."""
    left_out = atypical(spans(float_tflite, batches))
    if not left_out.any():
        raise EdgeliteError("no atypical calibration samples")
    if left_out.sum() * 2 > len(calib):
        raise EdgeliteError(f"{left_out.sum()} of {len(calib)} calibration samples are atypical: too many to leave out")
    return calib[~left_out]
