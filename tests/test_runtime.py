import textwrap

import numpy as np
import pytest
from PIL import Image

from edgelite import Classifier, EdgeliteError, Prediction
from edgelite.classifier import scores_from_output

from conftest import run_python, shared


def test_runtime_never_imports_tensorflow(artifact, trained):
    """Classify with a .tflite and an .onnx in a fresh interpreter: TensorFlow stays out."""
    image = trained.val[0][0]
    code = textwrap.dedent(f"""
        import sys
        from edgelite import Classifier
        from edgelite.cli import main
        for model in ({str(artifact['tflite-int8'])!r}, {str(artifact['onnx-fp32'])!r}):
            top = Classifier(model).predict({str(image)!r})
            assert len(top) == 5, top
        assert main(["predict", {str(artifact['tflite-fp32'])!r}, {str(image)!r}]) == 0
        bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tf2onnx")]
        assert not bad, bad
        print("clean")
    """)
    done = run_python("-c", code, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "clean" in done.stdout


def test_all_formats_agree_on_top1(artifact, trained):
    images = [p for p, _ in trained.val[:40]]
    tops = {fmt: [Classifier(path).predict(img, top_k=1)[0].index for img in images] for fmt, path in artifact.items()}
    reference = tops["tflite-fp32"]
    for fmt, top in tops.items():
        assert np.mean(np.array(top) == reference) >= 0.9, fmt


def test_prediction_is_a_small_immutable_record(artifact, trained):
    top = Classifier(artifact["onnx-fp32"]).predict(trained.val[0][0], top_k=3)
    assert len(top) == 3 and all(isinstance(p, Prediction) for p in top)
    assert top[0].score >= top[1].score >= top[2].score
    assert top[0].label == trained.labels[top[0].index]
    with pytest.raises(AttributeError):
        top[0].score = 1.0


def test_predict_accepts_path_pil_bytes_and_array(artifact, trained):
    clf = Classifier(artifact["tflite-int8"])
    path = trained.val[0][0]
    expected = clf.predict(path)
    assert clf.predict(Image.open(path)) == expected
    assert clf.predict(path.read_bytes()) == expected
    from edgelite.preprocess import to_float
    assert clf.predict(to_float(path, clf.spec))[0].index == expected[0].index


def test_wrong_input_shape_is_a_clear_error(artifact):
    clf = Classifier(artifact["onnx-fp32"])
    with pytest.raises(EdgeliteError, match="input of shape"):
        clf.predict(np.zeros((1, 5, 5, 3), np.float32))


def test_batch_goes_on_past_bad_files_in_order(artifact, trained, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    items = [trained.val[0][0], bad, trained.val[1][0]]
    results = list(Classifier(artifact["tflite-fp32"]).predict_batch(items))
    assert [r.source for r in results] == items
    assert results[0].predictions and results[2].predictions
    assert results[1].predictions is None and "not a readable image" in results[1].error


def test_not_a_model_file_is_a_clear_error(tmp_path):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(EdgeliteError, match="not a valid TFLite model"):
        Classifier(fake)
    fake_onnx = tmp_path / "model.onnx"
    fake_onnx.write_bytes(b"nope")
    with pytest.raises(EdgeliteError, match="not a valid ONNX model"):
        Classifier(fake_onnx)
    text = tmp_path / "model.txt"
    text.write_text("x")
    with pytest.raises(EdgeliteError, match="unknown model type"):
        Classifier(text)


def test_logits_are_softmaxed_probabilities_are_kept():
    probs = np.array([[0.1, 0.7, 0.2]], np.float32)
    np.testing.assert_allclose(scores_from_output(probs), probs)
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    out = scores_from_output(logits)
    assert out.sum() == pytest.approx(1.0) and out.argmax() == 0
    quantized_softmax = np.array([[0, 250, 5]], np.uint8)  # TFLite: scale 1/256, zero point 0
    np.testing.assert_allclose(scores_from_output(quantized_softmax, 1 / 256, 0), [[0, 250 / 256, 5 / 256]])


def test_google_quantized_model_with_labels_file():
    """The third-party uint8 model: no metadata, 1001 classes with background, raw pixels."""
    model = shared("data/third-party-models/mobilenet_v2_1.0_224_quant.tflite")
    labels = shared("data/third-party-models/imagenet_labels.txt")
    photos = shared("data/imagenet-sample")
    clf = Classifier(model, labels=labels)
    assert clf.input.dtype == np.uint8 and len(clf.labels) == 1001
    for name, label in [("n02129604_tiger.JPEG", "tiger"), ("n01440764_tench.JPEG", "tench"),
                        ("n07753113_fig.JPEG", "fig")]:
        assert clf.predict(photos / name, top_k=1)[0].label.startswith(label)


def test_float_model_without_metadata_needs_a_preset(artifact, tmp_path):
    bare = tmp_path / "bare.onnx"
    import onnx
    model = onnx.load(str(artifact["onnx-fp32"]))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    with pytest.raises(EdgeliteError, match="--preprocess"):
        Classifier(bare)
    assert Classifier(bare, preprocess="unit").spec.size == (24, 24)
