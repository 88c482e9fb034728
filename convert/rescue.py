"""Per-layer quantization error reports (onnxruntime's qdq_loss_debug, TFLite's
QuantizationDebugger, and for TFLite dynamic range each layer's effect on the output) and the search for
the smallest float fallback that passes a gate."""
from __future__ import annotations

import contextlib
import csv
import io
import math
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgelite.errors import EdgeliteError, one_line
from edgelite.figures import write_figure
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


def tflite_layer_report(calibrated: bytes, inputs: np.ndarray, io_type: str = "int8") -> list[dict]:
    """One row per quantized layer of the full-int8 TFLite model made from `calibrated` (tflite.calibrate), in
    execution order: TF's recipe (range, rmse/scale) and an SQNR from the layer's float signal power over its
    MSE. The error is per layer (float and int8 op fed the same input), as QuantizationDebugger measures it.
    `io_type` does not change the body's quantization and is accepted for symmetry."""
    import tensorflow as tf

    from .tflite import quantize_calibrated

    def data():
        return ([np.asarray(x, np.float32)[None]] for x in inputs)

    power = {"signal_power": lambda f, q, scale, zp: float(np.mean(np.square(f, dtype=np.float64)))}
    try:
        with _silent():
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
        sqnr = 10 * math.log10(signal / mse) if mse > 0 and signal > 0 else (math.inf if signal > 0 else None)
        rows.append({"layer": row["tensor_name"], "node": row["tensor_name"], "op": row["op_name"],
                     "rmse_scale": math.sqrt(mse) / scale if scale else None, "mean_error": float(row["mean_error"]),
                     "scale": scale, "range": 255.0 * scale, "sqnr_db": sqnr})
    return rows


_OP_NAMES = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}
_FLOAT32, _INT8 = 0, 9  # TFLite TensorType codes


class DynamicLayers:
    """The weight-quantized layers of a TFLite dynamic-range model, each of which can be put back in float.

    QuantizationDebugger and the converter's denylists work on calibrated (full-integer) models only, and
    dynamic-range quantization is decided inside the conversion. It is also simple: a CONV_2D,
    DEPTHWISE_CONV_2D or FULLY_CONNECTED with int8 weights runs as a hybrid kernel (its float input quantized
    on the fly), the same op with float32 weights as a float one. So a layer is kept in float by giving it
    back the float weights of the float conversion of the same Keras model (`float_tflite`: the weighted ops
    in the same order and shapes, as convert/bias.py relies on too): no new conversion, milliseconds.
    Layers are named by their output tensor, as TFLite's QuantizationDebugger names them. Weights the converter
    left in float (fewer than 1024) or feeds through a DEQUANTIZE op (no hybrid kernel) are not listed.
    """

    def __init__(self, dynamic: bytes, float_tflite: bytes):
        from .bias import weighted_ops
        from .tflite import unpack

        self.size = len(dynamic)
        _, self.model = unpack(dynamic)
        _, fmodel = unpack(float_tflite)
        ops, fops = weighted_ops(self.model), weighted_ops(fmodel)
        if len(ops) != len(fops):
            raise EdgeliteError("TFLite dynamic range: its weighted layers do not match the float model's")
        graph, fgraph = self.model.subgraphs[0], fmodel.subgraphs[0]
        uses = np.bincount([t.buffer for g in self.model.subgraphs for t in g.tensors],
                           minlength=len(self.model.buffers))
        self.layers = {}  # output tensor name -> (op kind, weight tensor, its int8 state, float weights)
        for (op, kind), (fop, _) in zip(ops, fops):
            tensor, ftensor = graph.tensors[op.inputs[1]], fgraph.tensors[fop.inputs[1]]
            data, fdata = self.model.buffers[tensor.buffer].data, fmodel.buffers[ftensor.buffer].data
            if (tensor.type != _INT8 or ftensor.type != _FLOAT32 or data is None or fdata is None
                    or list(tensor.shape) != list(ftensor.shape) or uses[tensor.buffer] != 1):
                continue  # left in float by the converter (small weights), or not its own buffer
            name = graph.tensors[op.outputs[0]].name
            name = name.decode() if isinstance(name, bytes) else name
            weights = np.frombuffer(bytes(fdata), np.float32).reshape(ftensor.shape)
            self.layers[name] = (kind, tensor, (data, tensor.quantization), weights)

    def rows(self) -> list[dict]:
        """One row per weight-quantized layer, in execution order: op, weight count and the SQNR of its
        int8 weights (what rounding alone does)."""
        rows = []
        for name, (kind, tensor, (data, quantization), weights) in self.layers.items():
            shape = [1] * weights.ndim
            shape[quantization.quantizedDimension] = -1
            scale = np.asarray(quantization.scale, np.float32).reshape(shape) if len(quantization.scale) > 1 \
                else np.float32(quantization.scale[0])
            rounded = np.frombuffer(bytes(data), np.int8).reshape(weights.shape) * scale
            noise = float(np.sum(np.square(rounded - weights, dtype=np.float64)))
            signal = float(np.sum(np.square(weights, dtype=np.float64)))
            rows.append({"layer": name, "node": name, "op": _OP_NAMES[kind], "weights": int(weights.size),
                         "weight_sqnr_db": _db(signal, noise)})
        return rows

    def with_float(self, names: Sequence[str]) -> bytes:
        """The model with the named layers' weights in float32; the others stay int8."""
        from .tflite import pack

        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise EdgeliteError(f"TFLite dynamic range: no weight-quantized layer {unknown[0]!r}")
        try:
            for name in names:
                _, tensor, _, weights = self.layers[name]
                tensor.type, tensor.quantization = _FLOAT32, None
                self.model.buffers[tensor.buffer].data = weights.view(np.uint8).reshape(-1)
            return pack(self.model, self.size + 4 * sum(self.layers[n][3].size for n in names))
        finally:
            for name in names:  # back to int8: the object is reused for the next try
                _, tensor, (data, quantization), _ = self.layers[name]
                tensor.type, tensor.quantization = _INT8, quantization
                self.model.buffers[tensor.buffer].data = data


