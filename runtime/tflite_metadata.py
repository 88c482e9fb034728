"""Standard TFLite Metadata (what Model Maker, TF Hub, MediaPipe and Coral models carry), read and
written with only `flatbuffers` and `zipfile`: no tflite-support, MediaPipe or TensorFlow.

The metadata is a flatbuffer of tflite-support's `metadata_schema.fbs` (file identifier "M001") in
the model buffer named by the model's "TFLITE_METADATA" entry; its associated files (labels.txt, …)
are an uncompressed zip appended to the .tflite file. Slot ids below are the field order of each
table in that schema (tensorflow/tflite-support `tensorflow_lite_support/metadata/metadata_schema.fbs`
1.1.0, unchanged in MediaPipe's 1.5.0 copy, which only appends fields); a union takes two slots.
"""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np
from flatbuffers import number_types as N
from flatbuffers.table import Table

from .backends import _metadata_bytes, _tflite_schema
from .errors import EdgeliteError, one_line

KEY = "TFLITE_METADATA"
_IDENTIFIER = b"M001"
# table -> {field: slot id}, from metadata_schema.fbs
_MODEL = dict(name=0, description=1, version=2, subgraph_metadata=3, author=4, license=5,
              associated_files=6, min_parser_version=7)
_SUBGRAPH = dict(name=0, description=1, input_tensor_metadata=2, output_tensor_metadata=3, associated_files=4)
_TENSOR = dict(name=0, description=1, dimension_names=2, content=3, process_units=4, stats=5, associated_files=6)
_CONTENT = dict(content_properties_type=0, content_properties=1, range=2)  # union ContentProperties
_IMAGE = dict(color_space=0, default_size=1)  # ImageProperties; ImageSize is width=0, height=1
_UNIT = dict(options_type=0, options=1)  # ProcessUnit, union ProcessUnitOptions
_FILE = dict(name=0, description=1, type=2, locale=3)  # AssociatedFile
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


def read(model: str | Path | bytes) -> dict | None:
    """Standard TFLite Metadata of a .tflite (path or bytes), or None if it has none.

    Keys: name, description, min_parser_version, input_name, output_name, color_space ("RGB",
    "GRAYSCALE" or None), labels (the output tensor's TENSOR_AXIS_LABELS file read from the appended
    zip, the first without locale or with locale "en" preferred; None if there is none), label_file;
    when present: default_size [w, h], mean and std (the input's NormalizationOptions), input_range
    [min, max] (the input's Stats, over all channels) and score_calibration {transformation,
    default_score, params: one (scale, slope, offset, min_score or None) or None per class}.
    Raises EdgeliteError (one line) when the metadata or its zip is unreadable."""
    where = "model" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    try:
        data = bytes(model) if where == "model" else Path(model).read_bytes()
    except OSError as exc:
        raise EdgeliteError(f"{where}: cannot read ({one_line(exc)})") from None
    if KEY.encode() not in data:
        return None
    try:
        raw = _metadata_bytes(data, KEY)
    except Exception as exc:  # a garbage model flatbuffer fails in many ways
        raise EdgeliteError(f"{where}: not a readable TFLite model ({one_line(exc)})") from None
    if raw is None:
        return None
    if raw[4:8] != _IDENTIFIER:
        raise EdgeliteError(f"{where}: {KEY} is not standard TFLite metadata (identifier {raw[4:8]!r})")
    try:
        meta = _parse(raw)
    except (struct.error, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise EdgeliteError(f"{where}: unreadable {KEY} ({one_line(exc)})") from None
    for key, kind in (("label_file", "labels"), ("calibration_file", "score calibration")):
        name = meta.pop(key, None)
        if name is None:
            continue
        text = _zipped(data, name, where, kind)
        if key == "label_file":
            meta["label_file"], meta["labels"] = name, _lines(text)
        else:
            meta["score_calibration"]["params"] = [_calibration(line, where) for line in _lines(text)]
    return meta


def _parse(raw: bytes) -> dict:
    """The fields edgelite uses, from a ModelMetadata flatbuffer; file names stand in for contents."""
    root = _Node(raw, flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, raw, 0))
    meta = {"name": root.string(_MODEL["name"]), "description": root.string(_MODEL["description"]),
            "min_parser_version": root.string(_MODEL["min_parser_version"]),
            "input_name": None, "output_name": None, "color_space": None, "labels": None}
    subgraphs = root.tables(_MODEL["subgraph_metadata"])
    inputs = subgraphs[0].tables(_SUBGRAPH["input_tensor_metadata"]) if subgraphs else []
    outputs = subgraphs[0].tables(_SUBGRAPH["output_tensor_metadata"]) if subgraphs else []
    if inputs:
        tensor = inputs[0]
        meta["input_name"] = tensor.string(_TENSOR["name"])
        content = tensor.table(_TENSOR["content"])
        if content and content.scalar(_CONTENT["content_properties_type"], N.Uint8Flags) == IMAGE_PROPERTIES:
            image = content.table(_CONTENT["content_properties"])
            space = image.scalar(_IMAGE["color_space"], N.Int8Flags) if image else 0
            meta["color_space"] = COLOR_SPACES[space] if 0 < space < len(COLOR_SPACES) else None
            size = image.table(_IMAGE["default_size"]) if image else None
            if size:
                meta["default_size"] = [size.scalar(0, N.Uint32Flags), size.scalar(1, N.Uint32Flags)]
        for unit, options in _units(tensor):
            if unit == NORMALIZATION:
                meta["mean"], meta["std"] = options.floats(0), options.floats(1)
        stats = tensor.table(_TENSOR["stats"])
        if stats and stats.floats(1) and stats.floats(0):
            meta["input_range"] = [min(stats.floats(1)), max(stats.floats(0))]
    if outputs:
        tensor = outputs[0]
        meta["output_name"] = tensor.string(_TENSOR["name"])
        files = [(f.string(_FILE["name"]), f.scalar(_FILE["type"], N.Int8Flags), f.string(_FILE["locale"]))
                 for f in tensor.tables(_TENSOR["associated_files"])]
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
    for unit in tensor.tables(_TENSOR["process_units"]):
        kind, options = unit.scalar(_UNIT["options_type"], N.Uint8Flags), unit.table(_UNIT["options"])
        if options is not None:
            units.append((kind, options))
    return units


