"""keras.applications shapes at test size: the graph handed to the converters (dynamic input, int8 logits head,
frozen for tf2onnx), with small models the tests build themselves."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from edgelite import Classifier, EdgeliteError
from edgelite.convert import convert, keras_variants


def _images(digits, n: int) -> list:
    return sorted(digits.rglob("*.png"))[:n]


def _many_class_model(path, classes: int = 1000, seed: int = 0):
    """A small random CNN under a random Dense softmax head on many classes: its probabilities are about
    1/classes everywhere, as a weak or untrained model's are."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    keras.Model(inputs, outputs, name="many_classes").save(path)
    return path


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    return _many_class_model(tmp_path_factory.mktemp("many") / "many.keras")


def test_an_int8_softmax_that_prints_zeros_fails_the_gate(many_classes, digits, tmp_path, monkeypatch):
    """The int8 file kept with its int8 SOFTMAX (output scale 1/256): every probability ~0.001 rounds to 0, a
    dead output; the gate must refuse it whatever the near-tie rule says."""
    monkeypatch.setattr(keras_variants, "without_softmax", lambda model, sample: None)
    result = convert(many_classes, tmp_path / "out", _images(digits, 20), _images(digits, 60)[20:],
                     formats=["tflite-int8"], rescue=False, verbose=False)
    artifact = result.artifacts[0]
    assert artifact.error is None, artifact.error
    assert artifact.parity["dead_outputs"] > 0
    assert not artifact.passed and not result.ok
    assert Classifier(artifact.path).metadata["outputs"] == "probabilities"


def test_int8_logits_keep_a_weak_models_answer(many_classes, digits, tmp_path, capfd):
    """By default the int8 files end in float32 logits and the softmax runs in float: the same
    model's answers survive, with no dead output, and the file says it holds logits. The long steps show a bar
    with an estimate on stderr (issue 28 point 4: VGG16's calibration, a big model's checks)."""
    result = convert(many_classes, tmp_path / "out", _images(digits, 20), _images(digits, 60)[20:],
                     formats=["tflite-int8", "onnx-int8"], rescue=False, verbose=True)
    err = capfd.readouterr().err
    for step in ("TFLite int8 calibration", "int8 bias correction", "ONNX int8 calibration", "tflite-int8 check",
                 "onnx-int8 check"):
        assert f"{step}:   0%" in err, step
    assert "image/s]" in err
    for artifact in result.artifacts:
        assert artifact.error is None, artifact.error
        assert artifact.parity["dead_outputs"] == 0, artifact.format
        assert artifact.parity["top1_agreement"] >= 0.9, (artifact.format, artifact.parity)
        meta = Classifier(artifact.path).metadata
        assert meta["outputs"] == "logits"  # the default int8 method: int8 layers, the logits' sums in float32
        assert meta["quantization"]["head"] == "int8 layers, float32 logits, softmax in float"
        scores = Classifier(artifact.path).predict(_images(digits, 1)[0], top_k=1000)
        assert sum(p.score for p in scores) == pytest.approx(1.0, abs=1e-3)  # probabilities, softmaxed on read
        assert len({p.score for p in scores}) > 20  # a live output, not one value


def _dynamic_model(path):
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    keras.Model(inputs, outputs, name="any_size").save(path)
    return path


def test_a_dynamic_input_model_converts_at_the_size_given(digits, tmp_path):
    model = _dynamic_model(tmp_path / "any_size.keras")
    calib = str(digits)
    done = run_cli("convert", model, "--calib", calib, "--calib-count", 20, "--check-count", 30, "--size", 32, 40,
                   "--formats", "tflite-fp32", "tflite-int8", "onnx-fp32", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "preprocessing: 32x40" in done.stderr
    for name in ("any_size_fp32.tflite", "any_size_int8.tflite", "any_size_fp32.onnx"):
        clf = Classifier(tmp_path / "out" / name)
        assert tuple(clf.input.shape[1:3]) == (32, 40) and tuple(clf.spec.size) == (32, 40)
        assert clf.metadata["parity"]["agreement"] >= 0.95
        assert clf.metadata["outputs"] == ("logits" if "int8" in name else "probabilities")  # the fixed model's head


def test_a_dynamic_input_without_a_size_is_one_line(digits, tmp_path):
    model = _dynamic_model(tmp_path / "any_size.keras")
    done = run_cli("convert", model, "--calib", digits, "--calib-count", 4, "--check-count", 4,
                   "--formats", "tflite-fp32", "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "edgelite: error: any_size has a dynamic input size (None, None): pass --size H W"]
    with pytest.raises(EdgeliteError, match="takes 24x24 images"):
        keras_variants.fixed_input(_load(_many_class_model(tmp_path / "m.keras")), (32, 32))


def _load(path):
    import keras

    return keras.saving.load_model(path, compile=False)


def test_tf2onnx_gets_a_graph_it_can_convert(tmp_path):
    """What broke tf2onnx on EfficientNet and ConvNeXt, in one small model: a Normalization layer (Keras 3 keeps
    its mean and variance as plain captured tensors), a grouped convolution (Keras 3 runs it as an XLA function
    call on CPU) and exact GELU (Erfc)."""
    import keras
    import onnxruntime as ort

    from edgelite.convert.onnx_export import to_onnx

    keras.utils.set_random_seed(2)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3000.0, 2900.0, 2800.0])(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, groups=8)(x)  # depthwise as ConvNeXt writes it
    x = keras.layers.Dense(16, activation=keras.activations.gelu)(x)  # approximate=False: Erfc
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    path = to_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]  # the constants are no inputs
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], np.asarray(model(x)), atol=1e-5)