def float_depthwise(dynamic: bytes, float_tflite: bytes) -> tuple[bytes, int]:
    """A dynamic-range model with its depthwise convolutions' weights back in float32, and how many.

    XNNPACK (LiteRT's default delegate, x86 and ARM) has hybrid kernels for CONV_2D and FULLY_CONNECTED but
    none for DEPTHWISE_CONV_2D: every int8-weight depthwise layer stays on TFLite's builtin kernels and cuts the
    graph into delegate partitions (MobileNetV2: 16 partitions, 12.7 ms on one thread, against 1 partition and
    3.6 ms with them in float, on AMD EPYC avx512_vnni; benchmarks/RESULTS.md). Depthwise weights are few (3x3
    per channel: 1.8 % more bytes for MobileNetV2) and the hardest to round, so float costs little and loses
    nothing. A model whose weighted layers do not pair with the float conversion's is returned as it is."""
    try:
        layers = DynamicLayers(dynamic, float_tflite)
    except EdgeliteError:
        return dynamic, 0
    names = [name for name, (kind, *_) in layers.layers.items() if _OP_NAMES[kind] == "DEPTHWISE_CONV_2D"]
    return (layers.with_float(names) if names else dynamic), len(names)


def _db(signal: float, noise: float) -> float | None:
    if signal <= 0:
        return None
    return 10 * math.log10(signal / noise) if noise > 0 else math.inf


def tflite_dynamic_layer_report(dynamic: bytes, float_tflite: bytes, inputs: np.ndarray) -> list[dict]:
    """One row per weight-quantized layer of a TFLite dynamic-range model, in execution order: the SQNR of
    the model's output on `inputs` when only that layer is quantized (`output_sqnr_db`: its own effect on the
    answer, weights and on-the-fly input quantization together, against the float model), and that of its
    int8 weights alone (`weight_sqnr_db`). One interpreter run of `inputs` per layer."""
    from ai_edge_litert.interpreter import Interpreter

    def outputs(content: bytes) -> np.ndarray:
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        feed, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        result = []
        for x in inputs:
            interpreter.set_tensor(feed, np.asarray(x, np.float32)[None])
            interpreter.invoke()
            result.append(np.array(interpreter.get_tensor(out), np.float64))
        return np.concatenate(result)

    try:
        with _silent():
            layers = DynamicLayers(dynamic, float_tflite)
            reference = outputs(float_tflite)
            signal = float(np.sum(np.square(reference)))
            rows = layers.rows()
            for row in rows:
                alone = layers.with_float([n for n in layers.layers if n != row["node"]])
                row["output_sqnr_db"] = _db(signal, float(np.sum(np.square(outputs(alone) - reference))))
    except EdgeliteError:
        raise
    except Exception as exc:
        raise EdgeliteError(f"TFLite dynamic-range layer report failed: {one_line(exc, last=True)}") from None
    return rows


def fallback_search(layers: list[dict], evaluate: Callable[..., float], gate: float, key: str,
                    max_layers: int = 8, methods: Sequence[str] = (), baseline: float | None = None,
                    refine: bool = False) -> dict:
    """The cheapest change that reaches `gate`: first another method (`evaluate([], method)`: a calibration
    method, bias correction), then the worst 1, 2, 4, 8... layers (by `key`) kept in float (`evaluate(names)`;
    agreement 0..1). With `baseline` (the plain export's agreement), the layers are kept in float on top of
    the best method when it beat the baseline (`evaluate(names, method)`). `refine` (for cheap tries) bisects
    between the last failing and the first passing count for fewer layers. When none passes, the best try is
    returned."""
    names = [r["node"] for r in worst_first(layers, key)]
    sizes, n = [], 1
    while n < min(max_layers, len(names)):
        sizes.append(n)
        n *= 2
    if names and max_layers > 0:
        sizes.append(min(max_layers, len(names)))
    tries, best = [], None

    def attempt(excluded: list[str], method: str | None) -> dict | None:
        nonlocal best
        record = {"excluded": len(excluded), **({"method": method} if method else {})}
        try:
            agreement = float(evaluate(excluded, method) if method else evaluate(excluded))
        except EdgeliteError as exc:
            tries.append({**record, "agreement": None, "error": str(exc)})
            return None
        tries.append({**record, "agreement": agreement})
        found = {"excluded": excluded, "agreement": agreement, **({"method": method} if method else {})}
        if best is None or agreement > best["agreement"]:
            best = found
        return found

    for method in methods:
        found = attempt([], method)
        if found and found["agreement"] >= gate:
            return {**found, "tries": tries, "passed": True}
    method = best.get("method") if best and baseline is not None and best["agreement"] > baseline else None
    failed = 0
    for size in sizes:
        found = attempt(names[:size], method)
        if found is None or found["agreement"] < gate:
            failed = size
            continue
        low, high = failed, size  # fails at `low` layers (or was not tried), passes at `high`
        while refine and high - low > 1:
            middle = (low + high) // 2
            trial = attempt(names[:middle], method)
            if trial is not None and trial["agreement"] >= gate:
                high, found = middle, trial
            else:
                low = middle
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
