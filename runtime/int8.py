"""int8 ONNX that computes the same integers on every CPU, including those whose u8 x s8 kernels saturate.

onnxruntime multiplies uint8 activations by int8 weights. On x86-64 with AVX2 and no VNNI it does so
with VPMADDUBSW, which adds each pair of neighbouring products into a saturating int16: a pair above
32767 is silently clipped (onnxruntime's quantization docs). MobileNetV2 int8 agreed 92.8 % with Keras
there, 99.2 % with VNNI. The u8 x u8 kernels do not saturate, and re-encoding an int8 weight q with
zero point z as uint8 q + 128 with zero point z + 128 changes no dequantized value: it is the same
model, and such a CPU then computes exactly what the others compute (the same outputs, bit for bit,
under `qemu-x86_64 -cpu Haswell`). The u8 x u8 kernels are slower, so this is done only where needed.

Whether this machine saturates is measured, not read from CPU flags (qemu-user shows its host's
flags): a probe whose exact answer needs pairs above the int16 limit, run once per process.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import EdgeliteError, one_line

PROBE_CHANNELS = 64  # 32 pairs of 255 x 127: 64770 each, twice the int16 limit


# _probe() serialized (tests/test_int8.py checks they are the same): opening it needs no `onnx` import,
# which would add 70 ms to every cold start
PROBE = (
    "CAg60QoKJgoBeAoDb25lCgd6ZXJvX3U4EgN4X3EiDlF1YW50aXplTGluZWFyCisKA3hfcQoDb25lCgd6ZXJvX3U4EgR4X2RxIhBE"
    "ZXF1YW50aXplTGluZWFyCjMKBndfY29udgoDb25lCgd6ZXJvX3M4Egl3X2NvbnZfZHEiEERlcXVhbnRpemVMaW5lYXIKHwoEeF9k"
    "cQoJd19jb252X2RxEgZjb252X2YiBENvbnYKNAoGY29udl9mCglvdXRfc2NhbGUKB3plcm9fdTgSBmNvbnZfcSIOUXVhbnRpemVM"
    "aW5lYXIKNgoGY29udl9xCglvdXRfc2NhbGUKB3plcm9fdTgSBmNvbnZfciIQRGVxdWFudGl6ZUxpbmVhcgoeCgZjb252X3IKCW91"
    "dF9zY2FsZRIEY29udiIDRGl2CiYKAXYKA29uZQoHemVyb191OBIDdl9xIg5RdWFudGl6ZUxpbmVhcgorCgN2X3EKA29uZQoHemVy"
    "b191OBIEdl9kcSIQRGVxdWFudGl6ZUxpbmVhcgovCgR3X21tCgNvbmUKB3plcm9fczgSB3dfbW1fZHEiEERlcXVhbnRpemVMaW5l"
    "YXIKIQoEdl9kcQoHd19tbV9kcRIIbWF0bXVsX2YiBk1hdE11bAo4CghtYXRtdWxfZgoJb3V0X3NjYWxlCgd6ZXJvX3U4EghtYXRt"
    "dWxfcSIOUXVhbnRpemVMaW5lYXIKOgoIbWF0bXVsX3EKCW91dF9zY2FsZQoHemVyb191OBIIbWF0bXVsX3IiEERlcXVhbnRpemVM"
    "aW5lYXIKIgoIbWF0bXVsX3IKCW91dF9zY2FsZRIGbWF0bXVsIgNEaXYSFXU4czhfc2F0dXJhdGlvbl9wcm9iZSoNEAFCA29uZUoE"
    "AACAPyoOEAJCB3plcm9fdThKAQAqDhADQgd6ZXJvX3M4SgEAKhMQAUIJb3V0X3NjYWxlSgQAAIBGKpUCCAQIQAgBCAEQA0IGd19j"
    "b252SoACf39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/fyqPAghACAQQA0IEd19tbUqAAn9/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39aGwoBeBIWChQIARIQCgIIAQoCCEAKAggCCgIIAloTCgF2Eg4KDAgBEggKAggBCgIIQGIMCgRjb252EgQKAggB"
    "Yg4KBm1hdG11bBIECgIIAUIECgAQEQ=="
)


@functools.cache
def saturates() -> bool:
    """True when onnxruntime's fused u8 x s8 Conv or MatMul clips int16 pairs on this CPU."""
    import base64

    import onnxruntime as ort

    session = ort.InferenceSession(base64.b64decode(PROBE), providers=["CPUExecutionProvider"])
    x = np.full((1, PROBE_CHANNELS, 2, 2), 255.0, np.float32)
    conv, matmul = session.run(None, {"x": x, "v": x[:, :, 0, 0]})
    exact = PROBE_CHANNELS * 255 * 127 / 2**14  # 126.5 -> 126 or 127 after rounding; saturated: 64
    return bool(np.abs(conv - exact).max() > 2 or np.abs(matmul - exact).max() > 2)


