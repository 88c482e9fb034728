"""The int8 rescue's calibration without atypical samples (convert/atypical.py), on a tiny random CNN whose one
calibration sample spans 200 times the others' range."""
from __future__ import annotations

import numpy as np
import pytest

from edgelite.convert.atypical import atypical
from edgelite.errors import EdgeliteError

pytest.importorskip("tensorflow")


def test_a_sample_far_beyond_the_others_at_one_tensor_is_atypical():
    rng = np.random.default_rng(0)
    spans = rng.uniform(1.0, 3.0, (20, 5))  # 20 samples, 5 tensors: spans within 3x of each other
    assert not atypical(spans).any()
    spans[7, 3] *= 40  # one sample, one tensor
    assert atypical(spans).tolist() == [i == 7 for i in range(20)]
    assert not atypical(spans[:1]).any()  # one sample: nothing to compare it with


@pytest.fixture(scope="module")
def cnn():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3), keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax"),
    ])


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(1)
    calib = rng.random((16, 16, 16, 3), dtype=np.float32)
    calib[5] *= 200  # the sample that sets every range alone
    return calib, rng.random((12, 16, 16, 3), dtype=np.float32)


def _logits(path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    feed, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in x:
        interpreter.set_tensor(feed["index"], image[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"])[0])
    return np.asarray(rows, np.float64)


def test_typical_calibration_leaves_out_the_atypical_sample_and_tracks_the_float_model(cnn, samples, tmp_path):
    from edgelite.convert.builds import Builds
    from edgelite.convert.formats import TFLiteFormat

    calib, check = samples
    builds = Builds(cnn, tmp_path, calib, nchw=False)
    form = TFLiteFormat(builds, "float32")
    assert "typical" in form.methods["int8"]
    reference = builds.int8().tflite_fp32()
    (tmp_path / "fp32.tflite").write_bytes(reference)
    float_logits = _logits(tmp_path / "fp32.tflite", check)
    plain = form.build("int8", tmp_path / "plain.tflite")
    typical = form.build("int8", tmp_path / "typical.tflite", method="typical")
    assert plain["calibration_samples"] == 16 and "atypical_samples_left_out" not in plain
    assert typical["calibration_samples"] == 15 and typical["atypical_samples_left_out"] == 1
    error = {name: np.abs(_logits(tmp_path / f"{name}.tflite", check) - float_logits).mean()
             for name in ("plain", "typical")}
    assert error["typical"] * 5 < error["plain"]


def test_typical_calibration_for_onnx(cnn, samples, tmp_path):
    import onnxruntime as ort

    from edgelite.convert.builds import Builds
    from edgelite.convert.formats import OnnxFormat

    calib, check = samples
    builds = Builds(cnn, tmp_path, calib, nchw=False)
    form = OnnxFormat(builds)
    assert form.methods["int8"][0] == "typical"
    run = {}
    for name, method in (("plain", None), ("typical", "typical")):
        recipe = form.build("int8", tmp_path / f"{name}.onnx", method=method)
        session = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        run[name] = np.asarray(session.run(None, {session.get_inputs()[0].name: check})[0], np.float64)
        assert recipe["calibration_samples"] == (15 if method else 16)
    reference = np.asarray(cnn(check), np.float64)
    logits = np.log(reference)  # the int8 files end in logits: compare them up to a constant per row
    error = {k: np.abs((v - v.mean(1, keepdims=True)) - (logits - logits.mean(1, keepdims=True))).mean()
             for k, v in run.items()}
    assert error["typical"] * 5 < error["plain"]


def test_typical_calibration_with_no_atypical_sample_is_a_failed_try(cnn, samples, tmp_path):
    from edgelite.convert.builds import Builds
    from edgelite.convert.formats import TFLiteFormat

    calib, _ = samples
    builds = Builds(cnn, tmp_path, np.delete(calib, 5, axis=0), nchw=False)
    for _ in range(2):  # remembered, not measured again
        with pytest.raises(EdgeliteError, match="no atypical calibration samples"):
            TFLiteFormat(builds, "float32").build("int8", tmp_path / "typical.tflite", method="typical")