def _zipped(data: bytes, name: str, where: str, kind: str) -> str:
    """One associated file from the zip appended to the model, as text."""
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


def write(tflite: bytes, *, name: str, labels: list[str] | None, mean: list[float] | None,
          std: list[float] | None, color_space: str = "RGB", description: str = "",
          entries: dict[str, bytes] | None = None) -> bytes:
    """The model with standard TFLITE_METADATA added (replacing any existing one): a ModelMetadata
    with one SubGraphMetadata, an input TensorMetadata (ImageProperties, plus NormalizationOptions when
    mean and std are given) and an output TensorMetadata with a TENSOR_AXIS_LABELS file 'labels.txt',
    zipped (uncompressed, as MediaPipe requires) onto the end. `entries` are other named metadata
    entries set in the same pass (edgelite's own), each replacing one of its name. Other metadata
    entries are kept; a zip already appended to `tflite` is dropped."""
    if color_space not in COLOR_SPACES:
        raise EdgeliteError(f"color space {color_space!r}: want one of {', '.join(COLOR_SPACES)}")
    if (mean is None) != (std is None) or (std is not None and (not std or 0 in std or not mean)):
        raise EdgeliteError("give both mean and std (non-empty, std non-zero), or neither")
    schema = _tflite_schema()
    if schema is None:
        raise EdgeliteError("no TFLite interpreter installed to edit the model: pip install 'edgelite[tflite]'")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(tflite), 0))
    except Exception as exc:
        raise EdgeliteError(f"not a readable TFLite model ({one_line(exc)})") from None
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or []):
        raise EdgeliteError("models with buffers stored outside the flatbuffer (> 2 GB) are not supported")
    named = {KEY: _metadata(name, description, labels, mean, std, COLOR_SPACES.index(color_space)), **(entries or {})}
    kept, free = [], []
    for m in model.metadata or []:  # an entry being replaced frees its buffer for a new payload
        (free if _name(m) in named and 0 < m.buffer < len(model.buffers) else kept).append(m)
    model.metadata = kept
    for key, payload in named.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, np.uint8)  # packed as one vector
        if free:
            index = free.pop().buffer
            model.buffers[index] = buffer
        else:
            model.buffers.append(buffer)
            index = len(model.buffers) - 1
        entry = schema.MetadataT()
        entry.name, entry.buffer = key, index
        model.metadata.append(entry)
    for m in free:  # no payload left for it: an empty buffer rather than a stale one
        model.buffers[m.buffer] = schema.BufferT()
    builder = flatbuffers.Builder(len(tflite) + sum(map(len, named.values())) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(builder.Output()))
    if labels is not None:
        # "w" at the end, not "a": "a" would find a zip stored inside a buffer (edgelite's check set is
        # an .npz) and write over the flatbuffer after it
        out.seek(0, io.SEEK_END)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("labels.txt", "".join(f"{label}\n" for label in labels))
    return out.getvalue()


