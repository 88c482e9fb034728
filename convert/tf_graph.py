"""The graph we hand tf2onnx: a Keras model's inference call frozen into one plain TensorFlow GraphDef.

`tf2onnx.convert.from_function` fails on several keras.applications families, for reasons in the traced
function rather than in the model:

* tensors the function captures that are not variables (the `mean`/`variance` a Keras 3 `Normalization`
  layer keeps as plain tensors: EfficientNet, ConvNeXt) are listed by tf2onnx as model inputs although
  freezing made them constants ("Required inputs ['.../normalization/Sub/y:0'] are missing from input feed");
* Keras 3 runs a grouped convolution on CPU as an XLA function (`_conv_xla`, jit_compile, `_noinline`) that
  grappler does not inline, which leaves `StatefulPartitionedCall` nodes no ONNX runtime can run (ConvNeXt's
  depthwise convolutions);
* exact GELU is `Erfc`, which tf2onnx has no handler for (ConvNeXt): it becomes 1 - Erf(x).

So the function is frozen here (variables and captured tensors as constants), those calls are made inlinable,
Erfc is rewritten, and tf2onnx gets the GraphDef with exactly one input, named "input", and one output.
"""
from __future__ import annotations

INPUT = "input"


def frozen_graph(model, shape: tuple):
    """(GraphDef, input tensor name, output tensor name) of `model(input, training=False)` for float input of
    `shape` (batch axis None)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    signature = [tf.TensorSpec(shape, tf.float32, name=INPUT)]
    function = tf.function(lambda input: model(input, training=False), input_signature=signature)
    concrete = function.get_concrete_function(*signature)
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs if t.dtype != tf.resource]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"expected one input and one output after freezing, found {inputs} and {outputs}")
    _inlinable(graph_def)
    _erfc_as_erf(graph_def)
    return graph_def, inputs[0], outputs[0]


def _inlinable(graph_def) -> None:
    """Let grappler inline every function call: drop `_noinline` from the library's functions and the XLA
    compile marks from them and from the calls (they only ask XLA to compile the body: same arithmetic)."""
    marks = ("_noinline", "_XlaMustCompile")
    for function in graph_def.library.function:
        for mark in marks:
            if mark in function.attr:
                del function.attr[mark]
    for node in list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]:
        for mark in marks:
            if mark in node.attr:
                del node.attr[mark]


def _erfc_as_erf(graph_def) -> None:
    """Every Erfc(x) node becomes 1 - Erf(x) under the same name (tf2onnx converts Erf, not Erfc)."""
    import tensorflow as tf

    added = []
    for node in [n for n in graph_def.node if n.op == "Erfc"]:
        dtype = tf.dtypes.as_dtype(node.attr["T"].type)
        erf, one = graph_def.node.add(), graph_def.node.add()
        erf.CopyFrom(node)
        erf.name, erf.op = f"{node.name}/erf", "Erf"
        one.name, one.op = f"{node.name}/one", "Const"
        one.attr["dtype"].type = node.attr["T"].type
        one.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(1.0, dtype=dtype))
        added.append((node, erf.name, one.name))
    for node, erf, one in added:
        del node.input[:]
        node.input.extend([one, erf])
        node.op = "Sub"
