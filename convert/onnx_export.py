"""Keras -> ONNX with tf2onnx, int8 QDQ with onnxruntime's quantization, and ONNX metadata."""
from __future__ import annotations

import contextlib
import itertools
import json
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edgelite.backends import METADATA_KEY
from edgelite.convert import bias
from edgelite.errors import EdgeliteError, one_line
from edgelite.quiet import quiet

from .float_logits import onnx_float_logits
from .tf_graph import frozen_graph

OPSET = 17
# onnxruntime's histogram calibrators (percentile, entropy) hold every activation of every calibration sample
# until the end: MobileNetV2 with 400 samples grew past 13 GB and was killed (benchmarks/RESULTS.md, issue 30),
# EfficientNetB3 at 300x300 with 64 past 19 GB. They see at most HISTOGRAM_SAMPLES samples, and no more than
# HISTOGRAM_BYTES of activations in all (at least HISTOGRAM_MIN_SAMPLES); min/max keeps only running extremes and
# sees them all.
HISTOGRAM_SAMPLES = 64
HISTOGRAM_BYTES = 3 * 2**30
HISTOGRAM_MIN_SAMPLES = 8


def to_onnx(model, path: Path, nchw: bool = False) -> Path:
    """Convert with an explicit input signature (NHWC, or NCHW input on request)."""
    import tf2onnx

    shape = tuple(model.inputs[0].shape)
    if len(shape) not in (3, 4) or None in shape[1:]:
        raise EdgeliteError(f"cannot export an input of shape {shape}: expected [N, H, W, C] or [N, H, W]")
    if nchw and len(shape) != 4:
        raise EdgeliteError("--nchw needs an input with a channel axis [N, H, W, C]")
    try:
        graph_def, input_name, output_name = frozen_graph(model, (None,) + shape[1:])
        options = dict(input_names=[input_name], output_names=[output_name], opset=OPSET, output_path=str(path),
                       tensors_to_rename={input_name: "input", output_name: "output_0"},
                       inputs_as_nchw=[input_name] if nchw else None)
        with quiet():
            try:
                with _weights_written_once():
                    tf2onnx.convert.from_graph_def(graph_def, **options)
            except Exception:  # one of tf2onnx's optimizers failed (its transpose optimizer on a squeeze-excite's
                # hard-sigmoid: MobileNetV3): tf2onnx's own way, a copy of the graph per optimizer and a failed one
                # skipped
                tf2onnx.convert.from_graph_def(graph_def, **options)
        _check_runnable(path)
    except EdgeliteError as exc:
        raise EdgeliteError(f"ONNX conversion failed: {exc}") from None
    except Exception as exc:
        raise EdgeliteError(f"ONNX conversion failed: {one_line(exc, last=True)}") from None
    return path


@contextlib.contextmanager
def _weights_written_once():
    """tf2onnx's optimizers bound VGG16's conversion by memory, not work. After each optimizer pass tf2onnx
    rewrites every node's NodeProto (`Node.update_proto`: `del attribute[:]`, then the attributes again), a copy of
    every weight each time; under protobuf's upb backend the memory of what was removed is freed only with the
    message, and tf2onnx also deep-copies the whole graph before each optimizer (to fall back if one fails). VGG16
    (553 MB of weights) grew past 23 GB and was killed. Here a Const node whose value is the one already written is
    not rewritten (a changed value is a new attribute object: `Node.set_tensor_value`), and the deep copies are
    off (tf2onnx reads TF2ONNX_CATCH_ERRORS). An optimizer that fails then fails the conversion, which `to_onnx`
    runs again tf2onnx's own way."""
    import os

    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        value = self._attr.get("value") if self.is_const() else None
        if value is None or getattr(self, "_written", None) is not value:
            original(self, external_tensor_storage)
            self._written = value
        elif list(self._op.output) != list(self.output):
            del self._op.output[:]
            self._op.output.extend(self.output)

    saved = os.environ.get("TF2ONNX_CATCH_ERRORS")
    Node.update_proto, os.environ["TF2ONNX_CATCH_ERRORS"] = update_proto, "FALSE"
    try:
        yield
    finally:
        Node.update_proto = original
        if saved is None:
            del os.environ["TF2ONNX_CATCH_ERRORS"]
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = saved


