"""The TFLite file format, read on the device with only `flatbuffers` and `zipfile`: a model's named
metadata entries (edgelite's JSON, its check set) and the standard TFLite Metadata that Model Maker, TF Hub,
MediaPipe and Coral models carry. No tflite-support, MediaPipe or TensorFlow; the converter's writer of the
same metadata is convert/tflite_metadata.py.

The model is a flatbuffer of TFLite's `schema.fbs`: Model.metadata (field 6) names a Model.buffers (field 4)
entry. The standard metadata is a flatbuffer of tflite-support's `metadata_schema.fbs` (file identifier
"M001") in the buffer named "TFLITE_METADATA"; its associated files (labels.txt, ...) are an uncompressed zip
appended to the .tflite file. Slot ids below are the field order of each table in that schema
(tensorflow/tflite-support `tensorflow_lite_support/metadata/metadata_schema.fbs` 1.1.0, unchanged in
MediaPipe's 1.5.0 copy, which only appends fields); a union takes two slots. They are typed here because the
generated reader of that schema ships with tflite-support, which the device does not install, and importing a
generated module costs cold start (over 100 ms for TFLite's own `schema_py_generated`).
"""
from __future__ import annotations

import importlib
import io
import mmap
import struct
from pathlib import Path

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

from .errors import EdgeliteError, one_line

KEY = "TFLITE_METADATA"
IDENTIFIER = b"M001"
# table -> {field: slot id}, from metadata_schema.fbs (the writer in convert/tflite_metadata.py uses them too)
MODEL = dict(name=0, description=1, version=2, subgraph_metadata=3, author=4, license=5,
              associated_files=6, min_parser_version=7)
SUBGRAPH = dict(name=0, description=1, input_tensor_metadata=2, output_tensor_metadata=3, associated_files=4)
TENSOR = dict(name=0, description=1, dimension_names=2, content=3, process_units=4, stats=5, associated_files=6)
CONTENT = dict(content_properties_type=0, content_properties=1, range=2)  # union ContentProperties
IMAGE = dict(color_space=0, default_size=1)  # ImageProperties; ImageSize is width=0, height=1
UNIT = dict(options_type=0, options=1)  # ProcessUnit, union ProcessUnitOptions
FILE = dict(name=0, description=1, type=2, locale=3)  # AssociatedFile
# NormalizationOptions: mean=0, std=1; ScoreCalibrationOptions: score_transformation=0, default_score=1;
# Stats: max=0, min=1 (max comes first in the schema).
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # ContentProperties union members
NORMALIZATION, SCORE_CALIBRATION = 1, 2  # ProcessUnitOptions union members
TENSOR_AXIS_LABELS, TENSOR_VALUE_LABELS, TENSOR_AXIS_SCORE_CALIBRATION = 2, 3, 4  # AssociatedFileType
COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
TRANSFORMATIONS = ("IDENTITY", "LOG", "INVERSE_LOGISTIC")


class _Node:
    """One table of the metadata flatbuffer, read field by field (slot id in, Python value out)."""

    def __init__(self, buf, pos: int):
        self.tab = Table(buf, pos)

    def _at(self, slot: int) -> int:
        return self.tab.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._at(slot)
        return self.tab.String(self.tab.Pos + o).decode("utf-8") if o else None

    def scalar(self, slot: int, flags, default=0):
        o = self._at(slot)
        return self.tab.Get(flags, self.tab.Pos + o) if o else default

    def table(self, slot: int) -> _Node | None:
        o = self._at(slot)
        return _Node(self.tab.Bytes, self.tab.Indirect(self.tab.Pos + o)) if o else None

    def _vector(self, slot: int) -> tuple[int, int]:
        o = self._at(slot)
        if not o:
            return 0, 0
        start, length = self.tab.Vector(o), self.tab.VectorLen(o)
        if start + 4 * length > len(self.tab.Bytes):
            raise ValueError("vector runs past the end of the buffer")
        return start, length

    def tables(self, slot: int) -> list[_Node]:
        start, length = self._vector(slot)
        return [_Node(self.tab.Bytes, self.tab.Indirect(start + 4 * i)) for i in range(length)]

    def floats(self, slot: int) -> list[float] | None:
        start, length = self._vector(slot)
        return [self.tab.Get(N.Float32Flags, start + 4 * i) for i in range(length)] if start else None


