"""Keras -> ONNX with tf2onnx, int8 QDQ with onnxruntime's quantization, and ONNX metadata."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgelite.backends import METADATA_KEY
from edgelite.errors import EdgeliteError, one_line

OPSET = 17


def to_onnx(model, path: Path, nchw: bool = False) -> Path:
    """Convert with an explicit input signature (NHWC, or NCHW input on request)."""
    import tensorflow as tf
    import tf2onnx

    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or None in shape[1:]:
        raise EdgeliteError(f"cannot export an input of shape {shape}: expected [N, H, W, C]")
    signature = [tf.TensorSpec((None,) + shape[1:], tf.float32, name="input")]
    # from_function on the traced call works for Keras 3 Sequential and functional models alike
    function = tf.function(lambda input: model(input, training=False), input_signature=signature)
    try:
        tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET, output_path=str(path),
                                      inputs_as_nchw=["input:0"] if nchw else None)
    except Exception as exc:
        raise EdgeliteError(f"ONNX conversion failed: {one_line(exc, last=True)}") from None
    return path


# x86 AVX2 without VNNI multiplies u8 activations by s8 weights with VPMADDUBSW, which adds each
# pair of neighbouring products (k = 2j, 2j+1) into a saturating int16: a pair above this limit is
# silently clipped (onnxruntime's quantization docs), and MobileNetV2 lost 6 points of agreement.
INT16_MAX = 32767


def quantize_int8(fp32_path: Path, path: Path, calibration: Callable[[], Iterable[np.ndarray]],
                  exclude: Sequence[str] = (), method: str = "minmax", saturation_safe: bool = True) -> dict:
    """Static QDQ: per-channel int8 weights, uint8 activations, calibrated on the given float batches.

    `exclude` names nodes kept in float; `method` is minmax, percentile or entropy. With
    `saturation_safe`, weight scales are widened just enough, channel by channel, that no pair of
    neighbouring products can overflow int16 for the activations seen in calibration: the same
    file then computes the same numbers with the u8 x s8 integer kernels of every CPU.
    Returns the recipe as recorded in the artifact's metadata.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        _quantize(prepared, path, calibration, exclude, method, {})
        widened = {}
        if saturation_safe:
            widened = saturation_safe_weights(prepared, path, calibration, exclude)
            if widened:
                _quantize(prepared, path, calibration, exclude, method, widened)
    return {"method": f"onnxruntime quantize_static: QDQ, per-channel int8 weights, uint8 activations, {method}",
            "saturation_safe": saturation_safe, "widened_weights": len(widened), "float_nodes": list(exclude)}


def _quantize(prepared: Path, path: Path, calibration, exclude, method: str, overrides: dict) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise EdgeliteError(f"unknown calibration method {method!r} (choose from {', '.join(methods)})")
    name = _input_name(prepared)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration())

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    try:
        quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], nodes_to_exclude=list(exclude),
                        extra_options={"TensorQuantOverrides": overrides} if overrides else {})
    except Exception as exc:
        raise EdgeliteError(f"ONNX int8 quantization failed: {one_line(exc, last=True)}") from None


def _input_name(path: Path) -> str:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name


def saturation_safe_weights(prepared: Path, quantized: Path, calibration, exclude=()) -> dict:
    """TensorQuantOverrides that widen per-channel weight ranges where a u8 x s8 pair could overflow.

    For each Conv (not depthwise) and MatMul/Gemm, the uint8 activation each input channel reached in
    calibration (under the activation scale the plain quantization chose) bounds every product; the
    channel's scale grows until the largest same-sign neighbour pair fits int16 with rounding slack.
    Kernels larger than 1x1 may pair any two weights, so there the two largest products are taken.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(prepared))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qmodel = onnx.load(str(quantized))
    q_inits = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    act_params = {n.input[0]: (float(q_inits[n.input[1]]), int(q_inits[n.input[2]])) for n in qmodel.graph.node
                  if n.op_type == "QuantizeLinear" and n.input[0] not in q_inits and n.input[1] in q_inits}
    nodes = [n for n in model.graph.node
             if (n.op_type in ("MatMul", "Gemm") or (n.op_type == "Conv" and _group(n) == 1))
             and n.name not in exclude and len(n.input) > 1 and n.input[1] in weights and n.input[0] in act_params
             and not (n.op_type == "Gemm" and _attr(n, "transA"))]
    if not nodes:
        return {}
    tensors = sorted({n.input[0] for n in nodes})
    for t in tensors:
        model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    peaks: dict[str, np.ndarray] = {}
    for batch in calibration():
        for t, value in zip(tensors, session.run(tensors, {name: batch})):
            scale, zero_point = act_params[t]
            raw = np.clip(np.round(value / scale + zero_point), 0, 255)
            axis = 1 if value.ndim == 4 else value.ndim - 1
            peak = raw.max(axis=tuple(a for a in range(value.ndim) if a != axis))
            peaks[t] = np.maximum(peaks.get(t, 0), peak)
    overrides = {}
    for n in nodes:
        w = weights[n.input[1]]
        if n.op_type == "Conv":
            per_channel, axis = w.reshape(w.shape[0], w.shape[1], -1), 0  # [Cout, Cin, kh*kw]
        elif n.op_type == "Gemm" and _attr(n, "transB"):
            per_channel, axis = w[:, :, None], 0  # [N, K]
        else:
            per_channel, axis = w.T[:, :, None], 1  # MatMul [K, N]
        bound = _pair_bound(per_channel, peaks[n.input[0]])
        absmax = np.abs(per_channel).reshape(len(per_channel), -1).max(axis=1)
        # symmetric int8: q = w / (R / 127); each of two rounded products may gain half a unit of 255
        needed = bound * 127 / (INT16_MAX - 255)
        if (needed > absmax * 1.0001).any():
            ranges = np.maximum(absmax, needed)
            overrides[n.input[1]] = [{"axis": axis, "rmax": np.float32(r), "rmin": np.float32(-r)} for r in ranges]
    return overrides


def _pair_bound(w: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Largest |a1*w1 + a2*w2| a channel of w [C, K, kernel] can reach with activations <= peak [K]."""
    products = np.abs(w) * peak[None, :, None]
    if w.shape[2] == 1:  # K in order: neighbours (2j, 2j+1) meet; opposite signs cannot add up
        signed = (w * peak[None, :, None])[:, :, 0]
        if signed.shape[1] % 2:
            signed = np.pad(signed, ((0, 0), (0, 1)))
        a, b = signed[:, 0::2], signed[:, 1::2]
        pairs = np.where(a * b > 0, np.abs(a) + np.abs(b), np.maximum(np.abs(a), np.abs(b)))
        return pairs.max(axis=1)
    top = np.sort(products.reshape(len(w), -1), axis=1)
    return top[:, -1] + (top[:, -2] if top.shape[1] > 1 else 0)


def _group(node) -> int:
    return _attr(node, "group") or 1


def _attr(node, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)


def embed_metadata(path: Path, document: dict, extra: dict[str, bytes] | None = None) -> None:
    """Store `document` as JSON in the model's metadata_props under 'edgelite', and each `extra`
    payload base64-encoded under its own key."""
    import base64

    import onnx

    model = onnx.load(str(path))
    props = {METADATA_KEY: json.dumps(document),
             **{key: base64.b64encode(payload).decode() for key, payload in (extra or {}).items()}}
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
