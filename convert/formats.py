"""One small object per file format, for what differs between TFLite and ONNX exports: the build of each
precision, its recipe, how metadata goes in, and what its rescue uses (the per-layer ranker and its measure,
the other methods it tries, the file a passing try leaves)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from edgelite.errors import EdgeliteError
from edgelite.quiet import quiet

from . import bias, onnx_export, tflite
from .builds import Builds
from .float_logits import tflite_float_logits
from .int8_methods import int8_method

TYPICAL = "typical"  # a rescue's method: calibrated without the atypical samples (atypical.py)


class TFLiteFormat:
    family = "tflite"
    # the ranker's measure, by precision: lower is worse for dB, higher for the others (layers.worst_first)
    report_keys = {"int8": "rmse_scale", "dynamic": "output_sqnr_db"}
    # what a rescue tries before layers in float, by precision ("typical": calibrated without atypical samples)
    methods = {"dynamic": ("bias_correction",), "int8": (TYPICAL,)}

    def __init__(self, builds: Builds, io_type: str):
        self.builds, self.io_type = builds, io_type

    def recipe(self, precision: str) -> dict:
        recipe = {"weights": {"fp32": "float32", "fp16": "float16"}.get(precision, "int8")}
        if precision == "int8":
            recipe.update(activations="int8", calibration_samples=len(self.builds.calib), io=self.io_type,
                          method="TFLiteConverter full-integer post-training quantization: per-channel int8 "
                                 "weights, int8 activations, min/max calibration",
                          **_head(self.builds), **_method(self.builds))
        return recipe

    def build(self, precision: str, staged: Path, exclude: Sequence[str] = (), method: str | None = None) -> dict:
        """Write the bare converted model to `staged`; returns its recipe. `exclude` (layers kept in float) and
        `method` ("bias_correction" for dynamic range) are a rescue's."""
        builds, recipe = self.builds, self.recipe(precision)
        if precision == "int8":
            builds = _int8_builds(builds, method, recipe)
        corrected = precision == "int8" or method == "bias_correction"  # dynamic range: a rescue's try
        if corrected and builds.calib is None:
            raise EdgeliteError("full int8 and bias correction need calibration images")
        with quiet():
            if precision == "dynamic" and exclude:
                data = builds.dynamic_layers().with_float(exclude)
            elif precision == "int8":
                data = tflite.quantize_calibrated(builds.calibrated(), self.io_type, exclude)
            else:
                data = builds.tflite(precision)  # made once: fp32 is also int8's bias correction reference
            if precision == "dynamic" and builds.float_depthwise:
                recipe["float_depthwise"] = builds.float_depthwise  # layers with float weights (no hybrid kernel)
            if corrected:
                data, recipe["bias_correction"], skipped = bias.correct_tflite(data, builds.tflite_fp32(),
                                                                               builds.float_means())
                if skipped:
                    recipe["bias_correction_skipped"] = skipped  # why a layer's bias did not change
            if precision == "int8":
                if builds.ranges_changed is not None:
                    recipe["ranges_changed"] = builds.ranges_changed  # activation ranges other than min/max
                if int8_method(builds.int8_method).float_logits:
                    data, why = tflite_float_logits(data)
                    recipe.update({"float_logits_skipped": why} if why else _float_head(recipe))
        staged.write_bytes(data)
        if exclude:
            recipe["float_layers"] = list(exclude)
        return recipe

    def embed(self, staged: Path, meta: dict, extra: dict | None = None) -> None:
        """Metadata into the converter's bytes (kept beside as .bare, so that it can be embedded again)."""
        bare = self.unembedded(staged)
        if not bare.exists():
            shutil.copyfile(staged, bare)
        staged.write_bytes(tflite.embed_metadata(bare.read_bytes(), meta, extra))

    def unembedded(self, staged: Path) -> Path:
        """The file as the converter made it, before any metadata."""
        return self.builds.tmp / (staged.name + ".bare")

    def built_anew(self, staged: Path) -> None:
        """`staged` was just built: its old bare copy is stale."""
        self.unembedded(staged).unlink(missing_ok=True)

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """NHWC float images as this format's model takes them."""
        return images

    def layer_report(self, precision: str, staged: Path, sample: np.ndarray) -> list[dict]:
        """The ranker: one row per quantized layer, measured on `sample`."""
        if precision == "dynamic":
            from .dynamic_range import tflite_dynamic_layer_report

            return tflite_dynamic_layer_report(self.builds.tflite_dynamic(), self.builds.tflite_fp32(), sample)
        from .tflite_layer_error import tflite_layer_report

        return tflite_layer_report(self.builds.int8().calibrated(), sample, self.io_type)