def _check_runnable(path: Path) -> None:
    """tf2onnx goes on past a TensorFlow op it cannot convert and leaves it in the file, which onnxruntime then
    refuses to load with a long message: name those ops in one line instead."""
    from collections import Counter

    import onnx

    model = onnx.load(str(path))
    unknown = Counter(node.op_type for node in model.graph.node
                      if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type))
    if unknown:
        raise EdgeliteError("tf2onnx left TensorFlow ops it has no ONNX conversion for: "
                            + ", ".join(f"{op} x{count}" for op, count in unknown.most_common()))


def quantize_int8(fp32_path: Path, path: Path, calibration: Callable[[], Iterable[np.ndarray]],
                  exclude: Sequence[str] = (), method: str = "minmax", correct_bias: bool = True,
                  options: dict | None = None, float_logits: bool = False) -> dict:
    """Static QDQ: per-channel int8 weights, uint8 activations, calibrated on the given float batches.

    `exclude` names nodes kept in float; `method` is minmax, percentile or entropy; `options` are
    quantize_static's extra_options (int8_methods.Int8Method.onnx_options); `float_logits` leaves the last
    weighted layer's output unquantized (float_logits.py); `correct_bias`
    takes the mean error of the rounded weights out of the Conv biases (convert/bias.py). On CPUs whose
    u8 x s8 kernels saturate (x86 AVX2 without VNNI) the runtime runs the same weights as uint8
    (runtime/int8.py, `edgelite.int8`), so the file computes the same integers everywhere.
    Returns the recipe as recorded in the artifact's metadata.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        _quantize(prepared, path, calibration, exclude, method, options or {})
        corrected, skipped = (bias.correct_onnx(prepared, path, calibration) if correct_bias
                              else (0, {"not asked for": 1}))
        unfloated = onnx_float_logits(path, prepared) if float_logits else None
    recipe = {"method": f"onnxruntime quantize_static: QDQ, per-channel int8 weights, uint8 activations, {method}"
                        + "".join(f", {k}={v}" for k, v in sorted((options or {}).items())),
              "bias_correction": corrected, "float_nodes": list(exclude)}
    if skipped:
        recipe["bias_correction_skipped"] = skipped  # why a Conv's bias was not corrected
    if unfloated:
        recipe["float_logits_skipped"] = unfloated
    return recipe


def _quantize(prepared: Path, path: Path, calibration, exclude, method: str, options: dict) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise EdgeliteError(f"unknown calibration method {method!r} (choose from {', '.join(methods)})")
    name = _input_name(prepared)

    class Reader(CalibrationDataReader):
        def __init__(self):
            batches = calibration()
            self.batches = (iter(batches) if method == "minmax"
                            else itertools.islice(batches, histogram_samples(prepared)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    try:
        quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], nodes_to_exclude=list(exclude), extra_options=options)
    except Exception as exc:
        raise EdgeliteError(f"ONNX int8 quantization failed: {one_line(exc, last=True)}") from None


def histogram_samples(prepared: Path) -> int:
    """How many samples a histogram calibrator may keep: HISTOGRAM_BYTES over one sample's float activations."""
    return int(min(HISTOGRAM_SAMPLES, max(HISTOGRAM_MIN_SAMPLES, HISTOGRAM_BYTES // activation_bytes(prepared))))


def activation_bytes(path: Path) -> int:
    """One sample's float32 activations in a model: the elements of every tensor whose shape shape inference
    finds (the batch axis as 1), times 4."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph if model.graph.value_info else onnx.shape_inference.infer_shapes(model).graph
    elements = 0
    for info in graph.value_info:
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in info.type.tensor_type.shape.dim]
        elements += int(np.prod(dims, dtype=np.int64)) if dims else 1
    return max(4 * elements, 1)


def _input_name(path: Path) -> str:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].name


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