def test_keras_application_families_are_resized_one_way():
    """A family that normalises inside (EfficientNet, MobileNetV3, ConvNeXt) is resized as one that does not
    (ResNet): as keras.applications evaluates them, centre crop 0.875 with antialiasing; another Keras model with
    the same layers gets the whole frame."""
    import keras

    from edgelite.convert.keras_facts import keras_spec

    def model(name, normalise):
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs) if normalise else inputs
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name=name)

    for name, normalise in (("efficientnetb0", True), ("convnext_tiny", True), ("resnet50", False)):
        spec = keras_spec(model(name, normalise), None, None)
        assert (spec.resize, spec.crop_fraction, spec.antialias) == ("crop", 0.875, True), name
    spec = keras_spec(model("my_cnn", True), None, None)
    assert (spec.resize, spec.antialias, spec.preset) == ("stretch", False, "raw")


def test_a_headless_family_under_a_users_head_takes_the_familys_size():
    """A user's classifier over a nested headless keras.applications base with a dynamic input (MobileNetV3's
    `include_top=False` default): the base's family gives the size (224), as it does for the family itself."""
    import keras

    keras.utils.set_random_seed(3)
    inner = keras.Input((None, None, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4)(inner))
    base = keras.Model(inner, features, name="MobileNetV3Large")  # the name keras.applications gives it
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.2)(base(inputs)))
    model = keras.Model(inputs, outputs, name="my_classifier")
    fixed = keras_variants.fixed_input(model)
    assert tuple(fixed.inputs[0].shape[1:3]) == (224, 224)
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(fixed(x)), np.asarray(model(x)), atol=1e-6)
    unknown = keras.Model(inner, features, name="my_features")  # no family: the size must be given
    with pytest.raises(EdgeliteError, match="pass --size H W"):
        keras_variants.fixed_input(keras.Model(inputs, keras.layers.Dense(3)(unknown(inputs)), name="other"))


_PEAK_SCRIPT = """
import resource, sys
from pathlib import Path
import keras, numpy as np
from edgelite.convert.onnx_export import to_onnx
inputs = keras.Input((32, 32, 3))
x = keras.layers.Flatten()(keras.layers.Conv2D(8, 3)(inputs))
x = keras.layers.Dense(1600)(x)  # 46 MB of weights
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
model(np.zeros((1, 32, 32, 3), np.float32))
weights = sum(w.size * 4 for w in model.get_weights())
before = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024
to_onnx(model, Path(sys.argv[1]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / weights)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc/self/status")
def test_onnx_conversion_memory_does_not_grow_with_tf2onnx_passes(tmp_path):
    """tf2onnx rewrote every weight after each optimizer pass and deep-copied the graph before each, and upb keeps
    what was removed until the message goes: VGG16's ONNX step grew past 23 GB. With each weight written once,
    a model's conversion peaks at 16x its weights (freezing and grappler's copies); before, 66x."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path / "m.onnx")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    growth = float(done.stdout.strip().splitlines()[-1])
    assert growth < 35, f"peak memory grew by {growth:.1f}x the model's weights"


def test_a_squeeze_excite_block_converts_to_onnx(tmp_path):
    """MobileNetV3's squeeze-excite (hard-sigmoid on the pooled [N, 1, 1, C] map) makes tf2onnx's transpose
    optimizer raise ("max() arg is an empty sequence"); tf2onnx's own way skips that pass, and so must ours."""
    import keras
    import onnxruntime as ort

    from edgelite.convert.onnx_export import to_onnx

    layers = keras.layers
    keras.utils.set_random_seed(5)
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    s = layers.Conv2D(4, 1, activation="relu")(layers.GlobalAveragePooling2D(keepdims=True)(x))
    s = layers.Activation("hard_sigmoid")(layers.Conv2D(8, 1)(s))
    x = layers.GlobalAveragePooling2D()(layers.Multiply()([x, s]))
    model = keras.Model(inputs, layers.Dense(3)(x))
    to_onnx(model, tmp_path / "se.onnx")
    sample = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "se.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: sample})[0]
    np.testing.assert_allclose(got, np.asarray(model(sample)), atol=1e-5)
