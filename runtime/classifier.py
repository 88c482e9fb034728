"""`Classifier`: a model file that configures itself and returns named top-k predictions."""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from .backends import open_backend
from .errors import BrokenModel, EdgeliteError
from .files import read_json
from .preprocess import PreprocessSpec, from_pixels, quantize, to_input
from .resolve import geometry, normalisation_fields, pixel_fields, producer_facts, resolve_spec


class Prediction(NamedTuple):
    index: int
    label: str
    score: float


class Result(NamedTuple):
    """One item of a batch run: its predictions, or the one-line reason it failed."""

    source: object
    predictions: list[Prediction] | None
    error: str | None = None


def read_labels(path: str | Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeliteError(f"cannot read labels file {path}: {exc}") from None
    return [line.strip() for line in lines if line.strip()]


def given_labels(labels) -> list[str] | None:
    """Labels as a caller gives them: a list (or tuple) as it is, a labels file's path read into a list, None."""
    return read_labels(labels) if isinstance(labels, (str, Path)) else labels


def background_offset(outputs: int, classes: int) -> int:
    """1 when a model has one output more than the classes it is matched to (index 0 is a background
    class, as in Google's and Coral's ImageNet models: 1001 outputs for the 1000 classes), else 0."""
    return 1 if outputs == classes + 1 else 0


def sidecar_path(model_path: str | Path) -> Path:
    """`model.tflite` -> `model.tflite.json`: metadata beside a file that carries none."""
    return Path(f"{model_path}.json")


def read_sidecar(model_path: str | Path) -> dict | None:
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    return read_json(path)


def are_probabilities(outputs: np.ndarray, tolerance: float = 0.02) -> bool:
    """Read off values alone (only when nothing says): values in [0, 1] in rows that sum to 1, or in a
    one-unit output [N, 1] (a binary head's sigmoid)."""
    outputs = outputs.reshape(len(outputs), -1)
    in_range = bool(outputs.min() >= 0 and outputs.max() <= 1)
    return in_range and (outputs.shape[1] == 1 or bool(np.allclose(outputs.sum(axis=1), 1.0, atol=tolerance)))


def scores_from_output(raw: np.ndarray, scale: float = 0.0, zero_point: int = 0,
                       probabilities: bool | None = None) -> np.ndarray:
    """Dequantize a model output [N, C]; softmax it unless it already holds probabilities.
    A one-unit output [N, 1] is a binary head: [1 - p, p], with p = sigmoid(logit) for logits.

    `probabilities` comes from the model's metadata; when unknown it is read off the
    output: a quantized softmax or sigmoid has TFLite's fixed scale 1/256, a float one sums to 1
    (one unit: lies in [0, 1]).
    """
    out = raw.astype(np.float32)
    if scale:
        out = (out - zero_point) * scale
    out = out.reshape(out.shape[0], -1)
    binary = out.shape[1] == 1
    if probabilities is None:
        if scale:
            probabilities = abs(scale - 1 / 256) < 1e-9 and zero_point in (-128, 0)
        else:
            probabilities = are_probabilities(out)
    if binary:
        p = out if probabilities else 1 / (1 + np.exp(-out))
        return np.concatenate([1 - p, p], axis=1)
    if not probabilities:
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        out = shifted / shifted.sum(axis=1, keepdims=True)
    return out


def calibrated(scores: np.ndarray, calibration: dict) -> np.ndarray:
    """The TFLite Task Library's score calibration (standard metadata's ScoreCalibrationOptions): per class
    scale / (1 + exp(-(slope * g(score) + offset))), g the transformation; the default score for a class
    without parameters or below its min_score."""
    g = {"IDENTITY": lambda x: x, "LOG": np.log,
         "INVERSE_LOGISTIC": lambda x: np.log(x) - np.log1p(-x)}[calibration["transformation"]]
    out = np.full_like(scores, calibration["default_score"])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for index, params in enumerate(calibration["params"][:scores.shape[1]]):
            if params is None:
                continue
            scale, slope, offset, min_score = params
            value = scale / (1 + np.exp(-(slope * g(scores[:, index]) + offset)))
            keep = np.isfinite(value) & (True if min_score is None else scores[:, index] >= min_score)
            out[:, index] = np.where(keep, value, calibration["default_score"])
    return out


class Classifier:
    """An image classifier on a .tflite or .onnx file.

    Labels come from the arguments, else from edgelite's metadata or sidecar, else from the
    standard TFLite Metadata. Preprocessing: the one resolver (runtime/resolve.py) merges what the
    user says over what the model carries. A one-unit head (sigmoid or logit) is two classes; a
    model with several outputs needs `output` (index or name). `options`: the backend's speed options
    (backends.py OPTIONS; what `edgelite tune` chose).
    """

    def __init__(self, model: str | Path, backend: str | None = None, threads: int | None = None,
                 labels: Sequence[str] | str | Path | None = None,
                 preprocess: PreprocessSpec | str | dict | None = None, output: int | str | None = None,
                 options: dict | None = None):
        self.path = Path(model)
        self.backend = open_backend(self.path, backend, threads, options)
        self.backend.select_output(output)
        self._choice = (backend, output)
        self.options = dict(options or {})
        self._idle = queue.SimpleQueue()  # backends not running: an interpreter is not thread-safe
        self._idle.put(self.backend)
        self._singles = queue.SimpleQueue()  # predict_batch's single-threaded interpreters, made once
        self._singles_made = 0
        self._growing = threading.Lock()
        self.metadata = self.backend.metadata() or read_sidecar(self.path) or {}
        self.standard = self.backend.standard_metadata(labels=labels is None) if not self.metadata.get("labels") \
            or "preprocess" not in self.metadata else None  # the model's labels file is not read when given some
        self.input, self.output = self.backend.input, self.backend.output
        labels = given_labels(labels)
        self.labels = list(labels) if labels is not None else (
            self.metadata.get("labels") or (self.standard or {}).get("labels"))
        n_out = self.output.shape[-1] if self.output.shape else None
        self.classes = 2 if n_out == 1 else n_out  # one unit: P(second class)
        if self.labels is not None and self.classes and len(self.labels) == self.classes - 1:
            self.labels = ["background", *self.labels]  # a 1001-output model with 1000 names
        if self.labels is not None and self.classes and len(self.labels) != self.classes:
            raise EdgeliteError(f"{len(self.labels)} labels for a model with {self.classes} classes")
        self.spec = self._resolve_spec(preprocess)
        outputs = self.metadata.get("outputs")  # "probabilities" or "logits" when known
        self.probabilities = None if outputs is None else outputs == "probabilities"

    def _resolve_spec(self, preprocess) -> PreprocessSpec:
        """What the model's world does, what it carries, its input shape, what the user says."""
        carried, world = self.metadata.get("preprocess"), None
        quantized = self.input.dtype in (np.uint8, np.int8) and self.input.scale
        if carried is None and self.standard and self.standard.get("mean"):
            carried, world = normalisation_fields(self.standard["mean"], self.standard["std"]), "tflite"
        elif carried is None and quantized:
            carried = pixel_fields(self.input.dtype == np.int8, self.input.scale, self.input.zero_point)
            world = "tflite"
        elif carried is None and self.path.suffix.lower() == ".tflite":
            world = "tflite"
        elif carried is None:  # an ONNX file edgelite did not make: what its producer implies (torch.onnx's)
            carried, world = producer_facts(self.backend.producer())
        return resolve_spec(self.path.name, world, carried, geometry(self.input.shape, self.path.name), preprocess)

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)

    def prepare(self, item) -> np.ndarray:
        """Path, bytes, PIL image or array -> the backend's input batch of one."""
        if isinstance(item, np.ndarray):
            array = item if item.ndim == len(self.input.shape) else item[None]  # a batch, or one input
            if np.issubdtype(self.input.dtype, np.integer) and not np.issubdtype(array.dtype, np.integer):
                return quantize(array, self.input.dtype, self.input.scale, self.input.zero_point)
            return array.astype(self.input.dtype, copy=False)
        return to_input(item, self.spec, self.input.dtype, (self.input.scale, self.input.zero_point))

    def prepare_pixels(self, array: np.ndarray) -> np.ndarray:
        """uint8 pixels already at the model's size and channel order -> the backend's input batch of one."""
        return from_pixels(array, self.spec, self.input.dtype, (self.input.scale, self.input.zero_point))

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities [N, C] for a prepared batch."""
        return self._scores(batch, self._idle)

    def _scores(self, batch: np.ndarray, backends: queue.SimpleQueue) -> np.ndarray:
        """scores() on a backend taken from `backends`: threads take turns on each interpreter (see __init__)."""
        expected = tuple(self.input.shape[1:])
        if batch.shape[1:] != expected and None not in expected:
            raise EdgeliteError(f"input of shape {batch.shape[1:]} where the model takes {expected}")
        backend = backends.get()
        try:
            raw = backend.run(batch)
        finally:
            backends.put(backend)
        return self._decode(raw)

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        """The backend's raw output -> probabilities [N, C] (calibrated where the model says so)."""
        scores = scores_from_output(raw, self.output.scale, self.output.zero_point, self.probabilities)
        calibration = (self.standard or {}).get("score_calibration")
        return calibrated(scores, calibration) if calibration else scores

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[Prediction]:
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [Prediction(int(i), self.label(int(i)), float(probabilities[i])) for i in order]

    def predict(self, item: str | Path | bytes | Image.Image | np.ndarray, top_k: int = 5) -> list[Prediction]:
        return self.top_k(self.scores(self.prepare(item))[0], top_k)

    def predict_batch(self, items: Iterable, top_k: int = 5, workers: int | None = None) -> Iterator[Result]:
        """Predict many items in input order. Each of `workers` threads (default: one per core, at most
        4) decodes an item and runs it on its own single-threaded interpreter: on 2 cores that was
        faster than decoding on threads for one interpreter using both cores (benchmarks/RESULTS.md).
        A bad item yields a Result with its error and the run goes on."""
        from concurrent.futures import ThreadPoolExecutor  # only batch runs pay for it

        workers = workers or max(1, min(4, os.cpu_count() or 1))
        with self._growing:  # kept for later calls: opening a model is not free
            while self._singles_made < workers:
                extra = open_backend(self.path, self._choice[0], threads=1, options=self.options)
                extra.select_output(self._choice[1])
                self._singles.put(extra)
                self._singles_made += 1

        def predict(item) -> Result:
            try:
                return Result(item, self.top_k(self._scores(self.prepare(item), self._singles)[0], top_k))
            except BrokenModel:
                raise  # not the item's fault: it ends the run
            except EdgeliteError as exc:
                return Result(item, None, str(exc))

        with ThreadPoolExecutor(workers) as pool:
            window: deque = deque()
            for item in items:
                window.append(pool.submit(predict, item))
                if len(window) > 2 * workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def predict_safely(self, item, top_k: int = 5) -> Result:
        """predict() that reports a bad item in its Result instead of raising (a BrokenModel is raised)."""
        try:
            return Result(item, self.predict(item, top_k))
        except BrokenModel:
            raise
        except EdgeliteError as exc:
            return Result(item, None, str(exc))
