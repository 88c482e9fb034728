"""The ways `convert` can make its int8 artifacts, by name: how each format's activation ranges are calibrated and
its biases corrected. DEFAULT is what every int8 export uses unless told; `edgelite.benchmarks.int8_agreement`
measures them against each other (strict top-1 agreement with the fp32 export on photos calibration never saw, on
each kernel path), and the default is chosen on its numbers (benchmarks/RESULTS.md, issue 30)."""
from __future__ import annotations

from dataclasses import dataclass, field

from edgelite.errors import EdgeliteError


@dataclass(frozen=True)
class Int8Method:
    summary: str  # one line, as the artifact's recipe records it
    onnx_calibration: str = "minmax"  # onnxruntime CalibrationMethod: minmax, percentile, entropy
    onnx_options: dict = field(default_factory=dict)  # onnxruntime quantize_static extra_options
    tflite_ranges: str = "minmax"  # TFLite activation ranges: "minmax" (the calibrator's) or "mse" (tflite_ranges)
    float_logits: bool = False  # the last weighted layer writes float32 logits (float_logits.py)


METHODS = {
    "minmax": Int8Method("min/max activation ranges; weight-error bias correction (TFLite), measured per-Conv "
                         "bias correction (ONNX)"),
    # candidates measured against it (benchmarks/RESULTS.md, issue 30); each changes one thing
    "onnx-percentile": Int8Method("ONNX: activation ranges at the 99.999th percentile of calibration values",
                                  onnx_calibration="percentile"),
    "onnx-entropy": Int8Method("ONNX: activation ranges by KL divergence (entropy calibration)",
                               onnx_calibration="entropy"),
    "onnx-moving-average": Int8Method("ONNX: activation ranges as the moving average of each image's min/max",
                                      onnx_options={"CalibMovingAverage": True}),
    "tflite-mse": Int8Method("TFLite: activation ranges of conv and add outputs chosen for the least squared error",
                             tflite_ranges="mse"),
    "float-logits": Int8Method("min/max activation ranges and bias correction as minmax; the last weighted "
                               "layer's int8 sums written as float32 logits (no int8 output)", float_logits=True),
}
# float-logits, chosen on benchmarks/RESULTS.md's figures (issue 30): over three networks, two calibration
# directions and three kernel paths, 29 fewer changed answers than minmax and 1 more, every exact tie gone; the
# PyTorch-trained small CNN's int8 files 97.5 % -> 99.4 % / 99.0 % strict agreement; same size and speed.
DEFAULT = "float-logits"
OFFERED = ("float-logits", "minmax")  # what `edgelite convert --int8-method` takes; the rest are int8_agreement's


def offered_method(name: str | None) -> str | None:
    """A name `convert --int8-method` takes (None: the default); another is one clear error."""
    if name is not None and name not in OFFERED:
        raise EdgeliteError(f"unknown int8 method {name!r} (choose from {', '.join(OFFERED)})")
    return name


def int8_method(name: str | None) -> Int8Method:
    """The method of that name (DEFAULT for None); an unknown name is one clear error."""
    found = METHODS.get(name or DEFAULT)
    if found is None:
        raise EdgeliteError(f"unknown int8 method {name!r} (choose from {', '.join(METHODS)})")
    return found
