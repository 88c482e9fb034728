"""Per-layer quantization error reports (onnxruntime's qdq_loss_debug, TFLite's
QuantizationDebugger) and the search for the smallest float fallback that passes a gate."""
from __future__ import annotations

import contextlib
import csv
import io
import math
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgelite.errors import EdgeliteError, one_line
from edgelite.benchmarks.report import write_figure
from edgelite.files import write_json
from edgelite.layers import worst_first
from edgelite.quiet import quiet


@contextlib.contextmanager
def _silent():
    """quiet() plus Python warnings (the converters' deprecation and debug-mode notices)."""
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def onnx_layer_report(float_path: Path, qdq_path: Path, inputs: np.ndarray, input_name: str) -> list[dict]:
    """One row per quantized activation of the QDQ model, in graph order. `sqnr_db` compares it
    with the float model's tensor, so it sums the error of every layer before it (the tool's own
    pre/post-QDQ figure is not given: where a Relu/Clip was folded into the QDQ range it counts the
    clipping as error); `weight_sqnr_db` is the worst of the producing node's quantized
    weights (matched in the float model and in the model as quant_pre_process rewrites it,
    fused convolutions included). Graph inputs have no producing node and are left out."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = [{input_name: np.asarray(x, np.float32)[None]} for x in inputs]
    try:
        with tempfile.TemporaryDirectory() as tmp, _silent():
            acts = {}
            for kind, path in (("float", float_path), ("qdq", qdq_path)):
                augmented = str(Path(tmp) / f"{kind}.onnx")
                dbg.modify_model_output_intermediate_tensors(str(path), augmented)
                acts[kind] = dbg.collect_activations(augmented, feeds)
            matching = dbg.create_activation_matching(acts["qdq"], acts["float"])
            errors = dbg.compute_activation_error({k: v for k, v in matching.items() if "float" in v})
            prepared = str(Path(tmp) / "prepared.onnx")
            quant_pre_process(str(float_path), prepared, skip_symbolic_shape=True)
            weights = dbg.compute_weight_error({**dbg.create_weight_matching(str(float_path), str(qdq_path)),
                                                **dbg.create_weight_matching(prepared, str(qdq_path))})
            graph = onnx.load(str(qdq_path)).graph
    except Exception as exc:
        raise EdgeliteError(f"ONNX layer report failed: {one_line(exc)}") from None
    dq, q_in = "_DequantizeLinear_Output", "_QuantizeLinear_Input"
    order = {out: (i, node) for i, node in enumerate(graph.node) for out in node.output}
    rows = []
    for name, error in errors.items():
        # a graph output keeps its name after the QDQ pair: the real producer writes name + q_in
        index, node = order.get(name + q_in) or order.get(name) or (None, None)
        if node is None:
            continue
        weight = [weights[i[: -len(dq)]] for i in node.input if i.endswith(dq) and i[: -len(dq)] in weights]
        rows.append((index, {"layer": name, "node": node.name, "op": node.op_type,
                             "sqnr_db": float(error["xmodel_err"]),
                             "weight_sqnr_db": float(min(weight)) if weight else None}))
    return [row for _, row in sorted(rows, key=lambda r: r[0])]


def _int8_converter(keras_model, calibration: Callable[[], Iterable[np.ndarray]], fallback: bool):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(x, np.float32)] for x in calibration())
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + ([tf.lite.OpsSet.TFLITE_BUILTINS] if fallback else [])
    converter.target_spec.supported_ops = ops
    return converter


def tflite_layer_report(keras_model, calibration: Callable[[], Iterable[np.ndarray]], inputs: np.ndarray,
                        io_type: str) -> list[dict]:
    """One row per quantized layer of the full-int8 TFLite model, in execution order: TF's
    recipe (range, rmse/scale) and an SQNR from the layer's float signal power over its MSE.
    The error is per layer (float and int8 op fed the same input), as the debugger measures it.
    `io_type` does not change the body's quantization and is accepted for symmetry."""
    import tensorflow as tf

    def data():
        return ([np.asarray(x, np.float32)[None]] for x in inputs)

    power = {"signal_power": lambda f, q, scale, zp: float(np.mean(np.square(f, dtype=np.float64)))}
    try:
        with _silent():
            calibrated = tf.lite.experimental.QuantizationDebugger(
                converter=_int8_converter(keras_model, calibration, fallback=False), debug_dataset=data)
            # reading the float tensors needs an interpreter that keeps them, which only
            # the from-content constructor makes
            debugger = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=calibrated.get_debug_quantized_model(), debug_dataset=data,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=power))
            debugger.run()
            table = io.StringIO()
            debugger.layer_statistics_dump(table)
    except Exception as exc:
        raise EdgeliteError(f"TFLite layer report failed: {one_line(exc, last=True)}") from None
    rows = []
    for row in csv.DictReader(io.StringIO(table.getvalue())):
        scale, mse, signal = float(row["scale"]), float(row["mean_squared_error"]), float(row["signal_power"])
        sqnr = 10 * math.log10(signal / mse) if mse > 0 and signal > 0 else (math.inf if signal > 0 else None)
        rows.append({"layer": row["tensor_name"], "node": row["tensor_name"], "op": row["op_name"],
                     "rmse_scale": math.sqrt(mse) / scale if scale else None, "mean_error": float(row["mean_error"]),
                     "scale": scale, "range": 255.0 * scale, "sqnr_db": sqnr})
    return rows