def _name(entry) -> str:
    return entry.name.decode() if isinstance(entry.name, bytes) else entry.name


def _metadata(name, description, labels, mean, std, color_space: int) -> bytes:
    """A ModelMetadata flatbuffer (identifier M001) for a one-input image classifier."""
    b = flatbuffers.Builder(1024)

    def table(fields: list) -> int:  # fields: (slot, prepend method, value); None values skipped
        b.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, prepend, value in fields:
            if value is not None:
                prepend(slot, value, 0)
        return b.EndObject()

    def vector(items: list, prepend) -> int:
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            prepend(item)
        return b.EndVector()

    offset, s = b.PrependUOffsetTRelativeSlot, b.CreateString
    image = table([(_IMAGE["color_space"], b.PrependInt8Slot, color_space)])
    content = table([(_CONTENT["content_properties_type"], b.PrependUint8Slot, IMAGE_PROPERTIES),
                     (_CONTENT["content_properties"], offset, image)])
    units = None
    if mean is not None:
        norm = table([(0, offset, vector([float(v) for v in mean], b.PrependFloat32)),
                       (1, offset, vector([float(v) for v in std], b.PrependFloat32))])
        unit = table([(_UNIT["options_type"], b.PrependUint8Slot, NORMALIZATION), (_UNIT["options"], offset, norm)])
        units = vector([unit], b.PrependUOffsetTRelative)
    inp = table([(_TENSOR["name"], offset, s("image")), (_TENSOR["description"], offset, s("Input image.")),
                 (_TENSOR["content"], offset, content), (_TENSOR["process_units"], offset, units)])
    files = None
    if labels is not None:
        labels_file = table([(_FILE["name"], offset, s("labels.txt")),
                             (_FILE["description"], offset, s("Labels of the output classes.")),
                             (_FILE["type"], b.PrependInt8Slot, TENSOR_AXIS_LABELS)])
        files = vector([labels_file], b.PrependUOffsetTRelative)
    feature = table([(0, offset, None)])  # FeatureProperties: an empty table
    out_content = table([(_CONTENT["content_properties_type"], b.PrependUint8Slot, FEATURE_PROPERTIES),
                         (_CONTENT["content_properties"], offset, feature)])
    out = table([(_TENSOR["name"], offset, s("probability")),
                 (_TENSOR["description"], offset, s("Scores of the output classes.")),
                 (_TENSOR["content"], offset, out_content), (_TENSOR["associated_files"], offset, files)])
    subgraph = table([(_SUBGRAPH["input_tensor_metadata"], offset, vector([inp], b.PrependUOffsetTRelative)),
                      (_SUBGRAPH["output_tensor_metadata"], offset, vector([out], b.PrependUOffsetTRelative))])
    root = table([(_MODEL["name"], offset, s(name)),
                  (_MODEL["description"], offset, s(description) if description else None),
                  (_MODEL["subgraph_metadata"], offset, vector([subgraph], b.PrependUOffsetTRelative)),
                  (_MODEL["min_parser_version"], offset, s("1.0.0"))])  # all fields used date from 1.0.0
    b.Finish(root, file_identifier=_IDENTIFIER)
    return bytes(b.Output())
