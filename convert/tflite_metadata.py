"""Standard TFLite Metadata written into a converted model (what the TFLite Task Library, MediaPipe and
Coral read), together with edgelite's own metadata entries, in one pass over the flatbuffer. The device
reads both back with runtime/tflite_format.py, whose slot ids and constants this uses."""
from __future__ import annotations

import io
import zipfile

import flatbuffers
import numpy as np

from edgelite.errors import EdgeliteError
from edgelite.tflite_format import (COLOR_SPACES, CONTENT, FEATURE_PROPERTIES, FILE, IDENTIFIER, IMAGE,
                                    IMAGE_PROPERTIES, KEY, MODEL, NORMALIZATION, SUBGRAPH, TENSOR,
                                    TENSOR_AXIS_LABELS, UNIT)

from .tflite_model import pack, unpack


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
    schema, model = unpack(tflite)
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
    out = io.BytesIO(pack(model, len(tflite) + sum(map(len, named.values())) + 1024))
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
    image = table([(IMAGE["color_space"], b.PrependInt8Slot, color_space)])
    content = table([(CONTENT["content_properties_type"], b.PrependUint8Slot, IMAGE_PROPERTIES),
                     (CONTENT["content_properties"], offset, image)])
    units = None
    if mean is not None:
        norm = table([(0, offset, vector([float(v) for v in mean], b.PrependFloat32)),
                       (1, offset, vector([float(v) for v in std], b.PrependFloat32))])
        unit = table([(UNIT["options_type"], b.PrependUint8Slot, NORMALIZATION), (UNIT["options"], offset, norm)])
        units = vector([unit], b.PrependUOffsetTRelative)
    inp = table([(TENSOR["name"], offset, s("image")), (TENSOR["description"], offset, s("Input image.")),
                 (TENSOR["content"], offset, content), (TENSOR["process_units"], offset, units)])
    files = None
    if labels is not None:
        labels_file = table([(FILE["name"], offset, s("labels.txt")),
                             (FILE["description"], offset, s("Labels of the output classes.")),
                             (FILE["type"], b.PrependInt8Slot, TENSOR_AXIS_LABELS)])
        files = vector([labels_file], b.PrependUOffsetTRelative)
    feature = table([(0, offset, None)])  # FeatureProperties: an empty table
    out_content = table([(CONTENT["content_properties_type"], b.PrependUint8Slot, FEATURE_PROPERTIES),
                         (CONTENT["content_properties"], offset, feature)])
    out = table([(TENSOR["name"], offset, s("probability")),
                 (TENSOR["description"], offset, s("Scores of the output classes.")),
                 (TENSOR["content"], offset, out_content), (TENSOR["associated_files"], offset, files)])
    subgraph = table([(SUBGRAPH["input_tensor_metadata"], offset, vector([inp], b.PrependUOffsetTRelative)),
                      (SUBGRAPH["output_tensor_metadata"], offset, vector([out], b.PrependUOffsetTRelative))])
    root = table([(MODEL["name"], offset, s(name)),
                  (MODEL["description"], offset, s(description) if description else None),
                  (MODEL["subgraph_metadata"], offset, vector([subgraph], b.PrependUOffsetTRelative)),
                  (MODEL["min_parser_version"], offset, s("1.0.0"))])  # all fields used date from 1.0.0
    b.Finish(root, file_identifier=IDENTIFIER)
    return bytes(b.Output())
