"""Keras -> TFLite in every flavour, and the metadata entry that makes a .tflite self-describing."""
from __future__ import annotations

import json
from typing import Callable, Iterable

import numpy as np

from edgelite.backends import METADATA_KEY
from edgelite.errors import EdgeliteError, one_line

KINDS = ("fp32", "fp16", "dynamic", "int8")


def to_tflite(model, kind: str, calibration: Callable[[], Iterable[np.ndarray]] | None = None,
              io_type: str = "int8") -> bytes:
    """Convert a Keras model. `calibration` yields float batches of one (full int8 only)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind == "int8":
        if calibration is None:
            raise EdgeliteError("full int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x] for x in calibration())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = io_dtype(io_type)
        converter.inference_input_type = io
        converter.inference_output_type = io
    elif kind != "fp32":
        raise EdgeliteError(f"unknown TFLite kind {kind!r} (choose from {', '.join(KINDS)})")
    try:
        return bytes(converter.convert())
    except Exception as exc:
        raise EdgeliteError(f"TFLite {kind} conversion failed: {one_line(exc, last=True)}") from None


def io_dtype(io_type: str):
    """The TensorFlow dtype of a full-int8 model's input and output: int8, uint8 or float32."""
    import tensorflow as tf

    found = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}.get(io_type)
    if found is None:
        raise EdgeliteError(f"unknown int8 input/output type {io_type!r} (int8, uint8 or float32)")
    return found


def embed_metadata(tflite: bytes, document: dict, extra: dict[str, bytes] | None = None) -> bytes:
    """Store `document` as JSON in the model's metadata under 'edgelite', and each `extra` payload (e.g. the
    check set) under its own name, entries of the same names replaced; in the same pass, the model is also
    described in standard TFLite Metadata (labels, NormalizationOptions, colour space), so the TFLite Task
    Library, MediaPipe and other tools understand it. The standard cannot say BGR or a centre crop: a BGR
    model gets no NormalizationOptions, and such tools resize the whole frame."""
    from .tflite_metadata import write

    spec = document.get("preprocess") or {}
    rgb = spec.get("channel_order", "RGB") == "RGB" and spec.get("mean") and spec.get("std")
    source = (document.get("source") or {}).get("file", "model")
    return write(tflite, name=f"{source} (edgelite {document.get('format', '')})".strip(),
                 labels=document.get("labels"), mean=list(spec["mean"]) if rgb else None,
                 std=list(spec["std"]) if rgb else None,
                 color_space="GRAYSCALE" if spec.get("channels") == 1 else "RGB",
                 description="exported by edgelite; its full preprocessing is in the 'edgelite' metadata entry",
                 entries={METADATA_KEY: json.dumps(document).encode(), **(extra or {})})
