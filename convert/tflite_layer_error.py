"""The TFLite full-int8 ranker: each quantized layer's own error (TFLite's QuantizationDebugger), for the
rescue's search (fallback.py)."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from edgelite.errors import EdgeliteError, one_line

from .layer_report import silent, sqnr_db
from .tflite import quantize_calibrated


def tflite_layer_report(calibrated: bytes, inputs: np.ndarray, io_type: str = "int8") -> list[dict]:
    """One row per quantized layer of the full-int8 TFLite model made from `calibrated` (tflite.calibrate), in
    execution order: TF's recipe (range, rmse/scale) and an SQNR from the layer's float signal power over its
    MSE. The error is per layer (float and int8 op fed the same input), as QuantizationDebugger measures it.
    `io_type` does not change the body's quantization and is accepted for symmetry."""
    import tensorflow as tf

    def data():
        return ([np.asarray(x, np.float32)[None]] for x in inputs)

    power = {"signal_power": lambda f, q, scale, zp: float(np.mean(np.square(f, dtype=np.float64)))}
    try:
        with silent():
            # reading the float tensors needs an interpreter that keeps them, which only
            # the from-content constructor makes
            debugger = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=quantize_calibrated(calibrated, io_type, debug=True), debug_dataset=data,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=power))
            debugger.run()
            table = io.StringIO()
            debugger.layer_statistics_dump(table)
    except Exception as exc:
        raise EdgeliteError(f"TFLite layer report failed: {one_line(exc, last=True)}") from None
    rows = []
    for row in csv.DictReader(io.StringIO(table.getvalue())):
        scale, mse, signal = float(row["scale"]), float(row["mean_squared_error"]), float(row["signal_power"])
        sqnr = sqnr_db(signal, mse)
        rows.append({"layer": row["tensor_name"], "node": row["tensor_name"], "op": row["op_name"],
                     "rmse_scale": math.sqrt(mse) / scale if scale else None, "mean_error": float(row["mean_error"]),
                     "scale": scale, "range": 255.0 * scale, "sqnr_db": sqnr})
    return rows
