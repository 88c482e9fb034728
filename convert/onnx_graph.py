"""An ONNX image classifier rebuilt as a channels-last Keras model, weights transposed, so that every export
edgelite makes of a Keras model (TFLite in every flavour, ONNX through tf2onnx) is made of it unchanged, and a
channels-first source leaves no layout TRANSPOSE in the result.

Each ONNX tensor is held as a Keras tensor and the permutation `perm` that takes the ONNX tensor to it
(keras = onnx.transpose(perm)): an NCHW feature map is held as NHWC, perm (0, 2, 3, 1). A Transpose node only
changes `perm`; an operator with a layout (Conv, pooling, Concat's axis, Flatten's order) reads it. A flattened
map keeps Keras' (h, w, c) order, held as `cols` (keras column j is ONNX column cols[j]), and the next
Gemm/MatMul takes its weight rows in that order: no TRANSPOSE before the classifier head either.

The op set is what image classifiers from torch.onnx and tf2onnx use (OPS); anything else is one line naming
the operator and this route.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgelite.errors import EdgeliteError

NHWC = (0, 2, 3, 1)  # an NCHW tensor held channels-last
ROUTE = "the ONNX-to-Keras route (edgelite.convert.onnx_graph)"


@dataclass
class Value:
    tensor: object  # the Keras tensor
    perm: tuple | None = None  # keras = onnx.transpose(perm); None: the same layout
    cols: np.ndarray | None = None  # 2-D only: keras[:, j] = onnx[:, cols[j]]
    nonnegative: bool = False  # known >= 0 (after a ReLU): a max pool may pad it with zeros

    @property
    def rank(self) -> int:
        return len(self.tensor.shape)

    def onnx_shape(self) -> tuple:
        shape = tuple(self.tensor.shape)
        if self.perm is None:
            return shape
        out = [0] * len(shape)
        for keras_axis, onnx_axis in enumerate(self.perm):
            out[onnx_axis] = shape[keras_axis]
        return tuple(out)

    def keras_axis(self, onnx_axis: int) -> int:
        onnx_axis %= self.rank
        return onnx_axis if self.perm is None else self.perm.index(onnx_axis)


class Unsupported(EdgeliteError):
    pass


def attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class Rebuild:
    """Walks an ONNX graph (fixed input shape, optimised by onnxruntime's basic level: constants folded, BN
    fused into Conv where it follows one) and builds the Keras model."""

    def __init__(self, model, layout: str, name: str):
        import keras
        from onnx import numpy_helper

        self.keras, self.graph, self.name = keras, model.graph, name
        self.constants = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.values: dict[str, Value] = {}
        self.layers = 0
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name_in in node.input:
                self.consumers.setdefault(name_in, []).append(node)
        self.skip: set[str] = set()  # nodes another handler has done
        self.alias: dict[str, list[str]] = {}  # a tensor -> the skipped nodes' outputs that are it
        self.layout = layout

    # -- helpers ------------------------------------------------------------------------------------------
    def unsupported(self, node, why: str = "") -> Unsupported:
        return Unsupported(f"{self.name}: operator {node.op_type}{' ' + why if why else ''} (node {node.name!r}) "
                           f"is not supported by {ROUTE}")

    def layer_name(self, node, suffix: str = "") -> str:
        self.layers += 1
        base = "".join(c if c.isalnum() or c in "_-" else "_" for c in (node.name or node.op_type)).strip("_")
        return f"{base or node.op_type}{suffix}_{self.layers}"

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def lam(self, node, fn: Callable, inputs, suffix: str = ""):
        return self.keras.layers.Lambda(fn, name=self.layer_name(node, suffix))(inputs)

    def reshape(self, node, x, shape: tuple, suffix: str = ""):
        """x to [N, *shape] with a constant target (-1 for the batch): a Keras Reshape/Flatten reads the batch from
        the tensor's shape at run time, SHAPE/STRIDED_SLICE/PACK ops in TFLite that XNNPACK does not take (a
        partition either side)."""
        ops = self.keras.ops
        return self.lam(node, lambda t: ops.reshape(t, (-1, *shape)), x, suffix)

    def in_layout(self, node, value: Value, perm: tuple | None) -> object:
        """The value's Keras tensor laid out as ONNX-tensor.transpose(perm) (a TRANSPOSE only where it is not)."""
        have = value.perm or tuple(range(value.rank))
        want = perm or tuple(range(value.rank))
        if value.cols is not None:
            raise self.unsupported(node, "on a flattened feature map in channels-last order")
        if have == want:
            return value.tensor
        order = tuple(have.index(axis) for axis in want)
        ops = self.keras.ops
        return self.lam(node, lambda x: ops.transpose(x, order), value.tensor, "_transpose")

    def feature_map(self, node, index: int = 0) -> object:
        value = self.values[node.input[index]]
        if value.rank != 4:
            raise self.unsupported(node, f"on a {value.rank}-D tensor")
        return self.in_layout(node, value, NHWC)

    def constant_like(self, value: Value, c: np.ndarray) -> np.ndarray:
        """An ONNX constant operand broadcast against `value`, in the Keras tensor's layout."""
        c = np.asarray(c, np.float32)
        if c.ndim > value.rank:
            c = c.reshape(c.shape[c.ndim - value.rank:])
        c = c.reshape((1,) * (value.rank - c.ndim) + c.shape)
        if value.perm is not None:
            c = c.transpose(value.perm)
        if value.cols is not None and c.shape[-1] > 1:
            c = c[..., value.cols]
        return c

    # -- the walk -----------------------------------------------------------------------------------------
    def build(self, input_name: str, keras_shape: tuple, output_name: str):
        keras = self.keras
        inp = keras.Input(shape=keras_shape, name="input")
        self.values[input_name] = Value(inp, NHWC if self.layout == "NCHW" else None)
        needed = self.needed(output_name)
        for node in self.graph.node:
            if node.output[0] in self.skip or not any(o in needed for o in node.output):
                continue
            if node.domain not in ("", "ai.onnx"):
                raise self.unsupported(node, f"of domain {node.domain!r}")
            if all(i == "" or i in self.constants for i in node.input) and node.op_type not in ("Constant",):
                self.fold(node)
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise self.unsupported(node)
            handler(node)
            for name_out in node.output:
                for later in self.alias.get(name_out, ()):
                    self.values[later] = self.values[name_out]
        out = self.values[output_name]
        if out.rank != 2:
            raise EdgeliteError(f"{self.name}: the output is {out.rank}-D {out.onnx_shape()}: expected class "
                                "scores [N, classes]")
        tensor = out.tensor
        if out.cols is not None:
            order = np.argsort(out.cols)
            tensor = keras.layers.Lambda(lambda x: keras.ops.take(x, order, axis=1), name="output_order")(tensor)
        return keras.Model(inp, tensor, name=self.name)

    def needed(self, output_name: str) -> set:
        """Every tensor the output depends on (a dropped output's branch is not rebuilt)."""
        producer = {o: node for node in self.graph.node for o in node.output}
        needed, todo = set(), [output_name]
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            needed.add(name)
            if name in producer:
                todo.extend(i for i in producer[name].input if i)
        return needed

    def fold(self, node) -> None:
        """A node of constants only (what the optimiser left): evaluated with numpy where it is simple."""
        a = attributes(node)
        ins = [self.constants.get(i) for i in node.input]
        op = node.op_type
        simple = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Sqrt": np.sqrt,
                  "Reciprocal": np.reciprocal, "Neg": np.negative, "Identity": lambda x: x}
        if op in simple:
            out = simple[op](*ins)
        elif op == "Transpose":
            out = ins[0].transpose(a.get("perm"))
        elif op in ("Reshape",):
            out = ins[0].reshape(ins[1])
        elif op == "Unsqueeze":
            out = ins[0]
            for axis in sorted(a.get("axes") if "axes" in a else ins[1].tolist()):
                out = np.expand_dims(out, axis)
        elif op == "Squeeze":
            out = np.squeeze(ins[0], tuple(a.get("axes", ins[1].tolist() if len(ins) > 1 else ())) or None)
        elif op == "Concat":
            out = np.concatenate(ins, axis=a["axis"])
        elif op == "Cast":
            from onnx import helper

            out = ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
        elif op == "Gather":
            out = np.take(ins[0], ins[1], axis=a.get("axis", 0))
        else:
            raise self.unsupported(node, "on constants")
        self.constants[node.output[0]] = np.asarray(out)

    # -- operators ----------------------------------------------------------------------------------------
    def op_Constant(self, node) -> None:
        from onnx import numpy_helper

        a = {attr.name: attr for attr in node.attribute}
        if "value" not in a:
            raise self.unsupported(node, "without a tensor value")
        self.constants[node.output[0]] = numpy_helper.to_array(a["value"].t)

    def op_Shape(self, node) -> None:
        self.constants[node.output[0]] = np.array([1 if s is None else s for s in self.values[node.input[0]]
                                                   .onnx_shape()], np.int64)

    def pass_through(self, node) -> None:
        self.values[node.output[0]] = self.values[node.input[0]]

    op_Identity = op_Dropout = pass_through

    def op_Cast(self, node) -> None:
        if attributes(node).get("to") != 1:  # FLOAT
            raise self.unsupported(node, "to a type other than float")
        self.pass_through(node)

    def op_Transpose(self, node) -> None:
        value = self.values[node.input[0]]
        p = tuple(attributes(node).get("perm", tuple(reversed(range(value.rank)))))
        if value.cols is not None:
            raise self.unsupported(node, "on a flattened feature map")
        have = value.perm or tuple(range(value.rank))
        # out = in.transpose(p); keras = in.transpose(have) = out.transpose(q) with p[q[i]] = have[i]
        q = tuple(p.index(axis) for axis in have)
        self.values[node.output[0]] = Value(value.tensor, None if q == tuple(range(len(q))) else q,
                                            nonnegative=value.nonnegative)

    def op_Conv(self, node) -> None:
        keras = self.keras
        a = attributes(node)
        x = self.feature_map(node)
        w = self.const(node.input[1])
        if w is None or w.ndim != 4:
            raise self.unsupported(node, "with weights that are not a constant 4-D tensor")
        b = self.const(node.input[2]) if len(node.input) > 2 else None
        out_ch, in_per_group, kh, kw = w.shape
        group = a.get("group", 1)
        strides = tuple(a.get("strides", (1, 1)))
        dilations = tuple(a.get("dilations", (1, 1)))
        x, padding = self.padded(node, x, a, (kh, kw), strides, dilations)
        name = self.layer_name(node)
        channels = int(x.shape[-1])
        if group > 1 and group == channels and in_per_group == 1:
            layer = keras.layers.DepthwiseConv2D((kh, kw), strides, padding, depth_multiplier=out_ch // group,
                                                 dilation_rate=dilations, use_bias=b is not None, name=name)
            kernel = w.reshape(group, out_ch // group, kh, kw).transpose(2, 3, 0, 1)
        else:
            layer = keras.layers.Conv2D(out_ch, (kh, kw), strides, padding, dilation_rate=dilations, groups=group,
                                        use_bias=b is not None, name=name)
            kernel = w.transpose(2, 3, 1, 0)
        y = layer(x)
        layer.set_weights([kernel] + ([b] if b is not None else []))
        self.values[node.output[0]] = Value(y, NHWC)

    def padded(self, node, x, a: dict, kernel, strides, dilations, pad_value: float | None = 0.0):
        """(input, Keras padding): "same" or "valid" where the ONNX padding is that, else an explicit zero
        padding before a "valid" op (torch pads stride-2 convolutions on both sides, "same" bottom/right only)."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        size = tuple(int(s) for s in x.shape[1:3])
        if auto == "VALID":
            return x, "valid"
        same = []
        for n, k, s, d in zip(size, kernel, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            same.append((total // 2, total - total // 2))
        if auto == "SAME_UPPER":
            return x, "same"
        if auto == "SAME_LOWER":
            pads = [same[0][1], same[1][1], same[0][0], same[1][0]]
        else:
            pads = list(a.get("pads", (0, 0, 0, 0)))
        (top, left, bottom, right) = pads
        if not any(pads):
            return x, "valid"
        if ((top, bottom), (left, right)) == tuple(same):
            return x, "same"
        if pad_value is None:
            raise self.unsupported(node, f"with padding {pads} on a tensor that may be negative")
        return self.keras.layers.ZeroPadding2D(((top, bottom), (left, right)),
                                               name=self.layer_name(node, "_pad"))(x), "valid"

    def op_BatchNormalization(self, node) -> None:
        value = self.values[node.input[0]]
        gamma, beta, mean, var = (self.const(n) for n in node.input[1:5])
        if any(v is None for v in (gamma, beta, mean, var)):
            raise self.unsupported(node, "with parameters that are not constants")
        if value.rank == 4:
            x = self.feature_map(node)
        elif value.rank == 2:
            x = value.tensor
            if value.cols is not None:
                gamma, beta, mean, var = (v[value.cols] for v in (gamma, beta, mean, var))
        else:
            raise self.unsupported(node, f"on a {value.rank}-D tensor")
        layer = self.keras.layers.BatchNormalization(epsilon=float(attributes(node).get("epsilon", 1e-5)),
                                                     name=self.layer_name(node))
        y = layer(x)
        layer.set_weights([gamma, beta, mean, var])
        self.values[node.output[0]] = Value(y, NHWC if value.rank == 4 else None,
                                            value.cols if value.rank == 2 else None)

    def unary(self, node, layer, nonnegative: bool = False) -> None:
        value = self.values[node.input[0]]
        self.values[node.output[0]] = Value(layer(value.tensor), value.perm, value.cols, nonnegative)

    def op_Relu(self, node) -> None:
        self.unary(node, self.keras.layers.ReLU(name=self.layer_name(node)), nonnegative=True)

    def op_Clip(self, node) -> None:
        a = attributes(node)
        low = a.get("min", None)
        high = a.get("max", None)
        if len(node.input) > 1 and node.input[1]:
            low = float(self.const(node.input[1]))
        if len(node.input) > 2 and node.input[2]:
            high = float(self.const(node.input[2]))
        if low == 0 and high in (6, None):
            layer = self.keras.layers.ReLU(max_value=high, name=self.layer_name(node))
        else:
            lo = -np.inf if low is None else low
            hi = np.inf if high is None else high
            ops = self.keras.ops
            layer = self.keras.layers.Lambda(lambda x: ops.clip(x, lo, hi), name=self.layer_name(node))
        self.unary(node, layer, nonnegative=low is not None and low >= 0)

    def op_LeakyRelu(self, node) -> None:
        alpha = float(attributes(node).get("alpha", 0.01))
        self.unary(node, self.keras.layers.LeakyReLU(negative_slope=alpha, name=self.layer_name(node)))

    def activation(self, node, name_or_fn, nonnegative: bool = False) -> None:
        self.unary(node, self.keras.layers.Activation(name_or_fn, name=self.layer_name(node)), nonnegative)

    def op_Sigmoid(self, node) -> None:
        self.activation(node, "sigmoid", nonnegative=True)

    def op_Tanh(self, node) -> None:
        self.activation(node, "tanh")

    def op_HardSigmoid(self, node) -> None:
        a = attributes(node)
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        ops = self.keras.ops
        product = self.product_with_its_input(node) if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5 else None
        if product is not None:
            # x * HardSigmoid(x), torch.onnx's hard-swish (onnxruntime expands HardSwish to it too): made whole here,
            # the Mul skipped (with the 1/6 after the product, the TFLite converter folds it into the next conv)
            self.skip.add(product.output[0])
            self.values[product.output[0]] = self.hard_swish(node, self.values[node.input[0]])
        elif abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
            self.activation(node, lambda x: ops.relu6(x + 3.0) * (1 / 6), nonnegative=True)
        else:
            self.activation(node, lambda x: ops.clip(x * alpha + beta, 0.0, 1.0), nonnegative=True)

    def product_with_its_input(self, node):
        """The Mul that multiplies `node`'s input by its output, where that Mul is its output's only use."""
        users = self.consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Mul" and node.output[0] not in (o.name for o in self.graph.output) \
                and sorted(users[0].input) == sorted([node.input[0], node.output[0]]):
            return users[0]
        return None

    def hard_gate(self, node, value: Value):
        """relu6(x + 3) as a 1x1 depthwise convolution (weight 1, bias 3, ReLU6). Written with an ADD, the TFLite
        converter matches x * relu6(x + 3) / 6 to HARD_SWISH, which XNNPACK does not take in int8 (a delegate
        partition either side of every hard-swish: MobileNetV3Small 20); this way hard-swish is
        DEPTHWISE_CONV_2D + MUL, in the one partition. An [N, C] tensor (MobileNetV3's classifier) is held as
        [N, 1, 1, C] for it (RESHAPEs, which XNNPACK takes)."""
        keras = self.keras
        if value.rank not in (2, 4):
            raise self.unsupported(node, f"on a {value.rank}-D tensor")
        x = value.tensor
        channels = int(x.shape[-1])
        if value.rank == 2:
            x = self.reshape(node, x, (1, 1, channels), "_as_map")
        gate = keras.layers.DepthwiseConv2D(1, activation="relu6", name=self.layer_name(node, "_gate"))
        g = gate(x)
        gate.set_weights([np.ones((1, 1, channels, 1), np.float32), np.full(channels, 3.0, np.float32)])
        if value.rank == 2:
            g = self.reshape(node, g, (channels,), "_as_vector")
        return g

    def hard_swish(self, node, value: Value) -> Value:
        y = self.keras.layers.Multiply(name=self.layer_name(node, "_swish"))([value.tensor, self.hard_gate(node, value)])
        return Value(self.lam(node, lambda t: t * (1 / 6), y, "_sixth"), value.perm, value.cols)

    def op_HardSwish(self, node) -> None:
        self.values[node.output[0]] = self.hard_swish(node, self.values[node.input[0]])

    def op_Softmax(self, node) -> None:
        value = self.values[node.input[0]]
        axis = attributes(node).get("axis", -1)
        if value.rank != 2 or axis not in (1, -1):
            raise self.unsupported(node, f"over axis {axis} of a {value.rank}-D tensor")
        self.unary(node, self.keras.layers.Softmax(name=self.layer_name(node)), nonnegative=True)

    def binary(self, node, fn, reverse: Callable | None = None) -> None:
        """Add/Sub/Mul/Div of two tensors, or of a tensor and a constant (either side)."""
        left, right = (self.values.get(n) for n in node.input[:2])
        consts = [self.const(n) for n in node.input[:2]]
        if left is not None and right is not None:
            if left.rank != right.rank:
                wide, narrow = (left, right) if left.rank > right.rank else (right, left)
                raise self.unsupported(node, f"between {wide.rank}-D and {narrow.rank}-D tensors")
            if left.rank == 2 and not _same_cols(left.cols, right.cols):
                raise self.unsupported(node, "between flattened maps in different orders")
            a = left.tensor if left.rank == 2 else self.in_layout(node, left, left.perm)
            b = right.tensor if right.rank == 2 else self.in_layout(node, right, left.perm)
            y = self.lam(node, lambda ab: fn(ab[0], ab[1]), [a, b])
            self.values[node.output[0]] = Value(y, left.perm, left.cols)
            return
        value, c, tensor_first = (left, consts[1], True) if left is not None else (right, consts[0], False)
        if value is None or c is None:
            raise self.unsupported(node, "with an input that is neither a tensor nor a constant")
        c = self.constant_like(value, c)
        if tensor_first:
            y = self.lam(node, lambda x: fn(x, c), value.tensor)
        else:
            y = self.lam(node, lambda x: fn(c, x), value.tensor)
        self.values[node.output[0]] = Value(y, value.perm, value.cols)

    def op_Add(self, node) -> None:
        self.binary(node, lambda a, b: a + b)

    def op_Sub(self, node) -> None:
        self.binary(node, lambda a, b: a - b)

    def op_Mul(self, node) -> None:
        self.binary(node, lambda a, b: a * b)

    def op_Div(self, node) -> None:
        divisor = self.const(node.input[1])
        if divisor is not None and node.input[0] in self.values:  # x / c: a multiplication (int8 has no DIV here)
            self.constants[node.input[1] + "/reciprocal"] = (1 / np.asarray(divisor, np.float64)).astype(np.float32)
            node = _renamed(node, [node.input[0], node.input[1] + "/reciprocal"])
            self.binary(node, lambda a, b: a * b)
        else:
            self.binary(node, lambda a, b: a / b)

    def op_GlobalAveragePool(self, node) -> None:
        x = self.feature_map(node)
        keep = not self.squeezed_next(node)
        y = self.keras.layers.GlobalAveragePooling2D(keepdims=keep, name=self.layer_name(node))(x)
        self.values[node.output[0]] = Value(y, NHWC if keep else None)

    def op_GlobalMaxPool(self, node) -> None:
        x = self.feature_map(node)
        keep = not self.squeezed_next(node)
        y = self.keras.layers.GlobalMaxPooling2D(keepdims=keep, name=self.layer_name(node))(x)
        self.values[node.output[0]] = Value(y, NHWC if keep else None)

    def squeezed_next(self, node) -> bool:
        """Whether a global pool's only consumer flattens it to [N, C]: then it is pooled straight to [N, C]
        (MEAN without keepdims, as Keras' own GlobalAveragePooling2D) and that consumer is passed through."""
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or node.output[0] in (o.name for o in self.graph.output):
            return False
        user = users[0]
        flat = user.op_type == "Flatten" and attributes(user).get("axis", 1) == 1
        if user.op_type == "Squeeze":
            axes = attributes(user).get("axes") or (self.const(user.input[1]).tolist()
                                                     if len(user.input) > 1 else None)
            flat = axes is not None and sorted(a % 4 for a in axes) == [2, 3]
        if user.op_type == "Reshape":
            target = self.const(user.input[1])
            flat = target is not None and len(target) == 2 and target[1] in (-1, self.channels(node))
        if flat:
            self.skip.add(user.output[0])
            self.aliases(user.output[0], node.output[0])
        return flat

    def channels(self, node) -> int:
        return int(self.values[node.input[0]].onnx_shape()[1])

    def aliases(self, later: str, earlier: str) -> None:
        """`later` is `earlier` (a skipped node's output): set once `earlier` is."""
        self.alias.setdefault(earlier, []).append(later)

    def op_ReduceMean(self, node) -> None:
        value = self.values[node.input[0]]
        a = attributes(node)
        axes = a.get("axes") or (self.const(node.input[1]).tolist() if len(node.input) > 1 else None)
        if value.rank != 4 or axes is None or sorted(x % 4 for x in axes) != [2, 3]:
            raise self.unsupported(node, f"over axes {axes} (only the spatial axes of a feature map)")
        keep = bool(a.get("keepdims", 1))
        x = self.feature_map(node)
        y = self.keras.layers.GlobalAveragePooling2D(keepdims=keep, name=self.layer_name(node))(x)
        self.values[node.output[0]] = Value(y, NHWC if keep else None)

    def pool(self, node, kind: str) -> None:
        a = attributes(node)
        if a.get("ceil_mode", 0):
            raise self.unsupported(node, "with ceil_mode")
        value = self.values[node.input[0]]
        x = self.feature_map(node)
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", (1,) * len(kernel)))
        dilations = tuple(a.get("dilations", (1, 1)))
        if dilations != (1, 1):
            raise self.unsupported(node, "with dilations")
        if kind == "max":
            # zero padding equals -inf padding only on a tensor that is >= 0 (a max pool after a ReLU)
            x, padding = self.padded(node, x, a, kernel, strides, dilations, 0.0 if value.nonnegative else None)
            layer = self.keras.layers.MaxPooling2D(kernel, strides, padding, name=self.layer_name(node))
        else:
            counts_padding = bool(a.get("count_include_pad", 0))
            if kernel == (1, 1) and strides == (1, 1) and not any(a.get("pads", ())):
                # an average of one pixel: torch's adaptive pooling to the size it already has (VGG's 7x7)
                self.pass_through(node)
                return
            x, padding = self.padded(node, x, a, kernel, strides, dilations)
            if padding == "same" and counts_padding:
                raise self.unsupported(node, "with count_include_pad and uneven padding")
            if padding == "valid" and any(a.get("pads", ())) and not counts_padding:
                raise self.unsupported(node, "with padding not counted (count_include_pad=0) that is not 'same'")
            if padding == "valid":  # a depthwise convolution of 1 / (kh kw): XNNPACK runs no int8 AVERAGE_POOL_2D
                channels = int(x.shape[-1])
                layer = self.keras.layers.DepthwiseConv2D(kernel, strides, "valid", use_bias=False,
                                                          name=self.layer_name(node))
                y = layer(x)
                layer.set_weights([np.full(kernel + (channels, 1), 1 / np.prod(kernel), np.float32)])
                self.values[node.output[0]] = Value(y, NHWC, nonnegative=value.nonnegative)
                return
            layer = self.keras.layers.AveragePooling2D(kernel, strides, padding, name=self.layer_name(node))
        self.values[node.output[0]] = Value(layer(x), NHWC, nonnegative=value.nonnegative)

    def op_MaxPool(self, node) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self.unsupported(node, "with indices")
        self.pool(node, "max")

    def op_AveragePool(self, node) -> None:
        self.pool(node, "average")

    def op_Pad(self, node) -> None:
        a = attributes(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = a.get("pads") or (self.const(node.input[1]).tolist() if len(node.input) > 1 else None)
        value = float(self.const(node.input[2])) if len(node.input) > 2 and node.input[2] else a.get("value", 0.0)
        if mode != "constant" or value != 0 or pads is None or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
            raise self.unsupported(node, f"(mode {mode}, value {value}, pads {pads}; only zero padding of H and W)")
        x = self.feature_map(node)
        y = self.keras.layers.ZeroPadding2D(((pads[2], pads[6]), (pads[3], pads[7])), name=self.layer_name(node))(x)
        self.values[node.output[0]] = Value(y, NHWC, nonnegative=self.values[node.input[0]].nonnegative)

    def to_2d(self, node, value: Value) -> None:
        """[N, ...] -> [N, K] in Keras' order, the ONNX order held as `cols`."""
        shape = value.onnx_shape()
        if value.rank == 2:
            self.values[node.output[0]] = value
            return
        count = int(np.prod(shape[1:]))
        order = np.arange(count).reshape(shape[1:])
        if value.perm is not None:
            order = np.arange(count).reshape((1,) + tuple(shape[1:])).transpose(value.perm)[0]
        cols = order.ravel()
        y = self.reshape(node, value.tensor, (count,))
        self.values[node.output[0]] = Value(y, None, None if np.array_equal(cols, np.arange(count)) else cols)

    def op_Flatten(self, node) -> None:
        if attributes(node).get("axis", 1) != 1:
            raise self.unsupported(node, "over an axis other than 1")
        self.to_2d(node, self.values[node.input[0]])

    def op_Squeeze(self, node) -> None:
        value = self.values[node.input[0]]
        axes = attributes(node).get("axes") or (self.const(node.input[1]).tolist() if len(node.input) > 1 else None)
        shape = value.onnx_shape()
        squeezed = [i for i, s in enumerate(shape) if (axes is None and s == 1 and i > 0)
                    or (axes is not None and i in [x % len(shape) for x in axes])]
        if len(shape) - len(squeezed) != 2 or 0 in squeezed:
            raise self.unsupported(node, f"of axes {axes} of {shape} (only to [N, C])")
        self.to_2d(node, value)

    def op_Reshape(self, node) -> None:
        value = self.values[node.input[0]]
        target = self.const(node.input[1])
        if target is None:
            raise self.unsupported(node, "to a shape that is not a constant")
        target = [int(t) for t in target]
        shape = value.onnx_shape()
        count = int(np.prod(shape[1:]))
        if len(target) == 2 and target[1] in (-1, count):
            self.to_2d(node, value)
        elif value.rank == 2 and len(target) == 4 and target[2:] == [1, 1] and value.cols is None:
            y = self.reshape(node, value.tensor, (1, 1, count))
            self.values[node.output[0]] = Value(y, NHWC)
        else:
            raise self.unsupported(node, f"from {list(shape)} to {target}")

    def op_Unsqueeze(self, node) -> None:
        value = self.values[node.input[0]]
        axes = attributes(node).get("axes") or self.const(node.input[1]).tolist()
        if value.rank != 2 or sorted(axes) != [2, 3] or value.cols is not None:
            raise self.unsupported(node, f"of axes {axes} (only [N, C] to [N, C, 1, 1])")
        y = self.reshape(node, value.tensor, (1, 1, int(value.tensor.shape[-1])))
        self.values[node.output[0]] = Value(y, NHWC)

    def dense(self, node, x: Value, kernel: np.ndarray, bias: np.ndarray | None) -> None:
        if x.rank != 2:
            raise self.unsupported(node, f"on a {x.rank}-D tensor")
        if x.cols is not None:
            kernel = kernel[x.cols]
        layer = self.keras.layers.Dense(kernel.shape[1], use_bias=bias is not None, name=self.layer_name(node))
        y = layer(x.tensor)
        layer.set_weights([kernel.astype(np.float32)] + ([bias.astype(np.float32)] if bias is not None else []))
        self.values[node.output[0]] = Value(y)

    def op_Gemm(self, node) -> None:
        a = attributes(node)
        x = self.values.get(node.input[0])
        w = self.const(node.input[1])
        if x is None or w is None or a.get("transA", 0):
            raise self.unsupported(node, "other than tensor x constant weights")
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        c = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if c is not None:
            c = np.broadcast_to(np.asarray(c, np.float32) * a.get("beta", 1.0), (w.shape[1],))
        self.dense(node, x, w, c)

    def op_MatMul(self, node) -> None:
        x = self.values.get(node.input[0])
        w = self.const(node.input[1])
        if x is None or w is None or w.ndim != 2:
            raise self.unsupported(node, "other than tensor x constant 2-D weights")
        self.dense(node, x, w, None)

    def op_Concat(self, node) -> None:
        values = [self.values.get(n) for n in node.input]
        if any(v is None for v in values):
            raise self.unsupported(node, "of a constant")
        first = values[0]
        axis = attributes(node)["axis"]
        if first.rank == 2:
            if any(v.cols is not None for v in values):
                raise self.unsupported(node, "of flattened feature maps")
            tensors = [v.tensor for v in values]
        else:
            tensors = [self.in_layout(node, v, first.perm) for v in values]
        y = self.keras.layers.Concatenate(axis=first.keras_axis(axis), name=self.layer_name(node))(tensors)
        self.values[node.output[0]] = Value(y, first.perm, nonnegative=all(v.nonnegative for v in values))


def _same_cols(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _renamed(node, inputs: list[str]):
    from onnx import helper

    return helper.make_node(node.op_type, inputs, list(node.output), name=node.name)
