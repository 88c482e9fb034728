"""What a TFLite file runs, read back by LiteRT as the device loads it (XNNPACK applied): the op list, layout
TRANSPOSEs, float islands and delegate partitions. The facts issue 29 asks every benchmark to print."""
from __future__ import annotations

from collections import Counter

import numpy as np


def op_facts(path) -> dict:
    """`ops` (op name: count, delegate nodes left out), `transposes`, `partitions` (XNNPACK delegate nodes),
    `dequantize` and `quantize` counts, and `float_ops`: ops other than DEQUANTIZE that compute in float32 (in an
    int8 file, the float islands' work; a QUANTIZE from int8 to int8 is a requantisation, not an island)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    details = interpreter._get_ops_details()
    ops = Counter(op["op_name"] for op in details if op["op_name"] != "DELEGATE")
    floats = sum(1 for op in details if op["op_name"] not in ("DELEGATE", "DEQUANTIZE")
                 and np.float32 in op.get("result_types", ()))
    return {"ops": dict(ops), "op_count": sum(ops.values()), "transposes": ops.get("TRANSPOSE", 0),
            "partitions": sum(op["op_name"] == "DELEGATE" for op in details),
            "dequantize": ops.get("DEQUANTIZE", 0), "quantize": ops.get("QUANTIZE", 0), "float_ops": floats}


def op_list(facts: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(facts["ops"].items(), key=lambda kv: -kv[1]))
