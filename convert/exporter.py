"""One format's export: convert, verify the file as the device opens it, rescue one below its gate, put it
in place with its metadata and check set. `pipeline.convert` runs one Exporter over every format."""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgelite import checkset
from edgelite.backends import CHECK_KEY, open_backend
from edgelite.classifier import Classifier, sidecar_path
from edgelite.errors import EdgeliteError, one_line
from edgelite.files import move_atomic, write_json
from edgelite.layers import format_table, format_tries, method_label
from edgelite.parity import NEAR_TIE, min_agreement, parity
from edgelite.quiet import quiet
from edgelite.timing import time_calls

from . import bias, onnx_export, tflite

log = logging.getLogger(__name__)
RESCUED = ("int8", "dynamic")  # precisions whose exports below their gate are rescued (`Exporter.rescued`)
REPORT_KEYS = {"tflite-int8": "rmse_scale", "tflite-dynamic": "output_sqnr_db", "onnx-int8": "sqnr_db"}


@dataclass
class Artifact:
    format: str
    path: Path | None
    size: int = 0
    seconds: float = 0.0  # wall time of its export, shared work it was the first to need included
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) in that export
    parity: dict = field(default_factory=dict)
    passed: bool = False
    error: str | None = None
    scores: np.ndarray | None = field(default=None, repr=False)  # probabilities on the check images

    @property
    def precision(self) -> str:
        return self.format.split("-", 1)[1]

    def summary(self) -> str:
        """One line: the verdict, agreement with Keras, size and time."""
        if self.error:
            return f"  {self.format:15s} FAILED  {self.error}"
        p = self.parity
        verdict = "ok" if self.passed else "BELOW THRESHOLD"
        return (f"  {self.format:15s} {verdict:5s} agreement {p['agreement']:.1%} (top-1 {p['top1_agreement']:.1%}, "
                f"{p['near_ties_flipped']} near-ties flipped), "
                f"top-5 overlap {p['top5_overlap']:.1%}, max |dp| {p['max_abs_diff']:.2e}, "
                f"{self.size / 1e6:.2f} MB, {self.seconds:.1f}s")



