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


# the probe model serialized (tests/test_int8.py builds it with `onnx` and checks they are the same): the device
# needs no `onnx` import, which would add 70 ms or more to every cold start
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


def as_uint8(path: Path) -> tuple[bytes, int] | tuple[None, int]:
    """The model with its int8 QDQ weights re-encoded as uint8 (same dequantized values), and how many.

    Only initializers that DequantizeLinear alone reads (values at input 0, zero points at input 2) are
    changed; returns (None, 0) when there is nothing to re-encode. The file is rewritten with a few lines of
    protobuf wire format: only the changed initializers and the messages that hold them are re-serialized
    (`onnx` would cost every cold start its import, hundreds of ms on a small board).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EdgeliteError(f"{path}: cannot read ({one_line(exc)})") from None
    try:
        return _as_uint8(data)
    except (StopIteration, IndexError, ValueError, OverflowError):  # a damaged wire format, wherever it lies
        raise EdgeliteError(f"{path}: not a valid ONNX model (unreadable protobuf)") from None


def _as_uint8(data: bytes) -> tuple[bytes, int] | tuple[None, int]:
    """as_uint8 on the file's bytes (raises IndexError, ValueError, ... where the wire format is damaged)."""
    graph = next((s, e) for f, _, s, e in _fields(data, 0, len(data)) if f == GRAPH)
    nodes, inits = [], {}
    for field, _, start, end in _fields(data, *graph):
        if field == NODE:
            nodes.append(_node(data, start, end))
        elif field == INITIALIZER:
            inits[_name(data, start, end)] = (start, end)
    int8 = {name for name, span in inits.items() if _type(data, *span) == INT8}
    users = defaultdict(list)
    for op, inputs in nodes:
        for index, name in enumerate(inputs):
            if name in inits:
                users[name].append((op, inputs, index))

    def only_dequantized(name: str, index: int) -> bool:
        return all(op == "DequantizeLinear" and k == index and len(inputs) == 3 and inputs[0] in int8
                   and inputs[2] in int8 for op, inputs, k in users[name])

    pairs = {(inputs[0], inputs[2]) for op, inputs in nodes
             if op == "DequantizeLinear" and len(inputs) == 3 and inputs[0] in int8 and inputs[2] in int8
             and only_dequantized(inputs[0], 0) and only_dequantized(inputs[2], 2)}
    if not pairs:
        return None, 0
    changed = {inits[name]: _as_uint8_tensor(data, *inits[name]) for name in {n for pair in pairs for n in pair}}
    new_graph = _rewrite(data, *graph, {(INITIALIZER, start): body for (start, _), body in changed.items()})
    return _rewrite(data, 0, len(data), {(GRAPH, graph[0]): new_graph}), len(pairs)


# ONNX protobuf field numbers (onnx.proto): ModelProto.graph; GraphProto.node, .initializer; NodeProto.input,
# .op_type; TensorProto.data_type, .int32_data, .name, .raw_data; TensorProto.DataType INT8 and UINT8
GRAPH, NODE, INITIALIZER = 7, 1, 5
NODE_INPUT, NODE_OP = 1, 4
TENSOR_TYPE, TENSOR_INT32, TENSOR_NAME, TENSOR_RAW = 2, 5, 8, 9
INT8, UINT8 = 3, 2


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


def _encode(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value start, value end) of each field of the message in data[start:end]."""
    return ((field, wire, s, e) for field, wire, _, s, e in _spans(data, start, end))


def _spans(data: bytes, start: int, end: int):
    """(field number, wire type, key start, value start, value end) of each field in data[start:end]."""
    at = start
    while at < end:
        begin = at
        key, at = _varint(data, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            after = at + length
        elif wire in (1, 5):
            after = at + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire}")
        if after > end:
            raise ValueError("field runs past its message")
        yield field, wire, begin, at, after
        at = after


def _strings(data: bytes, start: int, end: int, field: int) -> list[str]:
    return [data[s:e].decode("utf-8", "replace") for f, w, s, e in _fields(data, start, end) if f == field and w == 2]


def _node(data: bytes, start: int, end: int) -> tuple[str, list[str]]:
    return "".join(_strings(data, start, end, NODE_OP)), _strings(data, start, end, NODE_INPUT)


def _name(data: bytes, start: int, end: int) -> str:
    return "".join(_strings(data, start, end, TENSOR_NAME))


def _type(data: bytes, start: int, end: int) -> int | None:
    return next((_varint(data, s)[0] for f, w, s, _ in _fields(data, start, end) if f == TENSOR_TYPE and w == 0), None)


def _as_uint8_tensor(data: bytes, start: int, end: int) -> bytes:
    """An INT8 TensorProto as UINT8 with every value + 128 (an int8 byte XOR 0x80), its values as raw_data
    (from raw_data, or from int32_data, packed or not, as small zero points are stored); every other field
    as it was."""
    kept, raw, values = bytearray(), b"", []
    for field, wire, s, e in _fields(data, start, end):
        if field == TENSOR_RAW and wire == 2:
            raw = (np.frombuffer(data, np.uint8, e - s, s) ^ 0x80).tobytes()
        elif field == TENSOR_INT32 and wire == 2:  # packed varints
            at = s
            while at < e:
                value, at = _varint(data, at)
                values.append(value)
        elif field == TENSOR_INT32 and wire == 0:
            values.append(_varint(data, s)[0])
        elif field != TENSOR_TYPE:
            kept += _encode(field << 3 | wire) + (_encode(e - s) if wire == 2 else b"") + data[s:e]
    if values:  # int32 varints: two's complement in 64 bits; + 128 wraps an int8 into 0..255
        raw = ((np.asarray(values, np.uint64).astype(np.int64) + 128) & 0xFF).astype(np.uint8).tobytes()
    return (bytes(kept) + _encode(TENSOR_TYPE << 3) + _encode(UINT8)
            + _encode(TENSOR_RAW << 3 | 2) + _encode(len(raw)) + raw)


def _rewrite(data: bytes, start: int, end: int, replaced: dict) -> bytes:
    """The message in data[start:end] with the length-delimited fields keyed (field, value start) in
    `replaced` given new contents; everything else copied as it was."""
    out, at = [], start
    for field, wire, begin, s, e in _spans(data, start, end):
        body = replaced.get((field, s))
        if body is not None:
            out += [data[at:begin], _encode(field << 3 | 2), _encode(len(body)), body]
            at = e
    out.append(data[at:end])
    return b"".join(out)
