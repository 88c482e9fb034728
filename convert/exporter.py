"""One format's export: convert, verify the file as the device opens it, rescue one below its gate, put it
in place with its metadata and check set. `pipeline.convert` runs one Exporter over every format; what differs
between TFLite and ONNX is in formats.py, what their builds share in builds.py."""
from __future__ import annotations

import logging
import os
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
from edgelite.noise import noise_floor, pixel_step
from edgelite.parity import (MAX_TOTAL_VARIATION, NEAR_TIE, far, far_note, gate_agreement, min_agreement, parity,
                             passes)
from edgelite.quiet import quiet
from edgelite.timing import time_calls

from .builds import Builds
from .fallback import fallback_search
from .formats import formats, outputs
from .layer_report import write_report

log = logging.getLogger(__name__)
RESCUED = ("int8", "dynamic")  # precisions whose exports below their gate are rescued (`Exporter.rescued`)


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
        return (f"  {self.format:15s} {verdict:5s} agreement {p['agreement']:.1%} (strict top-1 {p['top1_agreement']:.1%}, "
                f"{p['near_ties_flipped']} near-ties flipped"
                + (f", {p['dead_outputs']} dead outputs: all one value" if p.get("dead_outputs") else "") + "), "
                f"top-5 overlap {p['top5_overlap']:.1%}, max |dp| {p['max_abs_diff']:.2e}{far_note(p, 'the source')}, "
                f"{self.size / 1e6:.2f} MB, {self.seconds:.1f}s")


@dataclass(frozen=True)
class Gate:
    """How an artifact is judged: the least agreement by precision (parity.THRESHOLDS where not given), the
    near-tie allowance, and whether one below its gate is rescued."""

    thresholds: dict | None = None
    near_tie: float = NEAR_TIE
    rescue: bool = True


@dataclass(frozen=True)
class CheckData:
    """What every artifact is verified on: the check images, Keras's probabilities on them, and the check set
    each artifact carries (checkset.py)."""

    images: np.ndarray  # float NHWC
    reference: np.ndarray
    check_set: dict


