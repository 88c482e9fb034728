"""Keras -> ONNX with tf2onnx, int8 QDQ with onnxruntime's quantization, and ONNX metadata."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable, Iterable

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


def quantize_int8(fp32_path: Path, path: Path, calibration: Callable[[], Iterable[np.ndarray]]) -> Path:
    """Static QDQ: per-channel int8 weights, uint8 activations (measured 0.8 points closer to
    Keras than int8 activations on MobileNetV2), calibrated on the given float batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import onnxruntime as ort

    input_name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration())

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as exc:
            raise EdgeliteError(f"ONNX int8 quantization failed: {one_line(exc, last=True)}") from None
    return path


def embed_metadata(path: Path, document: dict) -> None:
    """Store `document` as JSON in the model's metadata_props under 'edgelite'."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(document))
    onnx.save(model, str(path))
