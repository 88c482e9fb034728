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
from .errors import BrokenModel, EdgeliteError, one_line
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
    # XNNPACK (the default delegate) or TFLite's builtin kernels: much slower for float and int8 models here,
    # close for dynamic-range ones (benchmarks/RESULTS.md); tune tries both
    OPTIONS = {"xnnpack": (True, False)}

    @staticmethod
    def speed_settings(threads: int) -> list[dict]:
        """The options worth timing at this thread count (runtime/tune.py)."""
        return [{}, {"xnnpack": False}]

    @staticmethod
    def spins(threads: int, options: dict) -> bool:
        """Whether its pool threads keep a core busy after a call (they do not)."""
        return False

    def __init__(self, path: Path, threads: int | None = None, options: dict | None = None):
        options = _checked(self, options)
        interpreter_module = None
        for module in self.modules:
            try:
                interpreter_module = importlib.import_module(module)
                break
            except ImportError:
                continue
        if interpreter_module is None:
            raise EdgeliteError("no TFLite interpreter installed: pip install 'edgelite[tflite]'")
        interpreter_class = interpreter_module.Interpreter
        self.path = Path(path)
        self.version = f"{interpreter_class.__module__.split('.')[0]} {_version(interpreter_class.__module__)}"
        self.version += _described(options)
        extra = {}
        if options.get("xnnpack") is False:  # tensorflow.lite keeps the enum under experimental
            resolvers = getattr(interpreter_module, "OpResolverType", None) or getattr(
                getattr(interpreter_module, "experimental", None), "OpResolverType", None)
            if resolvers is None:
                raise EdgeliteError(f"{self.version} cannot leave XNNPACK out (no OpResolverType)")
            extra["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            with quiet():  # LiteRT logs its delegate choice on stderr
                self.interpreter = interpreter_class(model_path=str(path), num_threads=threads, **extra)
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
        try:
            if x.shape != self._shape:
                self.interpreter.resize_tensor_input(self._in_index, x.shape)
                self.interpreter.allocate_tensors()
                self._shape = x.shape
            self.interpreter.set_tensor(self._in_index, x)
            self.interpreter.invoke()
        except RuntimeError as exc:  # e.g. "Input tensor 86 lacks data": a damaged file the loader accepted
            raise BrokenModel(f"{self.path}: the model fails to run ({one_line(exc)})") from None
        return self.interpreter.get_tensor(self._out_index)

    def metadata(self) -> dict | None:
        return document(self.path, self._entry(METADATA_KEY))

    def check_set(self) -> bytes | None:
        return self._entry(CHECK_KEY)

    def _entry(self, key: str) -> bytes | None:
        """A named metadata entry's bytes; a flatbuffer the interpreter took but whose entries cannot be
        walked is one clear error."""
        try:
            return tflite_format.entry(self.path, key)
        except EdgeliteError:
            raise
        except Exception as exc:  # a damaged flatbuffer fails in many ways (struct.error, IndexError, ...)
            raise EdgeliteError(f"{self.path}: unreadable metadata entry {key!r} ({one_line(exc)})") from None

    def producer(self) -> str | None:
        return None  # a .tflite does not say what made it

    def standard_metadata(self, labels: bool = True) -> dict | None:
        """Standard TFLite Metadata (labels, normalisation, colour space), as Model Maker, TF Hub,
        MediaPipe and Coral models carry it (labels=False: without reading the labels file)."""
        return tflite_format.read(self.path, labels)


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

    # graph optimization level (ORT_ENABLE_ALL by default; "basic" runs QDQ int8 in float: other numbers), and
    # whether idle pool threads spin (a busy-wait: costs when another job shares the cores, saves a wake-up
    # when not). Levels below "all" were 3-5x slower on x86 for fp32 and int8 (benchmarks/RESULTS.md): tune
    # times spinning only
    OPTIONS = {"optimization": ("all", "extended", "basic"), "spinning": (True, False)}

    @staticmethod
    def speed_settings(threads: int) -> list[dict]:
        """The options worth timing at this thread count (runtime/tune.py): spinning needs a second thread."""
        return [{}, {"spinning": False}] if threads > 1 else [{}]

    @staticmethod
    def spins(threads: int, options: dict) -> bool:
        """Whether its pool threads keep spinning on the cores after a call (onnxruntime's default with 2+
        threads): whatever runs next on them is slowed (runtime/tune.py races such settings apart)."""
        return threads > 1 and options.get("spinning", True)

    def __init__(self, path: Path, threads: int | None = None, options: dict | None = None):
        chosen = _checked(self, options)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeliteError("onnxruntime is not installed: pip install 'edgelite[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if "optimization" in chosen:
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                       f"ORT_ENABLE_{chosen['optimization'].upper()}")
        if "spinning" in chosen:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if chosen["spinning"] else "0")
        self.version = f"onnxruntime {ort.__version__}{_described(chosen)}"
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
        try:
            return self.session.run([self._out_name], {self._in_name: x})[0]
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BrokenModel(f"{self.path}: the model fails to run ({one_line(exc)})") from None

    def metadata(self) -> dict | None:
        return document(self.path, self._entry(METADATA_KEY))

    def standard_metadata(self, labels: bool = True) -> None:
        return None  # standard TFLite Metadata is a TFLite thing

    def producer(self) -> str | None:
        """The model's producer_name ("pytorch" from torch.onnx, "tf2onnx"...): runtime/resolve.py PRODUCERS."""
        try:
            return self.session.get_modelmeta().producer_name
        except UnicodeDecodeError:
            return None

    def check_set(self) -> bytes | None:
        import base64
        import binascii

        raw = self._entry(CHECK_KEY)
        try:
            return base64.b64decode(raw, validate=True) if raw else None
        except (binascii.Error, ValueError) as exc:
            raise EdgeliteError(f"{self.path}: unreadable metadata entry {CHECK_KEY!r} ({one_line(exc)})") from None

    def _entry(self, key: str) -> str | None:
        """A metadata_props value; one that is not UTF-8 (a damaged file onnxruntime loaded) is one clear error."""
        try:
            return self.session.get_modelmeta().custom_metadata_map.get(key)
        except UnicodeDecodeError as exc:
            raise EdgeliteError(f"{self.path}: unreadable metadata ({one_line(exc)})") from None