class Exporter:
    """Exports one format after another into `out_dir` as `<stem>_<precision>.<family>`, every one carrying
    `document` (the metadata all artifacts share)."""

    def __init__(self, builds: Builds, *, io_type: str, out_dir: Path, stem: str, checks: CheckData, document: dict,
                 gate: Gate, force: bool):
        self.builds, self.out_dir, self.stem, self.checks = builds, out_dir, stem, checks
        self.document, self.gate, self.force = document, gate, force
        self.formats = formats(builds, io_type)
        self._noise_floor: dict | None = None  # the float model's, measured when a rescue first fails

    def export(self, fmt: str) -> Artifact:
        """Convert, verify the file as the device opens it, rescue a failed int8 or dynamic-range export, put it
        in place."""
        artifact = Artifact(fmt, None)
        family, precision = fmt.split("-", 1)
        final = self.out_dir / f"{self.stem}_{precision}.{family}"
        staged = self.builds.tmp / final.name
        started, cpu = time.perf_counter(), time.process_time()
        try:
            form = self.formats[family]
            least = min_agreement(precision, self.gate.thresholds)
            recipe = form.build(precision, staged)
            classifier, artifact.scores = self.measure(staged, form, precision, recipe)
            artifact.parity = parity(self.checks.reference, artifact.scores, self.gate.near_tie)
            if not passes(artifact.parity, least) and precision in RESCUED and self.gate.rescue:
                recipe = self.rescued(form, precision, staged, artifact, least, recipe)
                classifier, artifact.scores = self.measure(staged, form, precision, recipe)
                artifact.parity = parity(self.checks.reference, artifact.scores, self.gate.near_tie)
            artifact.passed = passes(artifact.parity, least)
            check_set = self.checks.check_set
            exported = np.concatenate([classifier.scores(classifier.prepare_pixels(p)) for p in check_set["pixels"]])
            kernels = {**checkset.cpu_kernels(), "backend": classifier.backend.version}
            del classifier
            meta = {**self.metadata(form, precision, recipe),
                    "parity": {**artifact.parity, "min_agreement": least, "kernels": kernels},
                    "check_set": {"images": len(exported), "pixels_sha256": check_set["sha256"],
                                  "encoding": "JPEG quality 90, 4:4:4, at the model's input size", "kernels": kernels}}
            blob = {CHECK_KEY: checkset.pack(check_set["blobs"], check_set["reference"], exported)}
            form.embed(staged, meta, blob)
            artifact.path = move_atomic(staged, final, self.force)
            write_json(sidecar_path(final), meta, self.force)
            artifact.size = final.stat().st_size
        except EdgeliteError as exc:
            artifact.error = str(exc)
        except Exception as exc:  # one format's failure must not stop the others
            artifact.error = f"{type(exc).__name__}: {one_line(exc)}"
        artifact.seconds, artifact.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        return artifact

    def metadata(self, form, precision: str, recipe: dict) -> dict:
        spec = {**self.document["preprocess"], **({"layout": "NCHW"} if form.family == "onnx" and self.builds.nchw
                                                  else {})}
        return {**self.document, "format": f"{form.family}-{precision}", "preprocess": spec, "quantization": recipe,
                "outputs": outputs(self.builds, precision, self.document["outputs"])}

    def measure(self, staged: Path, form, precision: str, recipe: dict):
        """Probabilities on the check images from the file as the device opens it: metadata inside,
        no settings given."""
        form.built_anew(staged)
        form.embed(staged, self.metadata(form, precision, recipe))
        classifier = Classifier(staged)
        images = self.checks.images
        inputs = images.transpose(0, 3, 1, 2) if classifier.spec.layout == "NCHW" else images
        inputs = self.builds.bar(inputs, f"{form.family}-{precision} check", len(inputs))  # hybrid kernels are slow
        return classifier, np.concatenate([classifier.scores(classifier.prepare(x[None])) for x in inputs])

    def rescued(self, form, precision: str, staged: Path, artifact: Artifact, least: float, recipe: dict) -> dict:
        """The least float fallback that passes the gate, chosen from a per-layer error report;
        the report is written beside the artifact. Leaves the chosen model in `staged`: where no try passes, the
        best one if it beats the plain export, which is still below its gate."""
        methods = form.methods.get(precision, ())
        figures = artifact.parity
        why = (f"total variation {figures['total_variation']:.2f} > {MAX_TOTAL_VARIATION}" if far(figures)
               else f"agreement {figures['agreement']:.1%} < {least:.1%}")
        log.info(f"  {artifact.format:15s} {why}: per-layer report, then "
                 + "".join(f"{method_label(m)}, " for m in methods) + "float fallback of the worst layers")
        with quiet():
            layers = form.layer_report(precision, staged, form.inputs(self.checks.images[:16]))
        key = form.report_keys[precision]
        stem = self.out_dir / f"{self.stem}_{precision}.{form.family}"
        write_report(layers, stem, f"{artifact.format}: per-layer quantization error", key)
        log.info(format_table(layers, key, worst=5))
        plain_size, plain_ms = staged.stat().st_size, _latency(staged)
        evaluate = TrialEvaluator(self, form, precision, self.builds.tmp / f"trial.{form.family}")
        # other calibrations (int8) or bias correction (dynamic range) first, then layers in float on top of the
        # one that helped most; for dynamic range every layer count, bisected (a try is milliseconds of flatbuffer
        # editing, not a conversion)
        dynamic = artifact.format == "tflite-dynamic"
        found = fallback_search(layers, evaluate, least, key, methods=methods, baseline=gate_agreement(artifact.parity),
                                max_layers=len(layers) if dynamic else 8, refine=dynamic)
        log.info(f"  {artifact.format:15s} {format_tries(found['tries'])}")
        record = {"key": key, "report": f"{stem.name}.layers.json"}
        if not found["passed"]:
            record.update(self.noise_floor(artifact.format))
            if found.get("agreement") is None or found["agreement"] <= gate_agreement(artifact.parity):
                return {**recipe, "rescue": {**found, **record}}
            # still below the gate, but the written file is the best try, not the plain export (a collapsed
            # int8 file's rescue without atypical samples: total variation 0.72 -> 0.07)
            new = evaluate.holding(found["excluded"], found.get("method"))
            os.replace(form.unembedded(evaluate.trial), staged)
            log.info(f"  {artifact.format:15s} no try passes; the best is kept")
            return {**new, "rescue": {**found, "from_agreement": artifact.parity["agreement"], **record}}
        new = evaluate.holding(found["excluded"], found.get("method"))  # a bisection's later try failed
        cost = {"size_bytes": evaluate.trial.stat().st_size - plain_size,
                "latency_ms": round(_latency(evaluate.trial) - plain_ms, 3)}
        os.replace(form.unembedded(evaluate.trial), staged)
        change = [method_label(found["method"])] if found.get("method") else []
        change += [f"kept in float: {', '.join(found['excluded'])}"] if found["excluded"] else []
        log.info(f"  {artifact.format:15s} {', '.join(change)}; costs "
                 f"{cost['size_bytes'] / 1e3:+.0f} KB and {cost['latency_ms']:+.2f} ms per image here")
        return {**new, "rescue": {**found, "cost": cost, "from_agreement": artifact.parity["agreement"], **record}}

    def noise_floor(self, fmt: str) -> dict:
        """For a rescue that failed, the float model's own noise floor on the check images (edgelite.noise), said
        in a line: a model that changes its answers when the pixels move by half a level cannot be followed
        closer by int8. Measured once for every format; {} where the float TFLite model cannot be had."""
        if self._noise_floor is None:
            self._noise_floor = self._measure_noise_floor()
        row = self._noise_floor
        if row:
            log.info(f"  {fmt:15s} for scale: the float model itself keeps {row['strict_median']:.1%} of its "
                     f"answers (strict; {row['gate_agreement_median']:.1%} with near-ties) when the pixels move by "
                     f"+-{row['level']:g} level")
        return {"noise_floor": row} if row else {}

    def _measure_noise_floor(self) -> dict:
        """The float TFLite model as the device opens it (metadata inside, as `measure` does), on the check images."""
        form, path = self.formats["tflite"], self.builds.tmp / "noise_floor.tflite"
        try:
            path.write_bytes(self.builds.tflite_fp32())
        except Exception:  # that format's own line says why
            return {}
        form.built_anew(path)
        form.embed(path, self.metadata(form, "fp32", {}))
        classifier = Classifier(path)
        inputs = [classifier.prepare(x[None]) for x in self.checks.images]
        return noise_floor(classifier.scores, inputs, pixel_step(classifier.spec.std))[0]


