"""Standard TFLite Metadata: third-party models read (edgelite.tflite_format), our own written
(edgelite.convert.tflite_metadata)."""
from __future__ import annotations

import io
import json
import random
import struct
import zipfile

import numpy as np
import pytest
from conftest import run_python, shared

from edgelite import tflite_format as tm
from edgelite.convert.tflite_metadata import write as write_metadata
from edgelite.errors import EdgeliteError

MODELS = "data/third-party-models/"
BIRDS = MODELS + "mobilenet_v2_1.0_224_inat_bird_quant.tflite"
V1 = MODELS + "mobilenet_v1_0.25_224_1_metadata_1.tflite"
V2_QUANT = MODELS + "mobilenet_v2_1.0_224_quant.tflite"


def _entries(tflite: bytes, add: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> bytes:
    """The model re-packed (so without any appended zip) with metadata entries dropped or added."""
    import flatbuffers

    schema = tm.schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    for entry in [m for m in model.metadata or [] if m.name.decode() in drop]:
        model.buffers[entry.buffer].data = None  # no stale copy left behind
    model.metadata = [m for m in model.metadata or [] if m.name.decode() not in drop]
    for name, payload in (add or {}).items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _bare(relative: str) -> bytes:
    """A shared model with its standard metadata and zip removed."""
    return _entries(shared(relative).read_bytes(), drop=(tm.KEY,))


def _run(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _error(model) -> str:
    with pytest.raises(EdgeliteError) as info:
        tm.read(model)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_coral_bird_model():
    path = shared(BIRDS)
    meta = tm.read(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["inat_bird_labels.txt"]
        line_659 = archive.read("inat_bird_labels.txt").decode().split("\n")[659]
    assert line_659 == "Poecile atricapillus (Black-capped Chickadee)"
    assert len(meta["labels"]) == 965 and meta["labels"][659] == line_659
    assert meta["labels"][-1] == "background"  # iNat puts background last, ImageNet first
    assert meta["label_file"] == "inat_bird_labels.txt"
    assert meta["color_space"] == "RGB"
    assert meta["mean"] == [127.5] and meta["std"] == [127.5]
    assert meta["input_range"] == [0.0, 255.0]  # the quantized model's stats are raw uint8 values
    assert (meta["name"], meta["input_name"], meta["output_name"]) == ("ImageClassifier", "image", "probability")
    assert meta["min_parser_version"] == "1.0.0"
    assert "score_calibration" not in meta and "default_size" not in meta


def test_tflite_support_float_model():
    meta = tm.read(shared(V1))
    assert meta["mean"] == [127.5] and meta["std"] == [127.5]
    assert len(meta["labels"]) == 1001 and meta["labels"][0] == "background" and meta["labels"][-1] == "toilet tissue"
    assert meta["color_space"] == "RGB" and meta["name"] == "MobileNetV1 image classifier"
    assert meta["input_range"] == [-1.0, 1.0]  # the float model's stats are normalized values
    assert meta["min_parser_version"] is None  # written before the field existed


def test_coral_imagenet_model_from_path_and_bytes():
    path = shared(V2_QUANT)
    meta = tm.read(path)
    expected = shared(MODELS + "imagenet_labels.txt").read_text().splitlines()
    assert meta["labels"] == expected and len(expected) == 1001 and expected[0] == "background"
    assert tm.read(path.read_bytes()) == meta == tm.read(str(path))


def test_no_standard_metadata_gives_none():
    bare = _bare(V1)
    assert tm.read(bare) is None
    # a model that mentions the key elsewhere goes through the flatbuffer and still has none
    noted = _entries(bare, add={"edgelite": json.dumps({"note": tm.KEY}).encode()})
    assert tm.KEY.encode() in noted and tm.read(noted) is None


def test_write_then_read_round_trip(tmp_path):
    bare = _bare(V1)
    document = {"schema": 1, "labels": ["a", "b"]}
    ours = _entries(bare, add={"edgelite": json.dumps(document).encode()})
    labels = [f"class {i}, ünïcode" for i in range(1001)]
    out = write_metadata(ours, name="mine", labels=labels, mean=[127.5, 127.0, 126.5], std=[128.0, 127.5, 127.0],
                   color_space="RGB", description="a test model")
    path = tmp_path / "mine.tflite"
    path.write_bytes(out)
    meta = tm.read(path)
    assert meta["labels"] == labels and meta["label_file"] == "labels.txt"
    assert meta["mean"] == [127.5, 127.0, 126.5] and meta["std"] == [128.0, 127.5, 127.0]
    assert meta["color_space"] == "RGB" and meta["name"] == "mine" and meta["description"] == "a test model"
    assert (meta["input_name"], meta["output_name"], meta["min_parser_version"]) == ("image", "probability", "1.0.0")
    assert "input_range" not in meta
    with zipfile.ZipFile(path) as archive:  # stored, not deflated: MediaPipe maps the files in place
        assert [(i.filename, i.compress_type) for i in archive.infolist()] == [("labels.txt", zipfile.ZIP_STORED)]
        assert archive.read("labels.txt").decode().splitlines() == labels
    assert json.loads(tm.entry(path, "edgelite")) == document
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(out, x), _run(bare, x))


def test_write_replaces_existing_metadata():
    original = shared(V2_QUANT).read_bytes()
    out = write_metadata(original, name="again", labels=["x", "y"], mean=None, std=None, color_space="GRAYSCALE")
    meta = tm.read(out)
    assert meta["labels"] == ["x", "y"] and meta["color_space"] == "GRAYSCALE" and meta["name"] == "again"
    assert "mean" not in meta and "std" not in meta and meta["description"] is None
    with zipfile.ZipFile(io.BytesIO(out)) as archive:
        assert archive.namelist() == ["labels.txt"]  # the old imagenet_labels.txt went with the old zip
    schema = tm.schema()
    before, after = schema.Model.GetRootAs(original, 0), schema.Model.GetRootAs(out, 0)
    names = [after.Metadata(i).Name() for i in range(after.MetadataLength())]
    assert names.count(tm.KEY.encode()) == 1
    assert after.BuffersLength() == before.BuffersLength()  # the old metadata buffer was reused
    x = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_run(out, x), _run(original, x))


def test_write_without_labels_or_normalization():
    out = write_metadata(_bare(V1), name="plain", labels=None, mean=None, std=None)
    meta = tm.read(out)
    assert meta["labels"] is None and "label_file" not in meta and "mean" not in meta
    assert meta["color_space"] == "RGB" and not zipfile.is_zipfile(io.BytesIO(out))


def test_write_keeps_entries_of_edgelite_converter(tmp_path):
    pytest.importorskip("tensorflow")
    from edgelite.convert.tflite import embed_metadata

    model = embed_metadata(_bare(V1), {"task": "classify"}, extra={"edgelite_check": b"\x00\x01check"})
    path = tmp_path / "m.tflite"
    path.write_bytes(write_metadata(model, name="m", labels=["a"], mean=[0.0], std=[255.0]))
    assert json.loads(tm.entry(path, "edgelite")) == {"task": "classify"}
    assert tm.entry(path, "edgelite_check") == b"\x00\x01check"
    assert tm.read(path)["std"] == [255.0]


def _calibrated_metadata() -> bytes:
    """ModelMetadata built by hand (slot ids typed from metadata_schema.fbs): an output tensor with
    ScoreCalibrationOptions, a French then an English label file and a calibration file."""
    import flatbuffers

    b = flatbuffers.Builder(256)
    files = []
    for name, kind, locale in [("labels_fr.txt", 2, "fr"), ("labels_en.txt", 2, "en"), ("calibration.csv", 4, None)]:
        name, locale = b.CreateString(name), locale and b.CreateString(locale)
        b.StartObject(4)  # AssociatedFile: name 0, description 1, type 2, locale 3
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependInt8Slot(2, kind, 0)
        if locale:
            b.PrependUOffsetTRelativeSlot(3, locale, 0)
        files.append(b.EndObject())
    b.StartObject(2)  # ScoreCalibrationOptions: score_transformation 0, default_score 1
    b.PrependInt8Slot(0, 2, 0)  # INVERSE_LOGISTIC
    b.PrependFloat32Slot(1, 0.25, 0.0)
    options = b.EndObject()
    b.StartObject(2)  # ProcessUnit: options_type 0, options 1
    b.PrependUint8Slot(0, 2, 0)  # ScoreCalibrationOptions
    b.PrependUOffsetTRelativeSlot(1, options, 0)
    unit = b.EndObject()

    def table_vector(items):
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    units, files = table_vector([unit]), table_vector(files)
    b.StartObject(7)  # TensorMetadata: process_units 4, associated_files 6
    b.PrependUOffsetTRelativeSlot(4, units, 0)
    b.PrependUOffsetTRelativeSlot(6, files, 0)
    outputs = table_vector([b.EndObject()])
    b.StartObject(4)  # SubGraphMetadata: output_tensor_metadata 3
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraphs = table_vector([b.EndObject()])
    b.StartObject(8)  # ModelMetadata: subgraph_metadata 3
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.Finish(b.EndObject(), file_identifier=b"M001")
    return bytes(b.Output())


def test_score_calibration_and_label_locale():
    archive = io.BytesIO(_entries(_bare(V1), add={tm.KEY: _calibrated_metadata()}))
    with zipfile.ZipFile(archive, "a") as files:
        files.writestr("labels_fr.txt", "chat\nchien\noiseau\n")
        files.writestr("labels_en.txt", "cat\ndog\nbird\n")
        files.writestr("calibration.csv", "1.0,2.0,-0.5\n\n0.9,1.5,0.1,0.05\n")
    meta = tm.read(archive.getvalue())
    assert meta["labels"] == ["cat", "dog", "bird"] and meta["label_file"] == "labels_en.txt"
    assert meta["score_calibration"] == {"transformation": "INVERSE_LOGISTIC", "default_score": 0.25,
                                         "params": [(1.0, 2.0, -0.5, None), None, (0.9, 1.5, 0.1, 0.05)]}
    assert meta["input_name"] is None and meta["color_space"] is None and "mean" not in meta


@pytest.mark.parametrize("kwargs", [dict(color_space="BGR"), dict(mean=[1.0], std=None), dict(std=[0.0])])
def test_write_refuses_bad_arguments(kwargs):
    arguments = dict(name="m", labels=["a"], mean=[0.0], std=[1.0]) | kwargs
    with pytest.raises(EdgeliteError):
        write_metadata(_bare(V1), **arguments)


def test_garbage_metadata_is_a_clean_error():
    bare = _bare(V1)
    assert "identifier" in _error(_entries(bare, add={tm.KEY: b"not a flatbuffer at all"}))
    far = struct.pack("<I", 0x7FFFFF00) + b"M001" + b"\xff" * 24  # root table far past the end
    assert "unreadable" in _error(_entries(bare, add={tm.KEY: far}))
    _error(b"\x10\x00\x00\x00TFL3" + tm.KEY.encode() + b"\xff" * 40)  # not a model at all
    _error(shared(V1).parent / "no-such-model.tflite")


def test_damaged_metadata_never_raises_anything_else():
    """Overwrite bytes of real metadata: every read gives metadata or a one-line EdgeliteError."""
    raw = tm.entry_bytes(shared(V1).read_bytes(), tm.KEY)
    data = shared(V1).read_bytes()
    zipped = data[data.index(b"PK\x03\x04"):]  # keep the labels so only the flatbuffer is damaged
    bare = _bare(V1)
    rng = random.Random(0)
    outcomes = {"read": 0, "error": 0}
    for _ in range(120):
        damaged = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(8, len(damaged))] = rng.randrange(256)
        try:
            assert isinstance(tm.read(_entries(bare, add={tm.KEY: bytes(damaged)}) + zipped), dict)
            outcomes["read"] += 1
        except EdgeliteError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 10 and outcomes["read"] > 10, outcomes


def test_truncated_or_corrupt_zip_is_a_clean_error():
    data = shared(V1).read_bytes()
    assert "labels.txt" in _error(data[:-100])  # end of central directory cut off
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("labels.txt")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    corrupt = bytearray(data)
    corrupt[start + 100:start + 110] = b"#" * 10  # CRC no longer matches
    assert "labels.txt" in _error(bytes(corrupt))
    assert "labels.txt" in _error(_entries(data))  # re-packed: metadata names labels.txt, the zip is gone


def test_reading_does_not_import_tensorflow():
    path = shared(V1)
    code = (f"import sys, edgelite.tflite_format as m; meta = m.read({str(path)!r}); "
            "assert meta['labels'][0] == 'background'; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    result = run_python("-c", code, timeout=300)
    assert result.returncode == 0, result.stderr
