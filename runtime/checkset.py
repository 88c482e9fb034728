"""The check set an artifact carries, and `verify`: its agreement with Keras measured where it runs.

The converter stores a few dozen check images inside each artifact, already at the model's size
(JPEG 4:4:4, quality 90: about 25 KB each at 224x224, 0.6 MB in all), with the Keras model's probabilities on those
exact decoded pixels and the artifact's own probabilities on the machine that exported it. On the
device, with no TensorFlow and no images, `verify` runs them through the same `from_pixels` as
every prediction and compares: agreement with Keras (the gate; see parity.py), and how far this machine's
integer kernels move the outputs from the exporting machine's.
"""
from __future__ import annotations

import hashlib
import io
import platform
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import EdgeliteError, one_line
from .parity import NEAR_TIE, parity, passes

CHECK_IMAGES = 24
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")


# the same flags as numpy's CPUID reading names them (numpy knows no avx_vnni, amx_int8 or i8mm)
CPUID_NAMES = {"avx2": "AVX2", "fma": "FMA3", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI", "asimd": "ASIMD",
               "asimddp": "ASIMDDP"}


def cpu_kernels() -> dict:
    """What decides which integer kernels run here: the machine and its SIMD flags.

    /proc/cpuinfo names them, but under qemu-user it is the host's file (`qemu-x86_64 -cpu Haswell` on an
    AVX-512 host lists avx512f): numpy's own CPUID reading, where it knows a flag, says what this CPU has,
    and a file that disagrees with it is taken for the host's, so the flags numpy cannot check go too."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    listed = [f for f in FLAGS if f in flags]
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as cpuid
    except ImportError:  # numpy 1
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as cpuid
        except ImportError:
            cpuid = {}
    known = [f for f in listed if CPUID_NAMES.get(f) in cpuid]
    if any(not cpuid[CPUID_NAMES[f]] for f in known):
        listed = [f for f in known if cpuid[CPUID_NAMES[f]]]
    return {"machine": platform.machine(), "flags": listed}


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13"; a Raspberry Pi: its board), else the machine's architecture."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def encode(pixels: list[np.ndarray]) -> tuple[list[bytes], list[np.ndarray]]:
    """uint8 [H, W, C] arrays -> JPEG files and the pixels they decode to (what the check uses)."""
    blobs, decoded = [], []
    for array in pixels:
        buffer = io.BytesIO()
        array = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array  # gray
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=90, subsampling=0)
        blobs.append(buffer.getvalue())
        decoded.append(decode(blobs[-1]))
    return blobs, decoded


def decode(blob: bytes) -> np.ndarray:
    """A check image's pixels: [H, W, 3], or [H, W, 1] for a grayscale model's."""
    try:
        image = Image.open(io.BytesIO(blob))
        return np.asarray(image)[..., None] if image.mode == "L" else np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for a damaged image
        raise EdgeliteError(f"a check image is unreadable ({one_line(exc)}): the artifact is damaged") from None


def digest(pixels: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for array in pixels:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def pack(blobs: list[bytes], reference: np.ndarray, exported: np.ndarray) -> bytes:
    """The check set as one .npz payload (stored inside the artifact)."""
    out = io.BytesIO()
    np.savez(out, jpeg=np.frombuffer(b"".join(blobs), np.uint8), sizes=np.array([len(b) for b in blobs]),
             reference=reference.astype(np.float32), exported=exported.astype(np.float32))
    return out.getvalue()


def unpack(payload: bytes) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """The check set's JPEG blobs, Keras' probabilities and the exporting machine's; a damaged payload is one
    clear error."""
    try:
        with np.load(io.BytesIO(payload)) as data:
            raw, sizes = data["jpeg"].tobytes(), data["sizes"]
            ends = np.cumsum(sizes)
            blobs = [raw[end - size:end] for size, end in zip(sizes, ends)]
            return blobs, data["reference"], data["exported"]
    except Exception as exc:  # noqa: BLE001  zipfile, numpy's format and pickle guard fail in many ways
        raise EdgeliteError(f"the check set is unreadable ({one_line(exc)}): the artifact is damaged") from None


def reference_name(metadata: dict) -> str:
    """What the check set's probabilities came from: Keras, or a source from outside Keras (an ONNX or PyTorch
    model: onnxruntime or torch ran it at export), named by its producer."""
    producer = (metadata.get("source") or {}).get("producer")
    return f"the source ({producer})" if producer else "Keras"


def verify(classifier, min_agreement: float | None = None) -> dict:
    """Run the artifact's check set on this machine; figures and a verdict against the gate."""
    payload = classifier.backend.check_set()
    if payload is None:
        raise EdgeliteError(f"{classifier.path.name} carries no check set (made by edgelite convert >= 0.2)")
    blobs, reference, exported = unpack(payload)
    pixels = [decode(b) for b in blobs]
    recorded = classifier.metadata.get("check_set", {})
    at_export = classifier.metadata.get("parity", {})
    scores = np.concatenate([classifier.scores(classifier.prepare_pixels(p)) for p in pixels])
    figures = parity(reference, scores, at_export.get("near_tie", NEAR_TIE))
    gate = min_agreement if min_agreement is not None else at_export.get("min_agreement")
    return {
        "model": str(classifier.path),
        "reference": reference_name(classifier.metadata),
        **{k: figures[k] for k in ("images", "top1_agreement", "agreement", "near_tie", "near_ties_flipped",
                                   "dead_outputs", "max_abs_diff", "total_variation")},
        "same_top1_as_export": float(np.mean(scores.argmax(1) == exported.argmax(1))),
        "max_abs_diff_from_export": float(np.abs(scores - exported).max()),
        "pixels_identical": recorded.get("pixels_sha256") in (None, digest(pixels)),
        "kernels": {**cpu_kernels(), "backend": classifier.backend.version},
        "exported_on": recorded.get("kernels"),
        "min_agreement": gate,
        "passed": passes(figures, gate if gate is not None else 0.0),
    }
