"""The weight-quantized layers of a TFLite dynamic-range model: each one put back in float by editing the
file (no new conversion), the depthwise ones always (`float_depthwise`), and the ranker that rates each by the
model's output with only that layer quantized, for the rescue's search (fallback.py)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from edgelite.errors import EdgeliteError, one_line

from .layer_report import silent, sqnr_db
from .tflite_model import FLOAT32, INT8, OP_NAMES, pack, unpack, weighted_ops


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
            if (tensor.type != INT8 or ftensor.type != FLOAT32 or data is None or fdata is None
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
            rows.append({"layer": name, "node": name, "op": OP_NAMES[kind], "weights": int(weights.size),
                         "weight_sqnr_db": sqnr_db(signal, noise)})
        return rows

    def with_float(self, names: Sequence[str]) -> bytes:
        """The model with the named layers' weights in float32; the others stay int8."""
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise EdgeliteError(f"TFLite dynamic range: no weight-quantized layer {unknown[0]!r}")
        try:
            for name in names:
                _, tensor, _, weights = self.layers[name]
                tensor.type, tensor.quantization = FLOAT32, None
                self.model.buffers[tensor.buffer].data = weights.view(np.uint8).reshape(-1)
            return pack(self.model, self.size + 4 * sum(self.layers[n][3].size for n in names))
        finally:
            for name in names:  # back to int8: the object is reused for the next try
                _, tensor, (data, quantization), _ = self.layers[name]
                tensor.type, tensor.quantization = INT8, quantization
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
    names = [name for name, (kind, *_) in layers.layers.items() if OP_NAMES[kind] == "DEPTHWISE_CONV_2D"]
    return (layers.with_float(names) if names else dynamic), len(names)


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
        with silent():
            layers = DynamicLayers(dynamic, float_tflite)
            reference = outputs(float_tflite)
            signal = float(np.sum(np.square(reference)))
            rows = layers.rows()
            for row in rows:
                alone = layers.with_float([n for n in layers.layers if n != row["node"]])
                row["output_sqnr_db"] = sqnr_db(signal, float(np.sum(np.square(outputs(alone) - reference))))
    except EdgeliteError:
        raise
    except Exception as exc:
        raise EdgeliteError(f"TFLite dynamic-range layer report failed: {one_line(exc, last=True)}") from None
    return rows
