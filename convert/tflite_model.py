"""A TFLite model as an editable object tree (`unpack`, `pack`), and the schema codes its editors read: bias
correction (bias.py), the dynamic-range layers kept in float (dynamic_range.py), the metadata writer."""
from __future__ import annotations

import numpy as np

from edgelite.errors import EdgeliteError, one_line

CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED = 3, 4, 9  # BuiltinOperator codes of the weighted ops
OP_NAMES = {CONV_2D: "CONV_2D", DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D", FULLY_CONNECTED: "FULLY_CONNECTED"}
FLOAT32, INT32, INT8 = 0, 2, 9  # TensorType codes
TENSOR_TYPES = {np.float32: FLOAT32, np.int32: INT32, np.int8: INT8}


def unpack(tflite: bytes):
    """(the generated schema module, the model as its mutable object tree); `pack` writes it back."""
    from edgelite.tflite_format import schema as tflite_schema

    schema = tflite_schema()
    if schema is None:
        raise EdgeliteError("no TFLite interpreter installed to edit the model: pip install 'edgelite[tflite]'")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(tflite), 0))
    except Exception as exc:  # a garbage flatbuffer fails in many ways
        raise EdgeliteError(f"not a readable TFLite model ({one_line(exc)})") from None
    return schema, model


def pack(model, size_hint: int = 1024) -> bytes:
    """The bytes of a model object tree from `unpack` (metadata and signatures carried over)."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def weighted_ops(model) -> list:
    """(op, kind) of the weighted ops (conv, depthwise, fully connected) of a TFLite model's main graph, in order."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    ops = model.subgraphs[0].operators or []
    return [(op, codes[op.opcodeIndex]) for op in ops if codes[op.opcodeIndex] in OP_NAMES]
