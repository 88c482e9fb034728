"""The ONNX int8 ranker: each quantized activation's error against the float model (onnxruntime's
qdq_loss_debug), for the rescue's search (fallback.py) and `edgelite inspect --float`."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgelite.errors import EdgeliteError, one_line

from .layer_report import silent


# the report keeps every activation of the float and the QDQ model for each image (the QDQ model's about twice the
# float's): EfficientNetB3 at 300x300 (about 300 MB a sample) with 16 images was killed at 17 GB. It takes no more
# images than REPORT_BYTES of float activations allow (at least 2).
REPORT_BYTES = 2**30


def report_images(float_path: Path, count: int) -> int:
    """How many of `count` images the report may run: REPORT_BYTES over one image's float activations."""
    from .onnx_export import activation_bytes

    return int(max(min(2, count), min(count, REPORT_BYTES // activation_bytes(float_path))))


def onnx_layer_report(float_path: Path, qdq_path: Path, inputs: np.ndarray, input_name: str) -> list[dict]:
    """One row per quantized activation of the QDQ model, in graph order. `sqnr_db` compares it
    with the float model's tensor, so it sums the error of every layer before it (the tool's own
    pre/post-QDQ figure is not given: where a Relu/Clip was folded into the QDQ range it counts the
    clipping as error); `weight_sqnr_db` is the worst of the producing node's quantized
    weights (matched in the float model and in the model as quant_pre_process rewrites it,
    fused convolutions included). Graph inputs have no producing node and are left out. A big model is measured
    on the first `report_images` of the inputs."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        feeds = [{input_name: np.asarray(x, np.float32)[None]} for x in inputs[:report_images(float_path, len(inputs))]]
        with tempfile.TemporaryDirectory() as tmp, silent():
            acts = {}
            for kind, path in (("float", float_path), ("qdq", qdq_path)):
                augmented = str(Path(tmp) / f"{kind}.onnx")
                dbg.modify_model_output_intermediate_tensors(str(path), augmented)
                acts[kind] = dbg.collect_activations(augmented, feeds)
            matching = dbg.create_activation_matching(acts["qdq"], acts["float"])
            errors = dbg.compute_activation_error({k: v for k, v in matching.items() if "float" in v})
            prepared = str(Path(tmp) / "prepared.onnx")
            quant_pre_process(str(float_path), prepared, skip_symbolic_shape=True)
            weights = dbg.compute_weight_error(_arrays({**dbg.create_weight_matching(str(float_path), str(qdq_path)),
                                                        **dbg.create_weight_matching(prepared, str(qdq_path))}))
            graph = onnx.load(str(qdq_path)).graph
    except Exception as exc:
        raise EdgeliteError(f"ONNX layer report failed: {one_line(exc)}") from None
    dq, q_in = "_DequantizeLinear_Output", "_QuantizeLinear_Input"
    order = {out: (i, node) for i, node in enumerate(graph.node) for out in node.output}
    rows = []
    for name, error in errors.items():
        # a graph output keeps its name after the QDQ pair: the real producer writes name + q_in
        index, node = order.get(name + q_in) or order.get(name) or (None, None)
        if node is None:
            continue
        weight = [weights[i[: -len(dq)]] for i in node.input if i.endswith(dq) and i[: -len(dq)] in weights]
        rows.append((index, {"layer": name, "node": node.name, "op": node.op_type,
                             "sqnr_db": float(error["xmodel_err"]),
                             "weight_sqnr_db": float(min(weight)) if weight else None}))
    return [row for _, row in sorted(rows, key=lambda r: r[0])]


def _arrays(matches: dict) -> dict:
    """The weight matches with every value an array of at least one dimension: a scalar initializer (hard-swish's
    3 and 1/6, quantized as weights of Add/Mul) dequantizes to a NumPy scalar, which the tool's error measure
    takes for a list of tensors ("object of type 'numpy.float32' has no len()")."""
    return {name: {kind: np.atleast_1d(np.asarray(value, np.float32)) for kind, value in match.items()}
            for name, match in matches.items()}
