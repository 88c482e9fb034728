"""What a TFLite file runs, read back by LiteRT as the device loads it (XNNPACK applied): the op list, layout
TRANSPOSEs, float islands and delegate partitions. The facts issue 29 asks every benchmark to print."""
from __future__ import annotations

from collections import Counter

import numpy as np


def op_facts(path) -> dict:
    """`ops` (op name: count, delegate nodes left out), `transposes`, `partitions` (XNNPACK delegate nodes),
    `float_head` (the ops of a float32 head: a DEQUANTIZE and what follows it to the output with no QUANTIZE, as
    the default int8 method's float32 logits write it), and, outside that head, the `dequantize` and `quantize`
    counts and `float_ops`: ops other than DEQUANTIZE that compute in float32 (in an int8 file, the float islands'
    work; a QUANTIZE from int8 to int8 is a requantisation, not an island)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    details = interpreter._get_ops_details()
    computed = [op for op in details if op["op_name"] != "DELEGATE"]
    head = []
    for op in reversed(computed):  # back from the output while the ops are float and none quantizes
        if op["op_name"] == "QUANTIZE" or np.float32 not in op.get("result_types", ()):
            head = []
            break
        head.insert(0, op["op_name"])
        if op["op_name"] == "DEQUANTIZE":
            break
    else:
        head = []  # a float model: no DEQUANTIZE, nothing is a head
    body = computed[:len(computed) - len(head)]
    ops = Counter(op["op_name"] for op in computed)
    floats = sum(1 for op in body if op["op_name"] != "DEQUANTIZE" and np.float32 in op.get("result_types", ()))
    return {"ops": dict(ops), "op_count": sum(ops.values()), "transposes": ops.get("TRANSPOSE", 0),
            "partitions": sum(op["op_name"] == "DELEGATE" for op in details), "float_head": head,
            "dequantize": sum(op["op_name"] == "DEQUANTIZE" for op in body),
            "quantize": sum(op["op_name"] == "QUANTIZE" for op in body), "float_ops": floats}


def op_list(facts: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(facts["ops"].items(), key=lambda kv: -kv[1]))