def read(model: str | Path | bytes, labels: bool = True) -> dict | None:
    """Standard TFLite Metadata of a .tflite (path or bytes), or None if it has none.

    Keys: name, description, min_parser_version, input_name, output_name, color_space ("RGB",
    "GRAYSCALE" or None), labels (the output tensor's TENSOR_AXIS_LABELS file read from the appended
    zip, the first without locale or with locale "en" preferred; None if there is none), label_file;
    when present: default_size [w, h], mean and std (the input's NormalizationOptions), input_range
    [min, max] (the input's Stats, over all channels) and score_calibration {transformation,
    default_score, params: one (scale, slope, offset, min_score or None) or None per class}.
    labels=False: the labels file is named (label_file), not read (the caller has labels of its own).
    Raises EdgeliteError (one line) when the metadata or its zip is unreadable."""
    where = "model" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    try:
        data = bytes(model) if where == "model" else Path(model).read_bytes()
    except OSError as exc:
        raise EdgeliteError(f"{where}: cannot read ({one_line(exc)})") from None
    if KEY.encode() not in data:
        return None
    try:
        raw = entry_bytes(data, KEY)
    except Exception as exc:  # a garbage model flatbuffer fails in many ways
        raise EdgeliteError(f"{where}: not a readable TFLite model ({one_line(exc)})") from None
    if raw is None:
        return None
    if raw[4:8] != IDENTIFIER:
        raise EdgeliteError(f"{where}: {KEY} is not standard TFLite metadata (identifier {raw[4:8]!r})")
    try:
        meta = _parse(raw)
    except (struct.error, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise EdgeliteError(f"{where}: unreadable {KEY} ({one_line(exc)})") from None
    for key, kind in (("label_file", "labels"), ("calibration_file", "score calibration")):
        name = meta.pop(key, None)
        if name is None:
            continue
        if key == "label_file":
            meta["label_file"] = name
            if labels:
                meta["labels"] = _lines(_zipped(data, name, where, kind))
        else:
            meta["score_calibration"]["params"] = [_calibration(line, where)
                                                   for line in _lines(_zipped(data, name, where, kind))]
    return meta


def _parse(raw: bytes) -> dict:
    """The fields edgelite uses, from a ModelMetadata flatbuffer; file names stand in for contents."""
    root = _Node(raw, flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, raw, 0))
    meta = {"name": root.string(MODEL["name"]), "description": root.string(MODEL["description"]),
            "min_parser_version": root.string(MODEL["min_parser_version"]),
            "input_name": None, "output_name": None, "color_space": None, "labels": None}
    subgraphs = root.tables(MODEL["subgraph_metadata"])
    inputs = subgraphs[0].tables(SUBGRAPH["input_tensor_metadata"]) if subgraphs else []
    outputs = subgraphs[0].tables(SUBGRAPH["output_tensor_metadata"]) if subgraphs else []
    if inputs:
        tensor = inputs[0]
        meta["input_name"] = tensor.string(TENSOR["name"])
        content = tensor.table(TENSOR["content"])
        if content and content.scalar(CONTENT["content_properties_type"], N.Uint8Flags) == IMAGE_PROPERTIES:
            image = content.table(CONTENT["content_properties"])
            space = image.scalar(IMAGE["color_space"], N.Int8Flags) if image else 0
            meta["color_space"] = COLOR_SPACES[space] if 0 < space < len(COLOR_SPACES) else None
            size = image.table(IMAGE["default_size"]) if image else None
            if size:
                meta["default_size"] = [size.scalar(0, N.Uint32Flags), size.scalar(1, N.Uint32Flags)]
        for unit, options in _units(tensor):
            if unit == NORMALIZATION:
                meta["mean"], meta["std"] = options.floats(0), options.floats(1)
        stats = tensor.table(TENSOR["stats"])
        if stats and stats.floats(1) and stats.floats(0):
            meta["input_range"] = [min(stats.floats(1)), max(stats.floats(0))]
    if outputs:
        tensor = outputs[0]
        meta["output_name"] = tensor.string(TENSOR["name"])
        files = [(f.string(FILE["name"]), f.scalar(FILE["type"], N.Int8Flags), f.string(FILE["locale"]))
                 for f in tensor.tables(TENSOR["associated_files"])]
        labels = [(name, locale) for name, kind, locale in files if kind == TENSOR_AXIS_LABELS and name]
        if labels:
            meta["label_file"] = next((n for n, loc in labels if loc in (None, "", "en")), labels[0][0])
        for unit, options in _units(tensor):
            if unit == SCORE_CALIBRATION:
                kind = options.scalar(0, N.Int8Flags)
                meta["score_calibration"] = {
                    "transformation": TRANSFORMATIONS[kind] if 0 <= kind < len(TRANSFORMATIONS) else str(kind),
                    "default_score": options.scalar(1, N.Float32Flags, 0.0), "params": None}
                meta["calibration_file"] = next(
                    (n for n, kind, _ in files if kind == TENSOR_AXIS_SCORE_CALIBRATION and n), None)
    return meta