def document(path: Path, raw: bytes | str | None) -> dict | None:
    """edgelite's JSON document from a model's metadata entry (None: it carries none); a damaged one is one
    clear error."""
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise EdgeliteError(f"{path}: unreadable {METADATA_KEY} metadata ({one_line(exc)})") from None
    if not isinstance(found, dict):
        raise EdgeliteError(f"{path}: {METADATA_KEY} metadata is not a JSON object")
    return found


def _checked(backend, options: dict | None) -> dict:
    """A backend's options, each known to it with one of its values."""
    options = dict(options or {})
    for key, value in options.items():
        if value not in backend.OPTIONS.get(key, ()):
            known = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in backend.OPTIONS.items())
            raise EdgeliteError(f"{backend.name} has no option {key}={value!r} ({known})")
    return options


def _described(options: dict) -> str:
    """Options that are not the default, for a backend's version line: ' (xnnpack=False)'."""
    return f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""


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


def backend_name(path: str | Path, backend: str | None = None) -> str:
    """The backend a model file runs on: the one named, or the one its suffix calls for."""
    path = Path(path)
    name = backend or BY_SUFFIX.get(path.suffix.lower())
    if name not in BACKENDS:
        if backend:
            raise EdgeliteError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        raise EdgeliteError(f"{path}: unknown model type {path.suffix!r} (expected .tflite or .onnx)")
    return name


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None,
                 options: dict | None = None):
    """Open a model file on the named backend, or the one its suffix calls for, with that backend's
    `options` (its OPTIONS: e.g. {"xnnpack": False}, {"optimization": "basic"})."""
    path = Path(path)
    if not path.is_file():
        raise EdgeliteError(f"no such model file: {path}")
    return BACKENDS[backend_name(path, backend)](path, threads, options)
