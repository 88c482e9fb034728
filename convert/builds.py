"""What several formats' exports share, each made once per conversion and kept in its temporary folder: the
tf2onnx export, the SavedModel, the float TFLite conversions, the calibrated model, the float model's layer
input means, the dynamic-range model's layers."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgelite.errors import EdgeliteError
from edgelite.quiet import quiet

from . import bias, onnx_export, tflite
from .int8_methods import DEFAULT, int8_method


@dataclass
class Builds:
    model: object  # the Keras model
    tmp: Path
    calib: np.ndarray | None  # float NHWC calibration samples
    nchw: bool  # ONNX with NCHW input
    logits: bool = False  # the model is the user's without its final softmax (Builds.int8)
    progress: object = None  # a text stream for the long steps' progress bars (converters' chatter is silenced)
    int8_method: str = DEFAULT  # int8_methods.METHODS: how the int8 formats are calibrated and corrected
    ranges_changed: int | None = None  # int8: activation ranges the method chose other than min/max
    float_depthwise: int = 0  # dynamic range: depthwise layers given float weights (dynamic_range.float_depthwise)
    _float_means: dict | None = None
    _dynamic_layers: object = None
    _saved_model: Path | bool | None = None
    _int8: "Builds | None" = None
    _typical: "Builds | EdgeliteError | None" = None
    left_out: int = 0  # calibration samples left out as atypical (Builds.typical)

    def int8(self) -> "Builds":
        """What the int8 formats are built from: the model without its final softmax where it ends in one
        (keras_variants.without_softmax), so that the int8 file's last tensor is the logits at their own scale
        and the softmax runs in float on the device (`outputs: logits` in its metadata); an int8 SOFTMAX has
        its output scale fixed at 1/256, which rounds a weak or many-class model's probabilities (about 0.001
        each over 1000 classes) to ties or zeros. Else these builds themselves."""
        if self._int8 is None:
            from .keras_variants import without_softmax

            sample = self.calib[:2] if self.calib is not None else None
            logits = without_softmax(self.model, sample) if sample is not None else None
            if logits is None:
                self._int8 = self
            else:
                (self.tmp / "logits").mkdir(exist_ok=True)
                self._int8 = Builds(logits, self.tmp / "logits", self.calib, self.nchw, logits=True,
                                    progress=self.progress, int8_method=self.int8_method)
        return self._int8

    def typical(self) -> "Builds":
        """These builds calibrated without their atypical samples (atypical.py), for the int8 rescue's "typical"
        try: the float conversions are shared, the ranges and bias-correction means measured anew. An error
        (one line, remembered) where no sample is atypical or too many are."""
        if self._typical is None:
            from .atypical import typical_samples

            try:
                kept = typical_samples(self.tflite_fp32(), self.calib, self.bar(
                    self.calibration_batches(), "atypical calibration samples", len(self.calib)))
            except EdgeliteError as exc:
                self._typical = exc
            else:
                folder = self.tmp / "typical"
                folder.mkdir(exist_ok=True)
                for name in ("fp32.tflite", "tf2onnx.onnx"):  # the float conversions, not made again
                    if (self.tmp / name).exists() and not (folder / name).exists():
                        try:
                            os.link(self.tmp / name, folder / name)
                        except OSError:  # a file system without hard links
                            shutil.copyfile(self.tmp / name, folder / name)
                self._typical = Builds(self.model, folder, kept, self.nchw, logits=self.logits,
                                       progress=self.progress, int8_method=self.int8_method,
                                       _saved_model=self._saved_model, left_out=len(self.calib) - len(kept))
                self._typical._int8 = self._typical
        if isinstance(self._typical, EdgeliteError):
            raise self._typical
        return self._typical

    def calibration_batches(self):
        return (self.calib[i:i + 1] for i in range(len(self.calib)))

    def batches(self, step: str):
        """`calibration_batches` for a long step (int8 calibration, bias correction), under a progress bar."""
        return lambda: self.bar(self.calibration_batches(), step, len(self.calib))

    def bar(self, items, step: str, total: int):
        """`items` under a progress bar with its rate and an estimate of what is left on the `progress` stream,
        when there is one (a long step: calibration, an artifact's check on a big model)."""
        if self.progress is None:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=step, total=total, file=self.progress, leave=False, mininterval=1.0, unit="image")

    def onnx_fp32(self) -> Path:
        """The tf2onnx export, made once and shared by onnx-fp32 and onnx-int8."""
        path = self.tmp / "tf2onnx.onnx"
        if not path.exists():
            onnx_export.to_onnx(self.model, path, self.nchw)
        return path

    def saved_model(self) -> Path | None:
        """The Keras model exported once for every TFLite conversion (the converter would export it each time)."""
        if self._saved_model is None:
            with quiet():
                self._saved_model = tflite.export_saved_model(self.model, self.tmp / "saved_model") or False
        return self._saved_model or None

    def tflite(self, kind: str) -> bytes:
        """A TFLite conversion of the Keras model (fp32, fp16, dynamic), made once: fp32 is also what int8 is
        calibrated from and the reference of bias correction, dynamic what its rescue starts from. Dynamic
        range keeps its depthwise weights in float (dynamic_range.float_depthwise: XNNPACK runs no hybrid
        depthwise)."""
        path = self.tmp / f"{kind}.tflite"
        if not path.exists():
            with quiet():
                data = tflite.to_tflite(self.model, kind, saved_model=self.saved_model())
                if kind == "dynamic":
                    from .dynamic_range import float_depthwise

                    data, self.float_depthwise = float_depthwise(data, self.tflite_fp32())
            path.write_bytes(data)
        return path.read_bytes()

    def tflite_fp32(self) -> bytes:
        return self.tflite("fp32")

    def tflite_dynamic(self) -> bytes:
        return self.tflite("dynamic")

    def calibrated(self) -> bytes:
        """The float conversion with its tensor ranges over the calibration set, measured once: every full-int8
        build (the first, each rescue try, the per-layer report) is a quantization of it. The int8 method may
        choose other ranges than the calibrator's min/max (tflite_ranges.py; how many: `ranges_changed`)."""
        path = self.tmp / "calibrated.tflite"
        if not path.exists():
            with quiet():
                data = tflite.calibrate(self.tflite_fp32(), self.batches("TFLite int8 calibration"))
                if int8_method(self.int8_method).tflite_ranges == "mse":
                    from .tflite_ranges import mse_ranges

                    data, self.ranges_changed = mse_ranges(data, self.tflite_fp32(),
                                                           self.batches("TFLite activation ranges"))
            path.write_bytes(data)
        return path.read_bytes()

    def float_means(self) -> dict:
        """The float model's layer input means over the calibration set, measured once: every int8 TFLite
        build (the first, each rescue try) corrects its biases with them."""
        if self._float_means is None:
            with quiet():
                self._float_means = bias.input_means(self.tflite_fp32(), self.batches("int8 bias correction"))
        return self._float_means

    def dynamic_layers(self):
        """The dynamic-range model's weight-quantized layers, each of which its rescue can keep in float."""
        if self._dynamic_layers is None:
            from .dynamic_range import DynamicLayers

            self._dynamic_layers = DynamicLayers(self.tflite_dynamic(), self.tflite_fp32())
        return self._dynamic_layers


@contextlib.contextmanager
def progress_stream(verbose: bool):
    """Where the long steps' progress bars go: this process's stderr as it is now, kept open while the
    converters' chatter is silenced (quiet() points file descriptor 2 elsewhere); None when not verbose."""
    if not verbose:
        yield None
        return
    try:
        stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # a stderr with no descriptor (captured)
        yield None
        return
    with stream:
        yield stream
