"""Keras -> TFLite in every flavour, and the metadata entry that makes a .tflite self-describing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgelite.backends import METADATA_KEY
from edgelite.errors import EdgeliteError, one_line

from .tflite_metadata import write

KINDS = ("fp32", "fp16", "dynamic", "int8")


def to_tflite(model, kind: str, calibration: Callable[[], Iterable[np.ndarray]] | None = None,
              io_type: str = "int8", saved_model: Path | None = None) -> bytes:
    """Convert a Keras model. `calibration` yields float batches of one (full int8 only). `saved_model` is the
    folder `export_saved_model` wrote for `model`: converting it gives the same model without exporting again."""
    import tensorflow as tf

    if saved_model is not None:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    else:
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


def export_saved_model(model, folder: Path) -> Path | None:
    """Write the SavedModel that `TFLiteConverter.from_keras_model` writes of `model` before each conversion
    (TF 2.21, lite.py `_convert_keras_to_saved_model`): a Keras 3 model's inference call (training=False) as
    the "serve" endpoint, a tf_keras model saved whole. Each format converted from it is the same model as
    from the Keras model (only the converter's CONVERSION_METADATA entry differs) and skips that export.
    None where it cannot be written: the converter's own fallback (freezing the model) is then used."""
    import functools

    import tensorflow as tf

    try:
        import keras

        if keras.__version__.startswith("3") and isinstance(model, keras.layers.Layer):
            if not isinstance(model, (keras.src.models.Functional, keras.src.models.Sequential)):
                return None  # a subclassed model: the converter finds its signature itself
            signature = tf.nest.map_structure(lambda x: tf.TensorSpec(x.shape, dtype=x.dtype, name=x.name),
                                              model.inputs)
            if isinstance(signature, list) and len(signature) > 1:
                signature = [signature]
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint("serve", functools.partial(model.__call__, training=False), signature)
            archive.write_out(str(folder))
        else:
            tf.saved_model.save(model, str(folder), options=tf.saved_model.SaveOptions(save_debug_info=True))
    except Exception:
        return None
    return folder


def calibrate(float_tflite: bytes, calibration: Callable[[], Iterable[np.ndarray]]) -> bytes:
    """The float model with every tensor's range over the calibration batches recorded: what the converter's
    full-int8 path quantizes (it calibrates the float conversion it has just made, which is `float_tflite`).
    Quantized by `quantize_calibrated`, as often as wanted, without converting or calibrating again.
    (Batches of 8 images instead of one at a time ran 12 % faster here and moved some ranges by a float
    rounding: not taken.)"""
    from tensorflow.lite.python.optimize import calibrator

    try:
        model = calibrator.add_intermediate_tensors(float_tflite)
        return bytes(calibrator.Calibrator(model).calibrate(
            lambda: ([np.asarray(x, np.float32)] for x in calibration())))
    except Exception as exc:
        raise EdgeliteError(f"TFLite int8 calibration failed: {one_line(exc, last=True)}") from None


def quantize_calibrated(calibrated: bytes, io_type: str = "int8", float_nodes: Sequence[str] = (),
                        debug: bool = False) -> bytes:
    """Full int8 from a `calibrate`d model, as `TFLiteConverter` makes it (its MLIR quantizer, per-channel
    weights). `float_nodes` (output tensor names) are kept in float, as QuantizationDebugger's denylist does;
    `debug` adds its NumericVerify ops (the per-layer report). With float nodes or debug, the input and output
    are converted to `io_type` afterwards, and an end kept in float stays float32."""
    from tensorflow.lite.python import convert
    from tensorflow.lite.python.util import modify_model_io_type

    io = io_dtype(io_type)
    try:
        if not float_nodes and not debug:
            return bytes(convert.mlir_quantize(calibrated, False, input_data_type=io, output_data_type=io))
        model = convert.mlir_quantize(calibrated, False, enable_numeric_verify=debug,
                                      denylisted_nodes=list(float_nodes) or None)
        return bytes(model) if debug else bytes(modify_model_io_type(model, io, io))
    except Exception as exc:
        raise EdgeliteError(f"TFLite int8 quantization failed: {one_line(exc, last=True)}") from None


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
    spec = document.get("preprocess") or {}
    rgb = spec.get("channel_order", "RGB") == "RGB" and spec.get("mean") and spec.get("std")
    source = (document.get("source") or {}).get("file", "model")
    return write(tflite, name=f"{source} (edgelite {document.get('format', '')})".strip(),
                 labels=document.get("labels"), mean=list(spec["mean"]) if rgb else None,
                 std=list(spec["std"]) if rgb else None,
                 color_space="GRAYSCALE" if spec.get("channels") == 1 else "RGB",
                 description="exported by edgelite; its full preprocessing is in the 'edgelite' metadata entry",
                 entries={METADATA_KEY: json.dumps(document).encode(), **(extra or {})})
