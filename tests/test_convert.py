import json

import numpy as np
import pytest

from edgelite import Classifier, EdgeliteError
from edgelite.convert import FORMATS, convert
from edgelite.parity import parity


def test_every_format_exported_and_verified(converted):
    assert [a.format for a in converted.artifacts] == list(FORMATS)
    for a in converted.artifacts:
        assert a.error is None, a.error
        assert a.path.is_file() and a.size == a.path.stat().st_size
        assert a.passed, (a.format, a.parity)
        limit = 0.995 if a.precision in ("fp32", "fp16") else 0.95
        assert a.parity["top1_agreement"] >= limit
    by = {a.format: a for a in converted.artifacts}
    assert by["tflite-fp32"].parity["max_abs_diff"] < 1e-4
    assert by["onnx-fp32"].parity["max_abs_diff"] < 1e-4
    assert by["tflite-int8"].size < by["tflite-fp32"].size / 2


def test_artifacts_carry_their_metadata_inside_and_beside(converted, trained):
    for a in converted.artifacts:
        clf = Classifier(a.path)  # no flags: it configures itself
        meta = clf.metadata
        assert meta["format"] == a.format
        assert meta["labels"] == trained.labels
        assert meta["preprocess"]["preset"] == "unit"
        least = 0.995 if a.precision in ("fp32", "fp16") else 0.95
        assert meta["parity"] == {**a.parity, "min_agreement": least, "kernels": meta["parity"]["kernels"]}
        assert meta["parity"]["kernels"]["backend"].split()[0] in ("ai_edge_litert", "onnxruntime")
        assert meta["check_set"]["images"] == 24 and meta["check_set"]["kernels"] == meta["parity"]["kernels"]
        assert len(meta["source"]["sha256"]) == 64
        assert meta["outputs"] == ("logits" if a.precision == "int8" else "probabilities")  # int8: softmax in float
        sidecar = json.loads(a.path.with_name(a.path.name + ".json").read_text())
        assert sidecar == meta
    int8 = Classifier(converted.artifacts[3].path)
    assert int8.metadata["quantization"]["calibration_samples"] == 200  # 100 images and their mirror images
    assert int8.metadata["calibration"] == {"images": 100, "with_mirror_images": True}
    assert int8.input.dtype == np.int8


def test_exported_model_predicts_the_true_class(converted, trained):
    clf = Classifier(next(a.path for a in converted.artifacts if a.format == "tflite-int8"))
    hits = [clf.predict(path, top_k=1)[0].index == label for path, label in trained.val[:60]]
    assert np.mean(hits) > 0.8


def test_existing_output_is_not_overwritten(converted, trained):
    out = converted.artifacts[0].path.parent
    with pytest.raises(EdgeliteError, match="--force"):
        convert(trained.model_path, out, [], [p for p, _ in trained.val[:5]], formats=["tflite-fp32"], verbose=False)


def test_not_a_model_is_one_clear_error(tmp_path, trained):
    fake = tmp_path / "model.keras"
    fake.write_text("hello")
    check = [p for p, _ in trained.val[:3]]
    with pytest.raises(EdgeliteError, match="not a Keras model"):
        convert(fake, tmp_path / "out", [], check, formats=["tflite-fp32"], verbose=False)
    with pytest.raises(EdgeliteError, match="no calibration images"):
        convert(trained.model_path, tmp_path / "out2", [], check, formats=["tflite-int8"], verbose=False)


def test_parity_arithmetic():
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    art = np.array([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]])
    p = parity(ref, art)
    assert p["top1_agreement"] == 0.5
    assert p["max_abs_diff"] == pytest.approx(0.4)
    assert p["mean_abs_diff"] == pytest.approx((0.1 + 0.1 + 0 + 0.4 + 0 + 0.4) / 6)
    assert p["agreement"] == 0.5 and p["near_ties_flipped"] == 0  # Keras led by 0.5: a real flip


def test_a_flipped_near_tie_counts_as_agreeing_and_nothing_else_does():
    ref = np.array([[0.40, 0.37, 0.23], [0.40, 0.34, 0.26], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2]])
    art = np.array([[0.37, 0.40, 0.23], [0.34, 0.40, 0.26], [0.3, 0.6, 0.1], [0.5, 0.3, 0.2]])
    p = parity(ref, art)
    assert p["top1_agreement"] == 0.25  # only the last image keeps its top-1
    assert p["near_ties_flipped"] == 1 and p["agreement"] == 0.5  # Keras's gap 0.03 <= 0.05; 0.06 and 0.85 are not
    assert parity(ref, art, near_tie=0.0)["agreement"] == 0.25
    assert parity(ref, art, near_tie=0.1)["agreement"] == 0.75


def test_an_output_far_from_the_sources_fails_the_gate_whatever_its_near_ties():
    """A random EfficientNetB1's softmax is within a few percent of uniform, so every class is a near-tie of its
    top-1; its int8 file put most of each image's probability on some other class and agreed 95.8 % "with
    near-ties". Total variation from the source's probabilities fails it; a faithful export passes."""
    from edgelite.parity import MAX_TOTAL_VARIATION, gate_agreement, passes

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 0.05, (40, 1000))
    ref = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    spike = np.full_like(ref, 0.3 / 999)
    spike[np.arange(40), rng.integers(0, 1000, 40)] = 0.7  # a confident answer the source never gave
    collapsed = parity(ref, spike)
    assert collapsed["agreement"] >= 0.95  # the near-tie rule alone would pass it
    assert collapsed["total_variation"] > MAX_TOTAL_VARIATION and not passes(collapsed, 0.95)
    assert gate_agreement(collapsed) == 0.0  # what the rescue's search ranks it by: no try passes that way
    noisy = ref * np.exp(rng.normal(0, 0.02, ref.shape))  # rounding noise: ranks change, the distribution not
    faithful = parity(ref, noisy / noisy.sum(axis=1, keepdims=True))
    assert faithful["total_variation"] < 0.05 and passes(faithful, 0.95)


def test_a_dead_output_never_agrees_and_a_flat_source_makes_no_near_ties():
    """A 1000-class model with random weights: Keras's softmax about 0.001 everywhere, the int8 file's all zeros.
    Every class is within 0.05 of Keras's top-1, yet nothing agrees: the artifact chose nothing."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (50, 1000))
    ref = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ref[np.arange(50) % 5 == 0, 0] = ref.max() * 2  # class 0 (a dead row's argmax) on top for some images
    ref /= ref.sum(axis=1, keepdims=True)
    p = parity(ref, np.zeros_like(ref))
    assert p["dead_outputs"] == 50 and p["agreement"] == 0.0 and p["top1_agreement"] == 0.0
    assert p["near_ties_flipped"] == 0 and p["total_variation"] > 0.3
    # a live but unrelated output: flips among classes Keras scored at under half its top-1 are no near-ties
    shuffled = ref[:, rng.permutation(1000)]
    q = parity(ref, shuffled)
    assert q["dead_outputs"] == 0 and q["agreement"] == pytest.approx(q["top1_agreement"] + q["near_ties_flipped"] / 50)
    assert q["agreement"] < 0.2
    assert parity(ref, ref)["agreement"] == 1.0 and parity(ref, ref)["total_variation"] == pytest.approx(0)
    flat = np.full((4, 1000), 0.001)  # Keras's own output dead: an artifact as dead agrees, a live one does not
    assert parity(flat, flat)["agreement"] == 1.0 and parity(flat, flat)["dead_outputs"] == 0
    assert parity(flat, ref[:4])["top1_agreement"] == 0.0
