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


METHODS = {
    "minmax": Int8Method("min/max activation ranges; weight-error bias correction (TFLite), measured per-Conv "
                         "bias correction (ONNX)"),
}
DEFAULT = "minmax"


def int8_method(name: str | None) -> Int8Method:
    """The method of that name (DEFAULT for None); an unknown name is one clear error."""
    found = METHODS.get(name or DEFAULT)
    if found is None:
        raise EdgeliteError(f"unknown int8 method {name!r} (choose from {', '.join(METHODS)})")
    return found