class TrialEvaluator:
    """The rescue's evaluator: `evaluator(excluded, method)` builds one try into `trial` (those layers kept in
    float, that method) and returns its agreement with the source as the device measures it and the gate counts it
    (an output far from the source's is a failed try, whatever its agreement). It holds the last try
    built, since the search's last try is not always the one it keeps."""

    def __init__(self, exporter: Exporter, form, precision: str, trial: Path):
        self.exporter, self.form, self.precision, self.trial = exporter, form, precision, trial
        self.built: tuple[list[str], str | None] | None = None  # (excluded, method) of the try now in `trial`
        self.recipe: dict | None = None  # its recipe

    def __call__(self, excluded: Sequence[str], method: str | None = None) -> float:
        self.recipe = self.form.build(self.precision, self.trial, excluded, method)
        self.built = (list(excluded), method)
        scores = self.exporter.measure(self.trial, self.form, self.precision, self.recipe)[1]
        figures = parity(self.exporter.checks.reference, scores, self.exporter.gate.near_tie)
        if far(figures):  # the search counts it a failed try and says why
            raise EdgeliteError(f"far: total variation {figures['total_variation']:.2f}")
        return figures["agreement"]

    def holding(self, excluded: Sequence[str], method: str | None) -> dict:
        """`trial` holding the given try (built again if a later one replaced it); returns its recipe."""
        if self.built != (list(excluded), method):
            self(excluded, method)
        return self.recipe


def _latency(path: Path, runs: int = 20) -> float:
    """Median ms per single-image run, for what a fallback costs."""
    backend = open_backend(path)
    x = np.zeros((1, *backend.input.shape[1:]), backend.input.dtype)
    time_calls(lambda: backend.run(x), 3)  # warm-up
    return float(np.median(time_calls(lambda: backend.run(x), runs)))
