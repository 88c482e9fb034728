"""Small float ONNX classifiers written with the onnx helper API (no torch needed), as torch.onnx and tf2onnx
write them: the ONNX route's test models. Run as a script to write them to a folder:
`python tests/onnx_fixtures.py OUT`.

`small_cnn`: NCHW input, producer "pytorch", torch's conventions (stride-2 convolutions padded on both sides,
BatchNormalization, ReLU6 as Clip, depthwise, hard-swish, a squeeze-excite block with hard-sigmoid, a residual
Add, a max pool after a ReLU, a Concat on channels, GlobalAveragePool, Flatten, Gemm: logits). `nhwc` gives the
same network with an NHWC input and a Transpose to NCHW, as tf2onnx writes it. `flatten_spatial` ends in a
Flatten of a 4x4 map (VGG's head) instead of the global pool."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CLASSES = 10
SIZE = 64


def small_cnn(path: Path, *, producer: str = "pytorch", nhwc: bool = False, flatten_spatial: bool = False,
              external_data: bool = False, dynamic_size: bool = False, outputs: int = 1, extra_op: str | None = None,
              hardswish: bool = True, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def conv(x, name, cin, cout, k, stride=1, group=1, pad=None, bias=True):
        fan_in = cin // group * k * k
        w = rng.normal(0, np.sqrt(2 / fan_in), (cout, cin // group, k, k))
        inputs = [x, const(f"{name}.weight", w)] + ([const(f"{name}.bias", rng.normal(0, 0.1, cout))] if bias else [])
        p = k // 2 if pad is None else pad
        nodes.append(helper.make_node("Conv", inputs, [name], name=name, kernel_shape=[k, k], strides=[stride] * 2,
                                      pads=[p] * 4, group=group))
        return name

    def bn(x, name, c):
        nodes.append(helper.make_node(
            "BatchNormalization", [x, const(f"{name}.g", rng.uniform(0.5, 1.5, c)), const(f"{name}.b", rng.normal(0, .1, c)),
                                   const(f"{name}.m", rng.normal(0, .1, c)), const(f"{name}.v", rng.uniform(.5, 2, c))],
            [name], name=name, epsilon=1e-5))
        return name

    def op(kind, inputs, name, **attrs):
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    h = w = None if dynamic_size else SIZE
    if nhwc:
        graph_in = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, h, w, 3])
        x = op("Transpose", ["input"], "to_nchw", perm=[0, 3, 1, 2])
    else:
        graph_in = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, h, w])
        x = "input"
    x = op("Relu", [bn(conv(x, "conv1", 3, 16, 3, stride=2, bias=False), "bn1", 16)], "relu1")  # 32x32
    x = op("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # 16x16
    lo, hi = const("zero", 0.0), const("six", 6.0)
    d = op("Clip", [bn(conv(x, "dw", 16, 16, 3, group=16, bias=False), "bn_dw", 16), lo, hi], "relu6")
    p = op("HardSwish" if hardswish else "Relu", [conv(d, "pw", 16, 16, 1)], "hswish")
    s = op("GlobalAveragePool", [p], "se_pool")
    s = op("Relu", [conv(s, "se_reduce", 16, 4, 1)], "se_relu")
    s = op("HardSigmoid", [conv(s, "se_expand", 4, 16, 1)], "se_gate", alpha=1 / 6, beta=0.5)
    x = op("Add", [op("Mul", [p, s], "se_scale"), x], "residual")
    b = op("LeakyRelu", [conv(x, "branch", 16, 8, 3, stride=2)], "branch_act", alpha=0.1)  # 8x8
    a = op("AveragePool", [x], "avg", kernel_shape=[2, 2], strides=[2, 2])
    a = op("Sigmoid", [conv(a, "avg_conv", 16, 8, 1)], "avg_act")
    x = op("Concat", [b, a], "concat", axis=1)  # 16 channels, 8x8
    x = op("Mul", [x, const("channel_scale", rng.uniform(0.5, 1.5, (16, 1, 1)))], "scaled")
    x = op("Sub", [x, const("channel_shift", rng.normal(0, 0.1, (1, 16, 1, 1)))], "shifted")
    if extra_op:
        x = op(extra_op, [x], "unsupported")
    if flatten_spatial:
        x = op("MaxPool", [op("Relu", [x], "relu_head")], "pool_head", kernel_shape=[2, 2], strides=[2, 2])  # 4x4
        x = op("Flatten", [x], "flatten", axis=1)
        features = 16 * 4 * 4
    else:
        x = op("Flatten", [op("GlobalAveragePool", [x], "gap")], "flatten", axis=1)
        features = 16
    head = rng.normal(0, 3 / np.sqrt(features), (CLASSES, features))
    y = op("Gemm", [x, const("fc.weight", head), const("fc.bias", rng.normal(0, .1, CLASSES))], "logits", transB=1)
    graph_outs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch" if not nhwc else 1, CLASSES])]
    if outputs > 1:
        graph_outs.append(helper.make_tensor_value_info(op("Softmax", [y], "probs", axis=1), TensorProto.FLOAT,
                                                        ["batch" if not nhwc else 1, CLASSES]))
    graph = helper.make_graph(nodes, "small_cnn", [graph_in], graph_outs, inits)
    model = helper.make_model(graph, producer_name=producer, producer_version="2.13.0" if producer == "pytorch" else "",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "onnx-fixtures")
    for name, kwargs in {"small_cnn": {}, "small_cnn_nhwc": {"nhwc": True, "producer": "tf2onnx"},
                         "small_cnn_flatten": {"flatten_spatial": True}}.items():
        print(small_cnn(out / f"{name}.onnx", **kwargs))