def tflite_with_fallback(keras_model, calibration: Callable[[], Iterable[np.ndarray]],
                         denylisted_nodes: list[str], io_type: str) -> bytes:
    """Full int8 TFLite with the given layers (output tensor names, as tflite_layer_report's
    `node`) kept in float. When the first or last layer is kept in float, that end of the
    model stays float32 whatever `io_type` says (the runtime reads the input details)."""
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    from .tflite import io_dtype as tf_io_dtype

    io = tf_io_dtype(io_type)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylisted_nodes))
    try:
        with _silent():
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=_int8_converter(keras_model, calibration, fallback=True), debug_options=options,
                debug_dataset=lambda: iter(()))
            model = debugger.get_nondebug_quantized_model()
            return bytes(modify_model_io_type(model, io, io))
    except Exception as exc:
        raise EdgeliteError(f"TFLite int8 with float fallback failed: {one_line(exc, last=True)}") from None


def fallback_search(layers: list[dict], evaluate: Callable[..., float], gate: float, key: str,
                    max_layers: int = 8, methods: Sequence[str] = ()) -> dict:
    """The cheapest change that reaches `gate`: first another calibration method (`evaluate([], method)`),
    then the worst 1, 2, 4, 8... layers (by `key`) kept in float (`evaluate(names)`; agreement 0..1).
    When none passes, the best try is returned."""
    names = [r["node"] for r in worst_first(layers, key)]
    sizes, n = [], 1
    while n < min(max_layers, len(names)):
        sizes.append(n)
        n *= 2
    if names and max_layers > 0:
        sizes.append(min(max_layers, len(names)))
    plans = [([], method) for method in methods] + [(names[:size], None) for size in sizes]
    tries, best = [], None
    for excluded, method in plans:
        attempt = {"excluded": len(excluded), **({"method": method} if method else {})}
        try:
            agreement = float(evaluate(excluded, method) if method else evaluate(excluded))
        except EdgeliteError as exc:
            tries.append({**attempt, "agreement": None, "error": str(exc)})
            continue
        tries.append({**attempt, "agreement": agreement})
        found = {"excluded": excluded, "agreement": agreement, **({"method": method} if method else {})}
        if best is None or agreement > best["agreement"]:
            best = found
        if agreement >= gate:
            return {**found, "tries": tries, "passed": True}
    return {**(best or {"excluded": [], "agreement": None}), "tries": tries, "passed": False}


def write_report(layers: list[dict], path_stem: Path, title: str, key: str) -> dict[str, Path]:
    """<stem>.layers.json, and <stem>.layers.png (error per layer in graph order, the worst 5 in
    red and labelled with their position and op) when matplotlib is installed."""
    path_stem = Path(path_stem)
    written = {"json": write_json(path_stem.with_name(path_stem.name + ".layers.json"), layers)}
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg
    except ImportError:
        return written
    values = [r[key] if r.get(key) is not None and math.isfinite(r[key]) else np.nan for r in layers]
    position = {id(r): i for i, r in enumerate(layers)}
    fig = Figure(figsize=(max(6.0, 0.12 * len(layers)), 4))
    ax = fig.subplots()
    worst = [position[id(r)] for r in worst_first(layers, key) if math.isfinite(r[key])][:5]
    colours = ["tab:red" if i in worst else "tab:blue" for i in range(len(layers))]
    ax.bar(range(len(values)), values, color=colours)
    for i in worst:  # short labels that fit; the table and the JSON give the full names
        ax.annotate(f"#{i} {layers[i]['op']}", (i, values[i]), fontsize=7, color="tab:red", ha="center", rotation=90,
                    va="bottom", xytext=(0, 2), textcoords="offset points")
    ax.margins(y=0.2)
    ax.set(title=title, xlabel="layer (graph order)", ylabel=key)
    fig.tight_layout()
    written["png"] = write_figure(fig, path_stem.with_name(path_stem.name + ".layers.png"))
    return written