class OnnxFormat:
    family = "onnx"
    report_keys = {"int8": "sqnr_db"}
    methods = {"int8": (TYPICAL, "percentile", "entropy")}  # the TFLite converter calibrates min/max only

    def __init__(self, builds: Builds):
        self.builds = builds

    def recipe(self, precision: str) -> dict:
        recipe = {"weights": {"fp32": "float32", "fp16": "float16"}.get(precision, "int8")}
        if precision == "int8":
            recipe.update(activations="uint8", calibration_samples=len(self.builds.calib), io="float32",
                          **_head(self.builds), **_method(self.builds))
        recipe.update(opset=onnx_export.OPSET, layout="NCHW" if self.builds.nchw else "NHWC")
        return recipe

    def build(self, precision: str, staged: Path, exclude: Sequence[str] = (), method: str | None = None) -> dict:
        """Write the bare converted model to `staged`; returns its recipe. `exclude` (nodes kept in float) and
        `method` (a calibration method instead of the int8 method's own) are a rescue's."""
        recipe, chosen = self.recipe(precision), int8_method(self.builds.int8_method)
        with quiet():
            if precision == "fp32":
                shutil.copyfile(self.builds.onnx_fp32(), staged)
            else:
                builds = _int8_builds(self.builds, method, recipe)
                batches = builds.batches("ONNX int8 calibration")
                recipe.update(onnx_export.quantize_int8(builds.onnx_fp32(), staged,
                                                        lambda: (self.inputs(b) for b in batches()),  # NCHW too
                                                        exclude, chosen.onnx_calibration
                                                        if method in (None, TYPICAL) else method,
                                                        options=chosen.onnx_options,
                                                        float_logits=chosen.float_logits))
                if chosen.float_logits and "float_logits_skipped" not in recipe:
                    recipe.update(_float_head(recipe))
        return recipe

    def embed(self, staged: Path, meta: dict, extra: dict | None = None) -> None:
        onnx_export.embed_metadata(staged, meta, extra)

    def unembedded(self, staged: Path) -> Path:
        """ONNX metadata is replaced in place: the file itself."""
        return staged

    def built_anew(self, staged: Path) -> None:
        pass

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return images.transpose(0, 3, 1, 2) if self.builds.nchw else images

    def layer_report(self, precision: str, staged: Path, sample: np.ndarray) -> list[dict]:
        from .onnx_layer_error import onnx_layer_report

        return onnx_layer_report(self.builds.int8().onnx_fp32(), staged, sample, "input")


def _head(builds: Builds) -> dict:
    """An int8 recipe's head: the logits in int8 and the softmax in float after them, where the model ends in
    a softmax (Builds.int8)."""
    return {"head": "int8 logits, softmax in float"} if builds.int8().logits else {}


def _int8_builds(builds: Builds, method: str | None, recipe: dict) -> Builds:
    """What an int8 export is built from: the logits where the model ends in a softmax (Builds.int8), calibrated
    without the atypical samples for the rescue's TYPICAL try (Builds.typical; the recipe says how many it kept
    and left out)."""
    builds = builds.int8()
    if method == TYPICAL:
        builds = builds.typical()
        recipe.update(calibration_samples=len(builds.calib), atypical_samples_left_out=builds.left_out)
    return builds


def _float_head(recipe: dict) -> dict:
    """An int8 recipe whose logits come out in float32 (float_logits.py): its head says so."""
    return {"head": "int8 layers, float32 logits" + (", softmax in float" if "head" in recipe else "")}


def _method(builds: Builds) -> dict:
    """An int8 recipe's method: its name (int8_methods.METHODS) and what it does."""
    return {"int8_method": builds.int8_method, "int8_method_summary": int8_method(builds.int8_method).summary}


def outputs(builds: Builds, precision: str, document_outputs: str) -> str:
    """What an artifact's output holds: an int8 one built from the logits holds logits."""
    return "logits" if precision == "int8" and builds.int8().logits else document_outputs


def formats(builds: Builds, io_type: str) -> dict:
    """family -> its format object."""
    return {"tflite": TFLiteFormat(builds, io_type), "onnx": OnnxFormat(builds)}
