"""Activation ranges other than min/max for TFLite int8: written into the calibrated model (tflite.calibrate) before
the converter's quantizer reads them, so the int8 file is the converter's own, with other scales.

The calibrator records each tensor's min and max over every calibration image. One extreme value sets the step
for all: the linear bottleneck outputs of the shared MobileNetV2 span about [-60, 60], a step of 0.5, where
nearly every value lies within a few units. A range chosen to minimise the tensor's mean squared quantization
error (rounding and clipping together; Nagel et al. 2021, "A White Paper on Neural Network Quantization", 4.3)
trades a few clipped outliers for a finer step everywhere else. Only outputs of CONV_2D, DEPTHWISE_CONV_2D and ADD
change: the model's input and output keep theirs (clipping the largest logit would change answers), and ops
that must keep their input's scale (pooling, reshapes) follow by the quantizer's own rules.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .tflite_model import pack, unpack

ADD, CONV_2D, DEPTHWISE_CONV_2D = 0, 3, 4  # BuiltinOperator codes
RANGED = (ADD, CONV_2D, DEPTHWISE_CONV_2D)
SAMPLE = 2048  # values kept per tensor and image
IMAGES = 64  # calibration images sampled (the ranges settle well before; the calibrator's min/max saw them all)
FRACTIONS = np.linspace(0.1, 1.0, 46)  # of the min/max range, tried


def mse_ranges(calibrated: bytes, float_tflite: bytes, calibration: Callable[[], Iterable[np.ndarray]],
               seed: int = 0) -> tuple[bytes, int]:
    """The calibrated model with the MSE-best range written for each ranged tensor, and how many changed.
    Tensors are matched to the float model's by name; values are sampled from running it over IMAGES batches of
    `calibration`, evenly spread (its photos come in folder order)."""
    from ai_edge_litert.interpreter import Interpreter

    _, model = unpack(calibrated)
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    outputs = set(graph.outputs)
    targets = {}  # name -> tensor object of the calibrated model
    for op in graph.operators:
        if codes[op.opcodeIndex] in RANGED:
            for index in op.outputs:
                tensor = graph.tensors[index]
                q = tensor.quantization
                if index not in outputs and q is not None and q.min is not None and len(q.min) == 1:
                    targets[tensor.name] = tensor
    interpreter = Interpreter(model_content=float_tflite, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    by_name = {d["name"].encode() if isinstance(d["name"], str) else d["name"]: d["index"]
               for d in interpreter.get_tensor_details()}
    indices = {name: by_name[name] for name in targets if name in by_name}
    feed = interpreter.get_input_details()[0]["index"]
    rng = np.random.default_rng(seed)
    samples: dict = {name: [] for name in indices}
    batches = list(calibration())
    for x in batches[::max(1, len(batches) // IMAGES)][:IMAGES]:
        interpreter.set_tensor(feed, np.asarray(x, np.float32))
        interpreter.invoke()
        for name, index in indices.items():
            values = interpreter.get_tensor(index).reshape(-1)
            samples[name].append(values[rng.integers(0, values.size, SAMPLE)] if values.size > SAMPLE else values)
    changed = 0
    for name, parts in samples.items():
        q = targets[name].quantization
        low, high = float(q.min[0]), float(q.max[0])
        best = best_range(np.concatenate(parts).astype(np.float64), low, high)
        if best != (low, high):
            q.min, q.max = np.array([best[0]], np.float32), np.array([best[1]], np.float32)
            changed += 1
    return pack(model, len(calibrated)), changed


def best_range(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The fraction of [low, high] (0 kept in range) whose 256-level grid gives `values` the least squared error."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= 0:
        return low, high
    best, chosen = None, (low, high)
    for fraction in FRACTIONS:
        lo, hi = low * fraction, high * fraction
        scale = (hi - lo) / 255
        zero = np.round(-lo / scale)
        q = np.clip(np.round(values / scale) + zero, 0, 255)
        error = float(np.mean(np.square((q - zero) * scale - values)))
        if best is None or error < best:
            best, chosen = error, (lo, hi)
    return chosen