@dataclass
class Exporter:
    """What every format's export shares: the model, the data and where things go."""

    model: object
    tmp: Path
    out_dir: Path
    stem: str
    calib: np.ndarray | None  # float NHWC calibration samples
    io_type: str
    nchw: bool
    checks: np.ndarray  # float NHWC check images
    reference: np.ndarray  # Keras probabilities on them
    document: dict  # the metadata every artifact shares
    thresholds: dict | None
    force: bool
    check_set: dict
    rescue: bool = True
    near_tie: float = NEAR_TIE
    _float_means: dict | None = None
    _dynamic_layers: object = None
    _float_depthwise: int = 0  # dynamic range: depthwise layers given float weights (rescue.float_depthwise)
    _saved_model: Path | bool | None = None

    def calibration_batches(self):
        return (self.calib[i:i + 1] for i in range(len(self.calib)))

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
        range keeps its depthwise weights in float (rescue.float_depthwise: XNNPACK runs no hybrid depthwise)."""
        path = self.tmp / f"{kind}.tflite"
        if not path.exists():
            with quiet():
                data = tflite.to_tflite(self.model, kind, saved_model=self.saved_model())
                if kind == "dynamic":
                    from .rescue import float_depthwise

                    data, self._float_depthwise = float_depthwise(data, self.tflite_fp32())
            path.write_bytes(data)
        return path.read_bytes()

    def tflite_fp32(self) -> bytes:
        return self.tflite("fp32")

    def tflite_dynamic(self) -> bytes:
        return self.tflite("dynamic")

    def calibrated(self) -> bytes:
        """The float conversion with its tensor ranges over the calibration set, measured once: every full-int8
        build (the first, each rescue try, the per-layer report) is a quantization of it."""
        path = self.tmp / "calibrated.tflite"
        if not path.exists():
            with quiet():
                path.write_bytes(tflite.calibrate(self.tflite_fp32(), self.calibration_batches))
        return path.read_bytes()

    def float_means(self) -> dict:
        """The float model's layer input means over the calibration set, measured once: every int8 TFLite
        build (the first, each rescue try) corrects its biases with them."""
        if self._float_means is None:
            with quiet():
                self._float_means = bias.input_means(self.tflite_fp32(), self.calibration_batches)
        return self._float_means

    def dynamic_layers(self):
        """The dynamic-range model's weight-quantized layers, each of which its rescue can keep in float."""
        if self._dynamic_layers is None:
            from .rescue import DynamicLayers

            self._dynamic_layers = DynamicLayers(self.tflite_dynamic(), self.tflite_fp32())
        return self._dynamic_layers

    def export(self, fmt: str) -> Artifact:
        """Convert, verify the file as the device opens it, rescue a failed int8 or dynamic-range export, put it
        in place."""
        artifact = Artifact(fmt, None)
        family, precision = fmt.split("-", 1)
        final = self.out_dir / f"{self.stem}_{precision}.{family}"
        staged = self.tmp / final.name
        started, cpu = time.perf_counter(), time.process_time()
        try:
            least = min_agreement(precision, self.thresholds)
            recipe = self.build(family, precision, staged)
            classifier, artifact.scores = self.measure(staged, family, precision, recipe)
            artifact.parity = parity(self.reference, artifact.scores, self.near_tie)
            if artifact.parity["agreement"] < least and precision in RESCUED and self.rescue:
                recipe = self.rescued(family, precision, staged, artifact, least, recipe)
                classifier, artifact.scores = self.measure(staged, family, precision, recipe)
                artifact.parity = parity(self.reference, artifact.scores, self.near_tie)
            artifact.passed = artifact.parity["agreement"] >= least
            exported = np.concatenate([classifier.scores(classifier.prepare_pixels(p)) for p in self.check_set["pixels"]])
            kernels = {**checkset.cpu_kernels(), "backend": classifier.backend.version}
            del classifier
            meta = {**self.metadata(family, precision, recipe),
                    "parity": {**artifact.parity, "min_agreement": least, "kernels": kernels},
                    "check_set": {"images": len(exported), "pixels_sha256": self.check_set["sha256"],
                                  "encoding": "JPEG quality 90, 4:4:4, at the model's input size", "kernels": kernels}}
            blob = {CHECK_KEY: checkset.pack(self.check_set["blobs"], self.check_set["reference"], exported)}
            self.embed(staged, family, meta, blob)
            artifact.path = move_atomic(staged, final, self.force)
            write_json(sidecar_path(final), meta, self.force)
            artifact.size = final.stat().st_size
        except EdgeliteError as exc:
            artifact.error = str(exc)
        except Exception as exc:  # one format's failure must not stop the others
            artifact.error = f"{type(exc).__name__}: {one_line(exc)}"
        artifact.seconds, artifact.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        return artifact

    def build(self, family: str, precision: str, staged: Path, exclude: Sequence[str] = (),
              method: str = "minmax") -> dict:
        """Write the bare converted model to `staged`; returns its quantization recipe. `exclude` and
        `method` (ONNX: the calibration method; TFLite dynamic range: "bias_correction") are the rescue's."""
        recipe = self.recipe(family, precision)
        with quiet():
            if family == "tflite":
                corrected = precision == "int8" or method == "bias_correction"  # dynamic range: a rescue's try
                if corrected and self.calib is None:
                    raise EdgeliteError("full int8 and bias correction need calibration images")
                if precision == "dynamic" and exclude:
                    data = self.dynamic_layers().with_float(exclude)
                elif precision == "int8":
                    data = tflite.quantize_calibrated(self.calibrated(), self.io_type, exclude)
                else:
                    data = self.tflite(precision)  # made once: fp32 is also int8's bias correction reference
                if precision == "dynamic" and self._float_depthwise:
                    recipe["float_depthwise"] = self._float_depthwise  # layers with float weights (no hybrid kernel)
                if corrected:
                    data, recipe["bias_correction"] = bias.correct_tflite(data, self.tflite_fp32(), self.float_means())
                staged.write_bytes(data)
                if exclude:
                    recipe["float_layers"] = list(exclude)
            elif precision == "fp32":
                shutil.copyfile(self.onnx_fp32(), staged)
            else:
                recipe.update(onnx_export.quantize_int8(self.onnx_fp32(), staged, self.calibration_batches, exclude,
                                                        method))
        return recipe

    def metadata(self, family: str, precision: str, recipe: dict) -> dict:
        spec = {**self.document["preprocess"], **({"layout": "NCHW"} if family == "onnx" and self.nchw else {})}
        return {**self.document, "format": f"{family}-{precision}", "preprocess": spec, "quantization": recipe}

    def embed(self, staged: Path, family: str, meta: dict, extra: dict | None = None) -> None:
        if family == "tflite":
            bare = self.tmp / (staged.name + ".bare")
            if not bare.exists():
                shutil.copyfile(staged, bare)  # the converter's bytes, before any metadata
            staged.write_bytes(tflite.embed_metadata(bare.read_bytes(), meta, extra))
        else:
            onnx_export.embed_metadata(staged, meta, extra)

    def measure(self, staged: Path, family: str, precision: str, recipe: dict):
        """Probabilities on the check images from the file as the device opens it: metadata inside,
        no settings given."""
        (self.tmp / (staged.name + ".bare")).unlink(missing_ok=True)
        self.embed(staged, family, self.metadata(family, precision, recipe))
        classifier = Classifier(staged)
        inputs = self.checks.transpose(0, 3, 1, 2) if classifier.spec.layout == "NCHW" else self.checks
        return classifier, np.concatenate([classifier.scores(classifier.prepare(x[None])) for x in inputs])

    def rescued(self, family: str, precision: str, staged: Path, artifact: Artifact, least: float,
                recipe: dict) -> dict:
        """The least float fallback that passes the gate, chosen from a per-layer error report;
        the report is written beside the artifact. Leaves the chosen model in `staged`."""
        from . import rescue

        log.info(f"  {artifact.format:15s} agreement {artifact.parity['agreement']:.1%} < {least:.1%}: "
                 "per-layer report, then " + {"onnx-int8": "other calibration methods and ",
                                              "tflite-dynamic": "bias correction and "}.get(artifact.format, "")
                 + "float fallback of the worst layers")
        sample = self.checks[:16].transpose(0, 3, 1, 2) if family == "onnx" and self.nchw else self.checks[:16]
        with quiet():
            if family == "onnx":
                layers = rescue.onnx_layer_report(self.onnx_fp32(), staged, sample, "input")
            elif precision == "dynamic":
                layers = rescue.tflite_dynamic_layer_report(self.tflite_dynamic(), self.tflite_fp32(), sample)
            else:
                layers = rescue.tflite_layer_report(self.calibrated(), sample, self.io_type)
        key = REPORT_KEYS[artifact.format]
        stem = self.out_dir / f"{self.stem}_{precision}.{family}"
        rescue.write_report(layers, stem, f"{artifact.format}: per-layer quantization error", key)
        log.info(format_table(layers, key, worst=5))
        plain_size, plain_ms = staged.stat().st_size, _latency(staged)
        trial = self.tmp / f"trial.{family}"

        built = {}

        def evaluate(excluded: list[str], method: str = "minmax") -> float:
            built.update(recipe=self.build(family, precision, trial, excluded, method), of=(excluded, method))
            return parity(self.reference, self.measure(trial, family, precision, built["recipe"])[1],
                          self.near_tie)["agreement"]

        # ONNX: other calibration methods (the TFLite converter calibrates min/max only); TFLite dynamic range:
        # bias correction, then layers in float on top of it where it helped, the count bisected (a try is
        # milliseconds of flatbuffer editing, not a conversion)
        methods = {"onnx-int8": ("percentile", "entropy"), "tflite-dynamic": ("bias_correction",)}
        dynamic = artifact.format == "tflite-dynamic"
        found = rescue.fallback_search(layers, evaluate, least, key, methods=methods.get(artifact.format, ()),
                                       baseline=artifact.parity["agreement"] if dynamic else None,
                                       max_layers=len(layers) if dynamic else 8, refine=dynamic)
        log.info(f"  {artifact.format:15s} {format_tries(found['tries'])}")
        record = {"key": key, "report": f"{stem.name}.layers.json"}
        if not found["passed"]:
            return {**recipe, "rescue": {**found, **record}}
        if built["of"] != (found["excluded"], found.get("method", "minmax")):  # a bisection's later try failed
            evaluate(found["excluded"], found.get("method", "minmax"))
        # the trial last built is the one that passed, kept as it is
        cost = {"size_bytes": trial.stat().st_size - plain_size, "latency_ms": round(_latency(trial) - plain_ms, 3)}
        os.replace(self.tmp / (trial.name + ".bare") if family == "tflite" else trial, staged)
        new = built["recipe"]
        change = [method_label(found["method"])] if found.get("method") else []
        change += [f"kept in float: {', '.join(found['excluded'])}"] if found["excluded"] else []
        log.info(f"  {artifact.format:15s} {', '.join(change)}; costs "
                 f"{cost['size_bytes'] / 1e3:+.0f} KB and {cost['latency_ms']:+.2f} ms per image here")
        return {**new, "rescue": {**found, "cost": cost, "from_agreement": artifact.parity["agreement"], **record}}

    def recipe(self, family: str, precision: str) -> dict:
        recipe = {"weights": {"fp32": "float32", "fp16": "float16"}.get(precision, "int8")}
        if precision == "int8":
            recipe["activations"] = "int8" if family == "tflite" else "uint8"
            recipe["calibration_samples"] = len(self.calib)
            recipe["io"] = self.io_type if family == "tflite" else "float32"
        if family == "onnx":
            recipe["opset"] = onnx_export.OPSET
            recipe["layout"] = "NCHW" if self.nchw else "NHWC"
        return recipe


def _latency(path: Path, runs: int = 20) -> float:
    """Median ms per single-image run, for what a fallback costs."""
    backend = open_backend(path)
    x = np.zeros((1, *backend.input.shape[1:]), backend.input.dtype)
    time_calls(lambda: backend.run(x), 3)  # warm-up
    return float(np.median(time_calls(lambda: backend.run(x), runs)))
