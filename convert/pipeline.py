"""`convert()`: one Keras model -> verified, self-describing TFLite and ONNX artifacts."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

import edgelite
from edgelite import checkset
from edgelite.backends import output_index
from edgelite.classifier import are_probabilities, scores_from_output
from edgelite.errors import EdgeliteError
from edgelite.files import prepare_out_dir, staging_dir
from edgelite.parity import NEAR_TIE
from edgelite.preprocess import PreprocessSpec, batch, describe, from_pixels, pixels
from edgelite.resolve import resolve_spec

from . import int8_methods
from .builds import Builds, progress_stream
from .exporter import Artifact, CheckData, Exporter, Gate
from .loading import import_tensorflow, load_model, load_source, source_of
from .keras_facts import keras_facts, keras_spec, preprocessing_reason, resolve_labels
from .keras_variants import fixed_input

log = logging.getLogger(__name__)
FORMATS = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "onnx-fp32", "onnx-int8")
SCHEMA = 1


@dataclass
class Conversion:
    model: object
    spec: PreprocessSpec
    labels: list[str] | None
    reference: np.ndarray  # Keras probabilities on the check images
    artifacts: list[Artifact]

    @property
    def ok(self) -> bool:
        return all(a.passed for a in self.artifacts)


def convert(model_path: str | Path, out_dir: str | Path, calibration: Sequence, check: Sequence,
            formats: Sequence[str] = FORMATS, preprocess=None, labels=None, force: bool = False,
            unsafe: bool = False, thresholds: dict | None = None, io_type: str = "int8",
            nchw: bool = False, weights: str | None = None, mirror: bool = True, verbose: bool = True,
            rescue: bool = True, output: int | str | None = None, near_tie: float = NEAR_TIE,
            done: Callable[[Artifact], None] | None = None, size: tuple[int, int] | None = None,
            example=None, int8_method: str | None = None) -> Conversion:
    """Export `model_path` to `formats` in `out_dir`, each verified on the `check` images.

    `model_path` is a model file or folder, or an application name ("mobilenetv2") with
    `weights` ("imagenet" or a file). `calibration` and `check` are image paths (or PIL
    images); both go through the runtime's own preprocessing. A format that fails is
    reported; the others go on. `thresholds` maps a precision to its minimum agreement, where a
    differing top-1 that Keras scored within `near_tie` of its own counts as agreeing (parity.py).
    `mirror` adds each calibration image's mirror image to the calibration set: twice the
    samples for the activation ranges without touching the check images (on MobileNetV2 with
    125 photos: int8 agreement 97.6 % -> 99.2 % for TFLite and for ONNX). An int8 or dynamic-range artifact
    below its gate is `rescue`d: a per-layer error report, then the fewest layers kept in float that pass.
    Each artifact carries a check set (`edgelite verify` on the device). `done(artifact)` is called as each
    format is finished (default: its summary line is logged).

    A model from outside Keras (loading.load_source: an .onnx file; a .pt2, a TorchScript .pt or an nn.Module
    given as `model_path`, with `size` (H, W) or an `example` input, through torch.onnx) is rebuilt as a
    channels-last Keras model that every format is exported from, and the reference is the source itself
    (onnxruntime on the file, torch on the module): the gate, the check set and the rescue measure each
    artifact against it. `int8_method` names how the int8 formats are made (int8_methods.METHODS; its DEFAULT
    when None). `size` (H, W) fixes a dynamic input size (a Keras application family's evaluation
    size by default: keras_facts.family_size).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise EdgeliteError(f"unknown format(s) {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    if not check:
        raise EdgeliteError("no images to verify the exports on")
    int8_method = int8_method or int8_methods.DEFAULT
    int8_methods.int8_method(int8_method)  # an unknown name: one clear error before any work
    needs_calibration = any(f.endswith("int8") for f in formats)
    if needs_calibration and not calibration:
        raise EdgeliteError("no calibration images (int8 formats need some)")
    needs_calibration = needs_calibration or ("tflite-dynamic" in formats and rescue and bool(calibration))
    out_dir = prepare_out_dir(out_dir, force)
    import_tensorflow()
    foreign = load_source(model_path, output, size, example)
    model_path = foreign.path if foreign is not None else Path(model_path)
    source = source_of(model_path, weights) if model_path.exists() or foreign is None else {"file": model_path.name}
    known_path = model_path if model_path.exists() else None
    if foreign is None:
        model = fixed_input(choose_output(load_model(model_path, unsafe, weights), output), size)
        facts = keras_facts(model, known_path)
        spec = keras_spec(model, known_path, preprocess, facts)
        log.info(f"preprocessing: {describe(spec)}{preprocessing_reason(facts, preprocess)}")
        run = lambda x: np.asarray(model.predict(x, batch_size=32, verbose=0))  # noqa: E731
    else:
        model, run, facts = foreign.model, foreign.run, (None, None, None)
        spec = foreign_spec(model_path, foreign, preprocess)
        nchw = nchw or foreign.layout == "NCHW"  # ONNX artifacts keep the source's layout
    units = int(model.outputs[0].shape[-1])
    classes = 2 if units == 1 else units  # a one-unit head (sigmoid or logit) is two classes
    labels = resolve_labels(known_path if foreign is None else None, labels, classes)

    calib = batch(tqdm(calibration, desc="calibration images", disable=not verbose), spec) if needs_calibration else None
    if calib is not None and mirror:
        calib = np.concatenate([calib, calib[:, :, ::-1]])  # NHWC: flip the width axis
    checks = batch(tqdm(check, desc="check images", disable=not verbose), spec)
    outputs = output_kind(model, checks[:8]) if foreign is None else foreign.outputs
    reference = probabilities(run(checks), outputs)
    check_set = _check_set(run, check, spec, outputs)
    if foreign is not None:
        from .onnx_source import check_rebuild

        diff = check_rebuild(foreign, checks, model_path.name)
        source.update(foreign.info)  # producer, layout, output, the rebuild's difference
        log.info(f"rebuilt channels-last: max |dp| {diff:.1e} against {model_path.name} on {len(checks)} images")

    inside = facts[2]  # normalisation inside the model
    document = {
        "schema": SCHEMA,
        "task": "image-classification",
        "labels": labels,
        "preprocess": spec.to_dict(),
        **({"normalised_in_model": inside} if inside else {}),  # the model takes raw pixels
        "outputs": outputs,
        "source": source,
        "edgelite_version": edgelite.__version__,
    }
    if calib is not None:
        document["calibration"] = {"images": len(calibration), "with_mirror_images": mirror}
    artifacts = []
    with staging_dir(out_dir, ".convert-") as tmp, progress_stream(verbose) as progress:
        builds = Builds(model, Path(tmp), calib, nchw, progress=progress, int8_method=int8_method)
        exporter = Exporter(builds, io_type=io_type, out_dir=out_dir,
                            stem=Path(source["file"]).stem, checks=CheckData(checks, reference, check_set),
                            document=document, gate=Gate(thresholds, near_tie, rescue), force=force)
        for fmt in formats:
            artifact = exporter.export(fmt)
            (done or (lambda a: log.info(a.summary())))(artifact)
            artifacts.append(artifact)
    return Conversion(model, spec, labels, reference, artifacts)


def choose_output(model, output: int | str | None):
    """The model itself, or for a model with several outputs the one named (its layer's name) or numbered
    (a clear error when none is): edgelite artifacts have one output, the class scores."""
    names = list(getattr(model, "output_names", None) or  # Keras 3 Sequential has none: its layers' names
                 [getattr(t._keras_history[0], "name", str(i)) for i, t in enumerate(model.outputs)])
    index = output_index(model.name, names, output)
    if len(names) == 1:
        return model
    if type(model).__module__.startswith("tf_keras"):  # a legacy model: cut it with its own library
        import tf_keras as library
    else:
        import keras as library
    return library.Model(model.inputs, model.outputs[index], name=model.name)


def output_kind(model, sample: np.ndarray) -> str:
    """"probabilities" or "logits", from the model's last activation; read off its outputs only
    when the graph does not say (a SavedModel signature)."""
    activation = getattr(model.layers[-1], "activation", None) if getattr(model, "layers", None) else None
    name = getattr(activation, "__name__", str(activation or "")).lower()
    if "softmax" in name or "sigmoid" in name:
        return "probabilities"
    if name == "linear":
        return "logits"
    outputs = np.asarray(model.predict(sample, verbose=0))
    return "probabilities" if are_probabilities(outputs) else "logits"


def probabilities(outputs: np.ndarray, kind: str) -> np.ndarray:
    """The model's outputs as probabilities (softmax of logits), as every artifact is compared."""
    return scores_from_output(outputs.reshape(len(outputs), -1), probabilities=kind == "probabilities")


def foreign_spec(model_path: Path, foreign, preprocess) -> PreprocessSpec:
    """A non-Keras source's preprocessing by the one resolver, said in one line: what its producer implies
    (torch.onnx: torchvision's evaluation convention) under what the user says."""
    from edgelite.resolve import geometry

    shape = tuple(foreign.model.inputs[0].shape)
    spec = resolve_spec(model_path.name, foreign.world, foreign.carried, geometry(shape, model_path.name),
                        preprocess)
    said = " (as given)" if preprocess is not None else (
        f" (assumed: {foreign.info.get('producer') or 'its producer'} made it; --preprocess, --mean/--std, "
        "--resize override)" if foreign.carried else "")
    log.info(f"preprocessing{said}: {describe(spec)}")
    return spec


def _check_set(run, check, spec: PreprocessSpec, outputs: str) -> dict:
    """The first CHECK_IMAGES check images at the model's size, as JPEG, with the reference's probabilities
    (`run`: the source model) on exactly the pixels they decode to."""
    chosen = list(check)[:checkset.CHECK_IMAGES]
    blobs, decoded = checkset.encode([pixels(image, spec) for image in chosen])
    inputs = np.concatenate([from_pixels(p, spec) for p in decoded])
    reference = probabilities(run(inputs), outputs)
    return {"blobs": blobs, "pixels": decoded, "reference": reference, "sha256": checkset.digest(decoded)}
