"""int8 files whose logits come out in float: the last weighted layer still multiplies int8 by int8, but its sums
are not rounded to an int8 output (issue 30 point 4).

An int8 logits tensor has 256 levels: on the shared MobileNetV2 one step is about 0.1 logit, so two classes whose
logits are closer than that tie exactly or swap, and a tie is broken by class index. Edited after quantization
(and after bias correction), the file keeps its size and int8 layers:

- TFLite: a DEQUANTIZE of the last weighted op's int8 input, then that op as a hybrid kernel (int8 weights, its
  input quantized on the fly per row, asymmetrically, float32 output; the bias in float), and the ops after it
  (RESHAPE, SQUEEZE) in float. XNNPACK and the builtin kernels both have hybrid FULLY_CONNECTED and CONV_2D.
- ONNX (QDQ): the QuantizeLinear/DequantizeLinear pairs between the last MatMul/Gemm/Conv and the output are
  removed, and a bias Add there gets the float model's bias back (the quantizer stored it as a uint8 activation).

Each returns why it left a model alone, or None when it edited it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .tflite_model import CONV_2D, FLOAT32, FULLY_CONNECTED, INT8, INT32, pack, unpack

DEQUANTIZE, RESHAPE, SQUEEZE = 6, 22, 43  # BuiltinOperator codes
TFLITE_TAIL = (RESHAPE, SQUEEZE)  # ops after the last weighted one that only move values
ONNX_TAIL = ("QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Squeeze", "Add")
ONNX_WEIGHTED = ("MatMul", "Gemm", "Conv")


def tflite_float_logits(data: bytes) -> tuple[bytes, str | None]:
    """The model with its last weighted op hybrid and its output float32, or (the model, why not)."""
    schema, model = unpack(data)
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    if len(graph.outputs) != 1:
        return data, "not one output"
    producer = {out: i for i, op in enumerate(graph.operators) for out in op.outputs}
    tail, index = [], producer.get(graph.outputs[0])
    while index is not None and codes[graph.operators[index].opcodeIndex] in TFLITE_TAIL:
        tail.append(graph.operators[index])
        index = producer.get(graph.operators[index].inputs[0])
    if index is None or codes[graph.operators[index].opcodeIndex] not in (FULLY_CONNECTED, CONV_2D):
        return data, "the output does not come from a FULLY_CONNECTED or CONV_2D"
    op = graph.operators[index]
    x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    bias = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    out = graph.tensors[op.outputs[0]]
    if x.type != INT8 or w.type != INT8 or out.type != INT8 or (bias is not None and bias.type != INT32):
        return data, "the last weighted op is not int8"
    uses = [i for other in graph.operators for i in other.inputs]
    if bias is not None and uses.count(op.inputs[2]) != 1:
        return data, "its bias is shared"
    if codes.count(DEQUANTIZE) == 0:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = DEQUANTIZE
        code.version = 2
        model.operatorCodes.append(code)
        codes.append(DEQUANTIZE)
    floated = schema.TensorT()  # the op's input in float, from a DEQUANTIZE
    floated.shape, floated.type = list(x.shape), FLOAT32
    floated.name = (x.name if isinstance(x.name, bytes) else str(x.name).encode()) + b"/float"
    model.buffers.append(schema.BufferT())
    floated.buffer = len(model.buffers) - 1
    graph.tensors.append(floated)
    dequantize = schema.OperatorT()
    dequantize.opcodeIndex, dequantize.inputs, dequantize.outputs = codes.index(DEQUANTIZE), [op.inputs[0]], \
        [len(graph.tensors) - 1]
    graph.operators.insert(index, dequantize)
    op.inputs = [len(graph.tensors) - 1, *op.inputs[1:]]
    if bias is not None:  # int32 under scale in * w (per channel) -> float32
        buffer = model.buffers[bias.buffer]
        scale = float(x.quantization.scale[0]) * np.asarray(w.quantization.scale, np.float64)
        buffer.data = (np.frombuffer(buffer.data.tobytes(), np.int32) * scale).astype(np.float32).view(np.uint8)
        bias.type, bias.quantization = FLOAT32, None
    for tensor in [out, *(graph.tensors[t.outputs[0]] for t in tail)]:
        tensor.type, tensor.quantization = FLOAT32, None
    if hasattr(op.builtinOptions, "asymmetricQuantizeInputs"):
        op.builtinOptions.asymmetricQuantizeInputs = True  # the input's own range per row, all 256 levels
    return pack(model, len(data) + 4096), None


def onnx_float_logits(path: Path, float_model: Path) -> str | None:
    """Edit a QDQ model in place so that its last MatMul/Gemm/Conv's output reaches the graph output in float
    (with the bias of an Add on the way as `float_model` has it, same node names); None, or why not."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    if len(graph.output) != 1:
        return "not one output"
    producer = {out: n for n in graph.node for out in n.output}
    path_nodes, node = [], producer.get(graph.output[0].name)
    while node is not None and node.op_type in ONNX_TAIL:
        path_nodes.append(node)
        node = producer.get(node.input[0])
    if node is None or node.op_type not in ONNX_WEIGHTED:
        return "the output does not come from a MatMul, Gemm or Conv"
    if not any(n.op_type == "QuantizeLinear" for n in path_nodes):
        return "its output is float already"
    consumers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            consumers[name] = consumers.get(name, 0) + 1
    inits = {i.name for i in graph.initializer}
    float_nodes = {n.name: n for n in onnx.load(str(float_model)).graph.node}
    float_inits = {i.name: i for i in onnx.load(str(float_model)).graph.initializer}
    renamed, removed = {}, set()
    for n in path_nodes:  # Q -> DQ pairs on the path go; what read the DQ's output reads the Q's input
        if n.op_type == "DequantizeLinear" and producer.get(n.input[0]) is not None \
                and producer[n.input[0]].op_type == "QuantizeLinear" and consumers.get(n.input[0]) == 1:
            q = producer[n.input[0]]
            removed.update((id(n), id(q)))
            renamed[n.output[0]] = q.input[0]
    for n in path_nodes:
        if n.op_type == "Add" and id(n) not in removed:
            twin = float_nodes.get(n.name)
            constant = [i for i in (twin.input if twin is not None else []) if i in float_inits]
            if len(constant) != 1:
                return f"its Add {n.name!r} has no float bias to take back"
            for k, name in enumerate(n.input):
                source = producer.get(name)
                if source is not None and source.op_type == "DequantizeLinear" and source.input[0] in inits:
                    value = numpy_helper.to_array(float_inits[constant[0]])
                    graph.initializer.append(numpy_helper.from_array(value, f"{n.name}/float_bias"))
                    n.input[k] = f"{n.name}/float_bias"
    output = graph.output[0].name
    kept = [n for n in graph.node if id(n) not in removed]
    for n in kept:
        for k, name in enumerate(n.input):
            while name in renamed:
                name = renamed[name]
            n.input[k] = name
    last = renamed.get(output)
    while last in renamed:
        last = renamed[last]
    if last is not None:  # the output itself was a removed DQ's: its producer writes the output's name
        for n in kept:
            for k, name in enumerate(n.output):
                if name == last:
                    n.output[k] = output
            for k, name in enumerate(n.input):
                if name == last:
                    n.input[k] = output
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in graph.node for name in n.input}
    unused = [i for i in graph.initializer if i.name not in used]
    for i in unused:
        graph.initializer.remove(i)
    onnx.save(model, str(path))
    return None