def _units(tensor: _Node) -> list[tuple[int, _Node]]:
    """A tensor's process units as (ProcessUnitOptions type, options table)."""
    units = []
    for unit in tensor.tables(TENSOR["process_units"]):
        kind, options = unit.scalar(UNIT["options_type"], N.Uint8Flags), unit.table(UNIT["options"])
        if options is not None:
            units.append((kind, options))
    return units


def _zipped(data: bytes, name: str, where: str, kind: str) -> str:
    """One associated file from the zip appended to the model, as text."""
    import zipfile  # only models with associated files pay for it (cold start)

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(name).decode("utf-8")
    except KeyError:
        raise EdgeliteError(f"{where}: {kind} file {name!r} named in {KEY} is not in the model's zip") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise EdgeliteError(f"{where}: cannot read {kind} file {name!r} from the model's zip "
                            f"({one_line(exc)})") from None


def _lines(text: str) -> list[str]:
    """A label or calibration file's lines, trailing blank lines dropped."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _calibration(line: str, where: str) -> tuple | None:
    """One 'scale,slope,offset[,min_score]' line, or None for an empty one."""
    if not line.strip():
        return None
    try:
        values = [float(v) for v in line.split(",")]
    except ValueError:
        values = []
    if len(values) not in (3, 4):
        raise EdgeliteError(f"{where}: bad score calibration line {line[:60]!r} (want 3 or 4 numbers)")
    return (*values[:3], values[3] if len(values) == 4 else None)

def entry(path: str | Path, key: str) -> bytes | None:
    """The bytes of a model's named metadata entry, or None (the file is mapped, not read whole)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf.find(key.encode()) < 0:
            return None  # no such entry: skip walking the flatbuffer
        return entry_bytes(buf, key)  # a copy: no view into buf outlives it


def entry_bytes(buf, key: str) -> bytes | None:
    """A metadata entry's buffer (from a .tflite in memory or mapped), read straight off the TFLite flatbuffer with the flatbuffers runtime:
    Model.metadata (field 6) names a Model.buffers (field 4) entry. Importing the generated schema
    module instead costs over 100 ms, which every cold start would pay."""
    root = Table(buf, flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0))
    for entry in _tables(root, 6):
        name = entry.Offset(4)
        if name and entry.String(entry.Pos + name) == key.encode():
            index_at = entry.Offset(6)
            index = entry.Get(N.Uint32Flags, entry.Pos + index_at) if index_at else 0
            buffers = _tables(root, 4)
            if index >= len(buffers):
                raise EdgeliteError(f"metadata entry {key!r} points past the model's buffers")
            data = buffers[index]
            at = data.Offset(4)
            if at:
                start = data.Vector(at)
                return bytes(buf[start:start + data.VectorLen(at)])
            offset, size = (data.Get(N.Uint64Flags, data.Pos + data.Offset(slot)) if data.Offset(slot)
                            else 0 for slot in (6, 8))
            return bytes(buf[offset:offset + size]) if offset > 1 else b""  # a buffer stored after the flatbuffer
    return None


def _tables(parent, field: int) -> list:
    """The tables of a vector field (by id) of a flatbuffers table."""
    at = parent.Offset(4 + 2 * field)
    if not at:
        return []
    start = parent.Vector(at)
    return [Table(parent.Bytes, parent.Indirect(start + 4 * i)) for i in range(parent.VectorLen(at))]


def schema():
    """The TFLite flatbuffer schema shipped with whichever interpreter package is installed."""
    for module in ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated",
                   "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    return None
