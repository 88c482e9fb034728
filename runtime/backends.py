"""Inference backends behind one narrow interface: input/output details, run, metadata.

LiteRT (`ai_edge_litert`) is preferred for .tflite, then `tflite_runtime`, then
`tensorflow.lite`; onnxruntime runs .onnx. Nothing here imports TensorFlow unless the
last TFLite fallback is reached.
"""
from __future__ import annotations

import importlib
import json
import mmap
import sys
from typing import NamedTuple
from pathlib import Path

import numpy as np

from . import int8, tflite_format
from .errors import EdgeliteError, one_line
from .quiet import quiet

METADATA_KEY = "edgelite"
CHECK_KEY = "edgelite_check"  # the check set (runtime/checkset.py), an .npz payload


class TensorInfo(NamedTuple):
    shape: tuple  # None for a dynamic dimension
    dtype: np.dtype
    scale: float = 0.0  # quantization; 0.0 when not quantized
    zero_point: int = 0


class LiteRTBackend:
    """A .tflite model on the first TFLite interpreter that imports."""

    name = "litert"
    modules = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")

    def __init__(self, path: Path, threads: int | None = None):
        interpreter_class = None
        for module in self.modules:
            try:
                interpreter_class = importlib.import_module(module).Interpreter
                break
            except ImportError:
                continue
        if interpreter_class is None:
            raise EdgeliteError("no TFLite interpreter installed: pip install 'edgelite[tflite]'")
        self.path = Path(path)
        self.version = f"{interpreter_class.__module__.split('.')[0]} {_version(interpreter_class.__module__)}"
        try:
            with quiet():  # LiteRT logs its delegate choice on stderr
                self.interpreter = interpreter_class(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeliteError(f"{path}: not a valid TFLite model ({one_line(exc)})") from None
        inp = self.interpreter.get_input_details()[0]
        self._outputs = self.interpreter.get_output_details()
        self._in_index, self._shape = inp["index"], tuple(inp["shape"])
        self.input = _tflite_info(inp)
        self.select_output(0)

    def select_output(self, output: int | str | None) -> None:
        """Which output the model's scores are (the only one unless told)."""
        index = output_index(self.path.name, [o["name"] for o in self._outputs], output)
        self._out_index, self.output = self._outputs[index]["index"], _tflite_info(self._outputs[index])

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self._shape:
            self.interpreter.resize_tensor_input(self._in_index, x.shape)
            self.interpreter.allocate_tensors()
            self._shape = x.shape
        self.interpreter.set_tensor(self._in_index, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out_index)

    def metadata(self) -> dict | None:
        raw = tflite_format.entry(self.path, METADATA_KEY)
        return json.loads(raw) if raw else None

    def check_set(self) -> bytes | None:
        return tflite_format.entry(self.path, CHECK_KEY)

    def standard_metadata(self) -> dict | None:
        """Standard TFLite Metadata (labels, normalisation, colour space), as Model Maker, TF Hub,
        MediaPipe and Coral models carry it."""
        return tflite_format.read(self.path)


def _tflite_info(detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    shape = tuple(None if s < 0 else int(s) for s in detail.get("shape_signature", detail["shape"]))
    return TensorInfo(shape, np.dtype(detail["dtype"]), float(scale), int(zero_point))


def _version(module: str) -> str:
    """The interpreter package's version: its __version__ when it has one (importlib.metadata costs
    about 10 ms of cold start), else the installed distribution's."""
    top = module.split(".")[0]
    found = getattr(sys.modules.get(top) or importlib.import_module(top), "__version__", None)
    if found:
        return str(found)
    from importlib.metadata import PackageNotFoundError, version

    package = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(module.split(".")[0],
                                                                                          module.split(".")[0])
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


class OnnxBackend:
    """An .onnx model on onnxruntime's CPU provider."""

    name = "onnxruntime"
    _dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(double)": np.float64}

    def __init__(self, path: Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeliteError("onnxruntime is not installed: pip install 'edgelite[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.version = f"onnxruntime {ort.__version__}"
        source = str(path)
        if _has_quantized_weights(path) and int8.saturates():  # this CPU's u8 x s8 kernels clip: same model,
            # its int8 weights as uint8
            exact, count = int8.as_uint8(path)
            if exact is not None:
                source = exact
                self.version += f", {count} int8 weights run as uint8 (u8 x s8 saturates on this CPU)"
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EdgeliteError(f"{path}: not a valid ONNX model ({one_line(exc)})") from None
        inp = self.session.get_inputs()[0]
        self._in_name = inp.name
        self.input = TensorInfo(_onnx_shape(inp.shape), np.dtype(self._dtypes.get(inp.type, np.float32)))
        self.path = Path(path)
        self.select_output(0)

    def select_output(self, output: int | str | None) -> None:
        """Which output the model's scores are (the only one unless told)."""
        outputs = self.session.get_outputs()
        chosen = outputs[output_index(self.path.name, [o.name for o in outputs], output)]
        self._out_name = chosen.name
        self.output = TensorInfo(_onnx_shape(chosen.shape), np.dtype(self._dtypes.get(chosen.type, np.float32)))

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self._out_name], {self._in_name: x})[0]

    def metadata(self) -> dict | None:
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return json.loads(raw) if raw else None

    def standard_metadata(self) -> None:
        return None  # standard TFLite Metadata is a TFLite thing

    def check_set(self) -> bytes | None:
        import base64

        raw = self.session.get_modelmeta().custom_metadata_map.get(CHECK_KEY)
        return base64.b64decode(raw) if raw else None


def _has_quantized_weights(path: Path) -> bool:
    """Whether an .onnx file holds QDQ quantization at all (one byte search): float models skip the probe."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return buf.find(b"DequantizeLinear") >= 0


def output_index(owner: str, names: list[str], output: int | str | None) -> int:
    """The chosen output's position among a model's outputs: the only one, or the one named or numbered
    (a model file's, or a Keras model's: convert uses it too)."""
    if output is None:
        if len(names) > 1:
            raise EdgeliteError(f"{owner} has {len(names)} outputs ({', '.join(names)}): choose one with "
                                "--output NAME|INDEX")
        return 0
    if isinstance(output, str) and not output.isdigit():
        if output not in names:
            raise EdgeliteError(f"{owner} has no output {output!r} (outputs: {', '.join(names)})")
        return names.index(output)
    if not 0 <= int(output) < len(names):
        raise EdgeliteError(f"{owner} has {len(names)} outputs: no output {output}")
    return int(output)


def _onnx_shape(shape) -> tuple:
    return tuple(s if isinstance(s, int) and s > 0 else None for s in shape)


BACKENDS = {"litert": LiteRTBackend, "onnxruntime": OnnxBackend}
BY_SUFFIX = {".tflite": "litert", ".onnx": "onnxruntime"}


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None):
    """Open a model file on the named backend, or the one its suffix calls for."""
    path = Path(path)
    if not path.is_file():
        raise EdgeliteError(f"no such model file: {path}")
    name = backend or BY_SUFFIX.get(path.suffix.lower())
    if name not in BACKENDS:
        if backend:
            raise EdgeliteError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        raise EdgeliteError(f"{path}: unknown model type {path.suffix!r} (expected .tflite or .onnx)")
    return BACKENDS[name](path, threads)