def _probe():
    """Q -> DQ -> Conv / MatMul with int8 weights of 127 -> Q -> DQ: onnxruntime fuses both into integer ops."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    inits = [const("one", np.float32(1)), const("zero_u8", np.uint8(0)), const("zero_s8", np.int8(0)),
             const("out_scale", np.float32(2**14)),
             const("w_conv", np.full((4, PROBE_CHANNELS, 1, 1), 127, np.int8)),
             const("w_mm", np.full((PROBE_CHANNELS, 4), 127, np.int8))]
    nodes = []
    for x, w, op, y in (("x", "w_conv", "Conv", "conv"), ("v", "w_mm", "MatMul", "matmul")):
        nodes += [helper.make_node("QuantizeLinear", [x, "one", "zero_u8"], [f"{x}_q"]),
                  helper.make_node("DequantizeLinear", [f"{x}_q", "one", "zero_u8"], [f"{x}_dq"]),
                  helper.make_node("DequantizeLinear", [w, "one", "zero_s8"], [f"{w}_dq"]),
                  helper.make_node(op, [f"{x}_dq", f"{w}_dq"], [f"{y}_f"]),
                  helper.make_node("QuantizeLinear", [f"{y}_f", "out_scale", "zero_u8"], [f"{y}_q"]),
                  helper.make_node("DequantizeLinear", [f"{y}_q", "out_scale", "zero_u8"], [f"{y}_r"]),
                  helper.make_node("Div", [f"{y}_r", "out_scale"], [y])]
    graph = helper.make_graph(
        nodes, "u8s8_saturation_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, PROBE_CHANNELS, 2, 2]),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, PROBE_CHANNELS])],
        [helper.make_tensor_value_info("conv", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("matmul", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # any runtime since 1.14


def as_uint8(path: Path) -> tuple[bytes, int] | tuple[None, int]:
    """The model with its int8 QDQ weights re-encoded as uint8 (same dequantized values), and how many.

    Only initializers that DequantizeLinear alone reads (values at input 0, zero points at input 2)
    are changed; returns (None, 0) when there is nothing to re-encode.
    """
    try:
        import onnx
        from onnx import TensorProto, numpy_helper
    except ImportError:
        raise EdgeliteError("this CPU needs the onnx package to run int8 ONNX exactly: pip install 'edgelite[onnx]'") \
            from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and onnx's own
        raise EdgeliteError(f"{path}: not a valid ONNX model ({one_line(exc)})") from None
    inits = {i.name: i for i in model.graph.initializer}
    users = defaultdict(list)
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in inits:
                users[name].append((node, index))
    int8 = {n for n, i in inits.items() if i.data_type == TensorProto.INT8}

    def only_dequantized(name: str, index: int) -> bool:
        return all(n.op_type == "DequantizeLinear" and k == index and len(n.input) == 3
                   and n.input[0] in int8 and n.input[2] in int8 for n, k in users[name])

    pairs = {(n.input[0], n.input[2]) for n in model.graph.node
             if n.op_type == "DequantizeLinear" and len(n.input) == 3 and n.input[0] in int8 and n.input[2] in int8
             and only_dequantized(n.input[0], 0) and only_dequantized(n.input[2], 2)}
    if not pairs:
        return None, 0
    for name in {name for pair in pairs for name in pair}:
        value = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.uint8), name))
    return model.SerializeToString(), len(pairs)
