"""A damaged model file is one clear line (exit 2) or, where the damage misses what is read, an answer: never an
internal error (exit 3) or a traceback. Damage a backend cannot see (a weight changed) is what a bundle's
sha256 catches (test_bundle.py)."""
import random

import pytest

from edgelite import int8
from edgelite.files import find_images

from conftest import run_cli


def outcome(model, photo) -> str:
    """'answer' or 'error' for a run of `edgelite predict MODEL PHOTO`; anything else fails the test."""
    done = run_cli("predict", model, photo, "--top-k", "2")
    errors = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("preprocessing:")]
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, f"{model.name}: {done.stderr}"
    assert done.returncode in (0, 2), f"{model.name}: exit {done.returncode}: {done.stderr}"
    if done.returncode == 0:
        assert not errors, f"{model.name}: {done.stderr}"
        return "answer"
    assert len(errors) == 1 and errors[0].startswith("edgelite: error: "), f"{model.name}: {done.stderr}"
    return "error"


def damaged(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded damage: truncated, bits flipped or bytes zeroed at random places."""
    kind, b = rng.choice(("truncated", "flipped", "zeroed")), bytearray(data)
    if kind == "truncated":
        b = b[:rng.randrange(len(b))]
    elif kind == "flipped":
        for _ in range(rng.choice((1, 8, 64))):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    else:
        start = rng.randrange(len(b))
        end = min(len(b), start + rng.choice((1, 64, 4096)))
        b[start:end] = bytes(end - start)
    return kind, bytes(b)


@pytest.fixture
def saturating(monkeypatch):
    """onnxruntime's u8 x s8 kernels taken to saturate, as on AVX2 without VNNI: the int8 ONNX file is then
    re-encoded by edgelite's own protobuf reader (runtime/int8.py), on every CPU."""
    monkeypatch.setattr(int8, "saturates", lambda: True)


@pytest.mark.parametrize("fmt", ["tflite-int8", "onnx-int8", "tflite-fp32"])
def test_randomly_damaged_copies_are_one_line_or_an_answer(artifact, digits, tmp_path, fmt, saturating):
    photo = find_images([digits])[0]
    assert outcome(artifact[fmt], photo) == "answer"
    rng, seen = random.Random(27), set()
    data = artifact[fmt].read_bytes()
    for i in range(12):
        kind, bytes_ = damaged(data, rng)
        copy = tmp_path / f"{i:02d}_{kind}{artifact[fmt].suffix}"  # no sidecar: the file's own metadata is read
        copy.write_bytes(bytes_)
        seen.add(outcome(copy, photo))
    assert "error" in seen  # the damage was seen at least once


def _damaged_at(source, target, marker: bytes, byte: int = 0xFF):
    """A copy with one byte inside `marker` (found in the file) replaced."""
    data = bytearray(source.read_bytes())
    at = data.index(marker) + len(marker) // 2
    data[at] = byte
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_damaged_metadata_is_one_line_naming_the_file(artifact, digits, tmp_path, fmt):
    """Not UTF-8 (onnxruntime raised UnicodeDecodeError reading metadata_props) or not JSON any more."""
    photo = find_images([digits])[0]
    for name, byte in (("not_utf8", 0xFF), ("not_json", ord('"'))):
        copy = _damaged_at(artifact[fmt], tmp_path / f"{name}{artifact[fmt].suffix}", b'"preprocess"', byte)
        done = run_cli("predict", copy, photo)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert copy.name in done.stderr and "metadata" in done.stderr


def test_onnx_cut_after_its_graph_is_one_line(artifact, digits, tmp_path, saturating):
    """The int8 re-encoding reads the model's protobuf itself: a file cut in the fields after the graph failed
    there with "field runs past its message" (exit 3)."""
    data = artifact["onnx-int8"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[:-3])  # inside metadata_props, which follow the graph
    done = run_cli("predict", cut, find_images([digits])[0])
    assert done.returncode == 2 and "not a valid ONNX model" in done.stderr, done.stderr
