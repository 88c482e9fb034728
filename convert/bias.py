"""Bias correction for int8 exports: the mean output error of the quantized layers taken out of their biases.

Rounding a convolution's weights to int8 moves each output channel's mean by sum(dw * E[x]): small
per weight, but a 3x3 depthwise kernel whose weights nearly cancel (an edge detector, after
BatchNorm folding) loses a large share of its signal, and MobileNets stack many. A legacy Keras-2
MobileNet v1 0.25 agreed with Keras on 74 % of top-1s with int8 weights alone; with every layer
int8, 69.6 % and -6.4 pt top-1, and 88.8 % at the float model's top-1 once corrected. This is the
empirical bias correction of Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction" (NNCF and AIMET apply it by default): layer by layer, the quantized model's
mean output per channel over calibration images is brought to the float model's.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .tflite_model import DEPTHWISE_CONV_2D, FULLY_CONNECTED, TENSOR_TYPES, pack, unpack, weighted_ops

INT32 = np.iinfo(np.int32)


def shifted(bias_q: np.ndarray, scale: np.ndarray, error: np.ndarray) -> np.ndarray:
    """An int32 bias with `error` (real units) taken out, under its own per-channel scale."""
    return np.clip(np.round(bias_q - error / scale), INT32.min, INT32.max).astype(np.int32)


def correct_onnx(prepared: Path, quantized: Path, calibration: Callable[[], Iterable[np.ndarray]],
                 images: int = 32) -> tuple[int, dict]:
    """Correct, in place, the int32 bias of each Conv of an onnxruntime QDQ model, in graph order: the
    mean of its output over `images` calibration images, computed with the quantized model (already
    corrected upstream), is brought to the float model's. `prepared` is the float model it was
    quantized from (same node names). Returns how many Convs were corrected and {why a Conv was not: how many}.

    Measured segment by segment (`_Stepper`): about one pass of the model over the images in all, where a
    session per Conv ran the whole model again for each (MobileNetV2: 5 s of CPU against 55 s, the same
    biases to the last bit). Correcting every Conv from one measurement instead diverges: most of a Conv's
    mean error is inherited from the Convs before it."""
    import onnx
    from onnx import numpy_helper

    float_model, model = onnx.load(str(prepared)), onnx.load(str(quantized))
    float_nodes = {n.name: n for n in float_model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    targets, skipped = [], {}  # (quantized Conv's output, float Conv's output, bias initializer, its scale)
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):  # counted, so that the record says what was left alone
            why = f"{node.op_type}: only Conv biases are corrected"
            skipped[why] = skipped.get(why, 0) + 1
        if node.op_type != "Conv":
            continue
        bias = producer.get(node.input[2]) if len(node.input) > 2 else None
        if (bias is None or bias.op_type != "DequantizeLinear" or node.name not in float_nodes
                or any(i not in inits for i in bias.input[:2])
                or inits[bias.input[0]].data_type != onnx.TensorProto.INT32):
            why = "no int32 bias (left in float, or none)"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        targets.append((node.output[0], float_nodes[node.name].output[0], bias.input[0],
                        numpy_helper.to_array(inits[bias.input[1]])))
    if not targets:
        return 0, skipped
    batches = list(itertools.islice(calibration(), images))
    # conv outputs before any activation: onnxruntime's QDQ drops a Relu/Clip that the quantization range covers
    reference = _channel_means(float_model, [t[1] for t in targets], batches)
    stepper = _Stepper(model, batches)  # a Conv's mean is measured after every Conv before it is corrected
    for output, float_output, bias_name, scale in targets:
        error = stepper.channel_means(output) - reference[float_output]
        bias_q = numpy_helper.to_array(inits[bias_name])
        inits[bias_name].CopyFrom(numpy_helper.from_array(shifted(bias_q, scale, error), bias_name))
    onnx.save(model, str(quantized))
    return len(targets), skipped


class _Stepper:
    """Runs a model's graph in topological segments over a fixed set of batches, keeping the activations a
    later segment reads, so that measuring layer after layer, each with the parameters of every layer before
    it final, costs about one pass over the model instead of one pass per layer.

    `channel_means(tensor)` runs the nodes from where the last segment ended (the producer of the tensor last
    measured, included: its parameters may have changed since) up to the tensor's producer, and returns the
    tensor's per-channel (axis 1) mean. Nodes whose inputs are all constants (the DequantizeLinear of a
    weight or a bias) run inside each segment that reads them, so a changed initializer is always seen.
    Parameters may change only for nodes from the last measured producer on."""

    def __init__(self, model, batches: list[np.ndarray]):
        import onnx

        self.model, self.batches = model, batches
        inferred = onnx.shape_inference.infer_shapes(model).graph
        self.inferred = {v.name: v for v in [*inferred.value_info, *inferred.output]}  # the tensors' types
        graph = model.graph
        self.inits = {i.name: i for i in graph.initializer}
        constant = set(self.inits)
        self.nodes = []  # (index, node) of the nodes that compute on activations, in graph order
        self.constant_nodes = {}  # output -> node, for nodes of constants only
        for node in graph.node:
            if all(not i or i in constant for i in node.input):
                constant.update(node.output)
                for out in node.output:
                    self.constant_nodes[out] = node
            else:
                self.nodes.append(node)
        self.position = {out: i for i, node in enumerate(self.nodes) for out in node.output}
        self.last_use = {}
        for i, node in enumerate(self.nodes):
            for name in node.input:
                self.last_use[name] = i
        for out in graph.output:
            self.last_use[out.name] = len(self.nodes)
        self.start = 0  # the first node of the next segment
        self.feed = graph.input[0].name
        self.cache = {self.feed: [np.asarray(b, np.float32) for b in batches]}

    def channel_means(self, tensor: str) -> np.ndarray:
        import onnx
        import onnxruntime as ort

        end = self.position[tensor]
        segment = self.nodes[self.start:end + 1]
        produced = {out for node in segment for out in node.output}
        constants, needed = [], [i for node in segment for i in node.input if i]
        seen = set()
        while needed:  # the constant nodes (and initializers) the segment reads, transitively
            name = needed.pop()
            if name in seen or name in produced:
                continue
            seen.add(name)
            if name in self.constant_nodes:
                constants.append(self.constant_nodes[name])
                needed.extend(i for i in self.constant_nodes[name].input if i)
        order = {id(n): i for i, n in enumerate(self.model.graph.node)}
        constants = sorted({id(n): n for n in constants}.values(), key=lambda n: order[id(n)])
        inputs = [name for name in dict.fromkeys(i for node in segment for i in node.input if i)
                  if name not in produced and name not in self.constant_nodes and name not in self.inits]
        keep = [out for out in dict.fromkeys(o for node in segment for o in node.output)
                if self.last_use.get(out, -1) >= end]
        outputs = list(dict.fromkeys([tensor, *keep]))
        graph = onnx.helper.make_graph(
            constants + segment, "segment",
            [self._info(name, self.cache[name][0].dtype) for name in inputs],
            [self.inferred.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
             for name in outputs],
            [self.inits[name] for name in seen if name in self.inits])
        part = onnx.helper.make_model(graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        options = ort.SessionOptions()  # QDQ evaluated as written: exact integers, on every CPU alike
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        session = ort.InferenceSession(part.SerializeToString(), options, providers=["CPUExecutionProvider"])
        results = [session.run(outputs, {name: self.cache[name][b] for name in inputs})
                   for b in range(len(self.batches))]
        for k, name in enumerate(outputs):
            self.cache[name] = [r[k] for r in results]
        # the next segment starts again at this tensor's producer (its bias is about to change): keep what it reads
        self.start = end
        for name in [n for n in self.cache if self.last_use.get(n, -1) < end and n != self.feed]:
            del self.cache[name]
        total = sum(r[0].astype(np.float64).mean(axis=tuple(a for a in range(r[0].ndim) if a != 1)) * len(b)
                    for r, b in zip(results, self.batches))
        return total / sum(len(b) for b in self.batches)

    def _info(self, name: str, dtype):
        import onnx

        return onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(dtype), None)


def _channel_means(model, tensors: list[str], batches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel (axis 1) means of a model's float tensors over the batches."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for name in tensors:
        exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()  # QDQ evaluated as written: exact integers, on every CPU alike
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    sums: dict[str, np.ndarray] = {}
    for batch in batches:
        for name, value in zip(tensors, session.run(tensors, {feed: batch})):
            axes = tuple(a for a in range(value.ndim) if a != 1)
            sums[name] = sums.get(name, 0) + value.astype(np.float64).mean(axis=axes) * len(batch)
    count = sum(len(b) for b in batches)
    return {name: total / count for name, total in sums.items()}


def input_means(float_tflite: bytes, calibration: Callable[[], Iterable[np.ndarray]]) -> dict[int, np.ndarray]:
    """E[x_c] of every weighted op's input in the float TFLite model over the calibration batches, by
    tensor index: what `correct_tflite` needs, measured once however many int8 models are corrected."""
    from ai_edge_litert.interpreter import Interpreter

    _, fmodel = unpack(float_tflite)
    interpreter = Interpreter(model_content=float_tflite, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    feed, sums, count = interpreter.get_input_details()[0]["index"], {}, 0
    for count, x in enumerate(calibration(), 1):
        interpreter.set_tensor(feed, np.asarray(x, np.float32))
        interpreter.invoke()
        for op, kind in weighted_ops(fmodel):  # FULLY_CONNECTED flattens its input to [-1, I]
            act = interpreter.get_tensor(op.inputs[0])
            width = fmodel.subgraphs[0].tensors[op.inputs[1]].shape[-1] if kind == FULLY_CONNECTED else act.shape[-1]
            sums[op.inputs[0]] = sums.get(op.inputs[0], 0) + act.reshape(-1, width).mean(0)
    return {index: total / count for index, total in sums.items()}


def correct_tflite(quantized: bytes, float_tflite: bytes, means: dict[int, np.ndarray]) -> tuple[bytes, int, dict]:
    """The quantized model with the bias of each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose weights are
    int8 shifted by the mean error those weights cause, sum(dw * E[x]), how many biases changed, and {why a
    weighted op's bias did not change: how many} (the metadata says why a count is low: the shared MobileNetV2's
    weights are on the int8 grid already, so its 53 ops have no weight error to correct). Full int8
    models have int32 biases (shifted under their own scale); dynamic-range models float32 ones, beside int8
    weights that their hybrid kernels apply to inputs quantized on the fly (ops left with float weights are
    left alone).

    TFLite fuses the activation into each op, so the layer-by-layer measurement of `correct_onnx`
    would see clipped outputs; here E[x_c] is the mean of the op's float input over the calibration
    batches (`means`, from `input_means(float_tflite, ...)`), measured on `float_tflite`: the same Keras
    model converted without quantization, BatchNorm folded alike, so its weighted ops are the quantized
    model's, in the same order. An op whose weights differ in shape from its float twin, or whose bias
    buffer is not its own, is left alone. Only bias buffers change; metadata and signatures are carried
    over by the object API.
    """
    _, qmodel = unpack(quantized)
    _, fmodel = unpack(float_tflite)

    def constant(model, index, dtype):  # a constant tensor's value, None if it has none or another type
        tensor = model.subgraphs[0].tensors[index]
        data = model.buffers[tensor.buffer].data
        if data is None or len(data) == 0 or tensor.type != TENSOR_TYPES[dtype]:
            return None
        return np.frombuffer(data.tobytes(), dtype).reshape(tensor.shape)

    qops, fops = weighted_ops(qmodel), weighted_ops(fmodel)
    if len(qops) != len(fops):
        return quantized, 0, {"the int8 and float models' weighted ops differ in number": len(qops)}
    # a bias is edited only if no other tensor (any subgraph) shares its buffer and no other op reads it
    buffer_uses = np.bincount([t.buffer for g in qmodel.subgraphs for t in g.tensors], minlength=len(qmodel.buffers))
    tensor_uses = np.bincount([i for op in qmodel.subgraphs[0].operators for i in op.inputs if i >= 0],
                              minlength=len(qmodel.subgraphs[0].tensors))

    corrected, skipped = 0, {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for (qop, kind), (fop, _) in zip(qops, fops):
        w_int = constant(qmodel, qop.inputs[1], np.int8)
        w = constant(fmodel, fop.inputs[1], np.float32)
        bias_index = qop.inputs[2] if len(qop.inputs) > 2 else -1
        if w_int is None or w is None or w_int.shape != w.shape:
            skip("weights not int8 here or not float there")
            continue
        if bias_index < 0:
            skip("no bias")
            continue
        bias_tensor = qmodel.subgraphs[0].tensors[bias_index]
        b = constant(qmodel, bias_index, np.int32)
        if b is None:
            b = constant(qmodel, bias_index, np.float32)  # dynamic range
        if b is None or buffer_uses[bias_tensor.buffer] != 1 or tensor_uses[bias_index] != 1:
            skip("bias shared or not constant")
            continue
        wq = qmodel.subgraphs[0].tensors[qop.inputs[1]].quantization
        if wq is None or wq.scale is None or np.any(wq.zeroPoint):
            skip("weights not symmetric int8")
            continue
        shape = [1] * w.ndim
        shape[wq.quantizedDimension] = -1
        d = w_int * np.asarray(wq.scale, np.float32).reshape(shape) - w  # weight error, TFLite layout
        mean = means[fop.inputs[0]]  # E[x_c]
        if (w.shape[-1] % mean.size) if kind == DEPTHWISE_CONV_2D else (w.shape[-1] != mean.size):
            skip("grouped convolution")
            continue
        if kind == DEPTHWISE_CONV_2D:  # [1, kh, kw, C*m]: output channel o reads input channel o // m
            error = d.sum(axis=(0, 1, 2)) * np.repeat(mean, d.shape[-1] // mean.size)
        else:  # CONV_2D [O, kh, kw, I] or FULLY_CONNECTED [O, I]
            error = d.reshape(d.shape[0], -1, mean.size).sum(1) @ mean
        if b.dtype == np.int32:
            new = shifted(b.astype(np.float64), np.asarray(bias_tensor.quantization.scale, np.float64), error)
        else:
            new = (b - error).astype(np.float32)
        qmodel.buffers[bias_tensor.buffer].data = new.view(np.uint8)
        if np.any(new != b):
            corrected += 1
        else:
            on_grid = np.all(np.abs(d) <= 1e-4 * np.asarray(wq.scale, np.float32).reshape(shape))
            skip("weights already on the int8 grid: no error to correct" if on_grid else "error below half a bias step")

    return pack(qmodel, len(quantized)), corrected, skipped
