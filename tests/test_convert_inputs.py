"""Every kind of model file people have, and the converter's options."""
import numpy as np
import pytest

from edgelite import Classifier, EdgeliteError
from edgelite.convert import convert
from edgelite.convert.loading import load_model
from edgelite.convert.keras_facts import family_preset, imagenet_labels, resolve_labels
from edgelite.preprocess import to_float

from conftest import shared

FAST = ["tflite-fp32", "tflite-int8", "onnx-fp32"]


def digit_arrays(trained, n=400):
    items = trained.train[:n]
    return np.stack([to_float(p, trained.spec) for p, _ in items]), np.array([y for _, y in items])


def check_images(trained, n=60):
    return [p for p, _ in trained.val[:n]]


def assert_verified(result):
    for a in result.artifacts:
        assert a.error is None and a.passed, (a.format, a.error, a.parity)


@pytest.fixture(scope="module")
def legacy_h5(trained, tmp_path_factory):
    """A Keras 2 (tf_keras) model with DepthwiseConv2D saved as .h5: Keras 3 refuses it."""
    import tf_keras

    x, y = digit_arrays(trained)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.Input((24, 24, 3)),
        tf_keras.layers.Conv2D(16, 3, activation="relu"),
        tf_keras.layers.DepthwiseConv2D(3, activation="relu"),
        tf_keras.layers.Conv2D(32, 1, activation="relu"),
        tf_keras.layers.GlobalAveragePooling2D(),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=25, verbose=0)
    path = tmp_path_factory.mktemp("legacy") / "legacy.h5"
    model.save(path)
    return path


def test_keras3_alone_refuses_the_legacy_file(legacy_h5):
    import keras

    with pytest.raises(Exception, match="DepthwiseConv2D"):
        keras.saving.load_model(legacy_h5, compile=False)


def test_legacy_keras2_h5_converts_and_verifies(legacy_h5, trained, tmp_path):
    result = convert(legacy_h5, tmp_path / "out", [p for p, _ in trained.train[:50]], check_images(trained),
                     formats=FAST, preprocess="unit", labels=trained.labels, verbose=False)
    assert_verified(result)
    assert Classifier(result.artifacts[1].path).metadata["source"]["file"] == "legacy.h5"


def test_keras3_h5_and_savedmodel_convert(trained, tmp_path):
    import keras

    model = keras.saving.load_model(trained.model_path)
    model.save(tmp_path / "k3.h5")
    model.export(tmp_path / "saved", format="tf_saved_model")
    for source in (tmp_path / "k3.h5", tmp_path / "saved"):
        result = convert(source, tmp_path / f"out-{source.name}", [], check_images(trained, 30),
                         formats=["tflite-fp32", "onnx-fp32"], preprocess="unit", verbose=False)
        assert_verified(result)


def test_tf_hub_keras_layer_h5_converts(trained, tmp_path):
    """The TF-Hub tutorials' model: a hub.KerasLayer feature extractor (a SavedModel) under a new Dense
    head in tf_keras, saved as .h5. The module is built here (no internet): a frozen conv feature map."""
    hub = pytest.importorskip("tensorflow_hub")
    import tensorflow as tf
    import tf_keras

    class Features(tf.Module):
        def __init__(self):
            self.kernel = tf.Variable(tf.random.stateless_normal((3, 3, 3, 16), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec([None, 24, 24, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(images, self.kernel, 1, "SAME")), axis=[1, 2])

    tf.saved_model.save(Features(), str(tmp_path / "features"))
    x, y = digit_arrays(trained)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((24, 24, 3)), hub.KerasLayer(str(tmp_path / "features")),
                                 tf_keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    model.save(tmp_path / "hub.h5")
    result = convert(tmp_path / "hub.h5", tmp_path / "out", [p for p, _ in trained.train[:50]],
                     check_images(trained, 30), formats=FAST, preprocess="unit", labels=trained.labels, verbose=False)
    assert_verified(result)


def test_lambda_layers_need_unsafe(trained, tmp_path):
    import keras

    inputs = keras.Input((24, 24, 3))
    outputs = keras.layers.Dense(10, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inputs)))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(EdgeliteError, match="--unsafe"):
        load_model(path)
    assert load_model(path, unsafe=True).outputs[0].shape[-1] == 10


def test_int8_io_types_and_nchw_onnx(trained, tmp_path):
    checks = check_images(trained, 40)
    calibration = [p for p, _ in trained.train[:60]]
    uint8 = convert(trained.model_path, tmp_path / "u8", calibration, checks, formats=["tflite-int8"],
                    io_type="uint8", verbose=False)
    float_io = convert(trained.model_path, tmp_path / "f", calibration, checks, formats=["tflite-int8"],
                       io_type="float32", verbose=False)
    nchw = convert(trained.model_path, tmp_path / "nchw", [], checks, formats=["onnx-fp32"], nchw=True, verbose=False)
    for result in (uint8, float_io, nchw):
        assert_verified(result)
    assert Classifier(uint8.artifacts[0].path).input.dtype == np.uint8
    assert Classifier(float_io.artifacts[0].path).input.dtype == np.float32
    clf = Classifier(nchw.artifacts[0].path)
    assert clf.input.shape[1:] == (3, 24, 24) and clf.spec.layout == "NCHW"
    assert clf.predict(checks[0])[0].index == Classifier(uint8.artifacts[0].path).predict(checks[0])[0].index


def test_unknown_format_and_shape_errors(trained, tmp_path):
    with pytest.raises(EdgeliteError, match="unknown format"):
        convert(trained.model_path, tmp_path / "x", [], check_images(trained, 2), formats=["coreml"], verbose=False)
    import keras

    flat = keras.Sequential([keras.Input((10,)), keras.layers.Dense(2, activation="softmax")])
    flat.save(tmp_path / "flat.keras")
    with pytest.raises(EdgeliteError, match="cannot infer an image input"):
        convert(tmp_path / "flat.keras", tmp_path / "y", [], check_images(trained, 2), formats=["tflite-fp32"],
                preprocess="unit", verbose=False)


def test_preprocessing_is_never_guessed(trained, tmp_path):
    import keras

    model = keras.saving.load_model(trained.model_path)
    model.save(tmp_path / "anonymous.keras")  # no sidecar: nothing says how pixels are scaled
    with pytest.raises(EdgeliteError, match="--preprocess"):
        convert(tmp_path / "anonymous.keras", tmp_path / "z", [], check_images(trained, 2),
                formats=["tflite-fp32"], verbose=False)


def test_family_presets_and_imagenet_names():
    assert family_preset("mobilenetv2_1.00_224") == "mobilenet"
    assert family_preset("MobileNetV3Small") == "raw"
    assert family_preset("resnet50") == "caffe"
    assert family_preset("resnet50v2") == "mobilenet"
    assert family_preset("my_cnn") is None
    names = imagenet_labels()
    assert len(names) == 1000 and names[292].startswith("tiger")
    assert resolve_labels(None, None, 1001)[0] == "background"
    with pytest.raises(EdgeliteError, match="3 labels for a model with 10 outputs"):
        resolve_labels(None, ["a", "b", "c"], 10)


def test_imagenet_names_match_the_shared_list():
    listed = shared("data/models/imagenet_class_names.txt").read_text().splitlines()
    assert imagenet_labels() == [line.strip() for line in listed if line.strip()]


def test_named_mobilenetv2_offline_error_is_one_line(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(EdgeliteError, match="no network"):
        load_model("mobilenetv2", weights="imagenet")
    with pytest.raises(EdgeliteError, match="no such weights file"):
        load_model("mobilenetv2", weights="/nowhere/weights.h5")


@pytest.mark.slow
def test_named_mobilenetv2_with_local_weights():
    weights = shared("data/models/mobilenet_v2_1.0_224_imagenet.h5")
    photo = shared("data/imagenet-sample/n02129604_tiger.JPEG")
    model = load_model("mobilenetv2", weights=str(weights))
    from edgelite.preprocess import PreprocessSpec
    x = to_float(photo, PreprocessSpec(size=(224, 224), preset="mobilenet"))[None]
    assert int(np.argmax(model.predict(x, verbose=0))) == 292


def test_a_failed_format_does_not_stop_the_others(trained, tmp_path, monkeypatch):
    from edgelite.convert import tflite

    real = tflite.to_tflite

    def broken_fp16(model, kind, *args, **kwargs):
        if kind == "fp16":
            raise EdgeliteError("TFLite fp16 conversion failed: simulated")
        return real(model, kind, *args, **kwargs)

    monkeypatch.setattr(tflite, "to_tflite", broken_fp16)
    result = convert(trained.model_path, tmp_path / "out", [], check_images(trained, 10),
                     formats=["tflite-fp32", "tflite-fp16", "onnx-fp32"], verbose=False)
    assert not result.ok
    failed = [a for a in result.artifacts if a.error]
    assert [a.format for a in failed] == ["tflite-fp16"] and "simulated" in failed[0].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model_fp32.onnx", "model_fp32.onnx.json", "model_fp32.tflite", "model_fp32.tflite.json"]


def test_a_model_with_two_outputs_needs_a_choice(trained, tmp_path):
    import keras

    base = keras.saving.load_model(trained.model_path)
    features = base.layers[-2].output
    two = keras.Model(base.inputs, [keras.layers.Dense(4, name="aux")(features), base.outputs[0]])
    two.save(tmp_path / "two.keras")
    with pytest.raises(EdgeliteError, match="2 outputs .*--output"):
        convert(tmp_path / "two.keras", tmp_path / "out", [], check_images(trained, 10), formats=["tflite-fp32"],
                verbose=False)
    result = convert(tmp_path / "two.keras", tmp_path / "out2", [], check_images(trained, 30),
                     formats=["tflite-fp32"], output=1, preprocess=trained.spec, labels=trained.labels, verbose=False)
    assert_verified(result)
    assert Classifier(result.artifacts[0].path).output.shape[-1] == 10
    by_name = convert(tmp_path / "two.keras", tmp_path / "out3", [], check_images(trained, 10), formats=["tflite-fp32"],
                      output="aux", preprocess=trained.spec, labels=[str(i) for i in range(4)], verbose=False)
    assert by_name.artifacts[0].error is None and Classifier(by_name.artifacts[0].path).output.shape[-1] == 4


def test_a_legacy_model_with_two_outputs_is_cut_by_name(trained, tmp_path):
    """A Keras-2 (tf_keras) .h5 with two heads: --output by its layer name, cut with tf_keras itself."""
    tf_keras = pytest.importorskip("tf_keras")
    height, width = trained.spec.size
    inputs = tf_keras.Input((height, width, 3))
    features = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(4, 3)(inputs))
    scores = tf_keras.layers.Dense(10, activation="softmax", name="scores")(features)
    box = tf_keras.layers.Dense(4, name="box")(features)
    tf_keras.Model(inputs, [box, scores]).save(str(tmp_path / "two.h5"), save_format="h5")
    with pytest.raises(EdgeliteError, match="outputs \\(box, scores\\)"):
        convert(tmp_path / "two.h5", tmp_path / "out", [], check_images(trained, 10), formats=["tflite-fp32"],
                preprocess=trained.spec, verbose=False)
    result = convert(tmp_path / "two.h5", tmp_path / "out2", [], check_images(trained, 10), formats=["tflite-fp32"],
                     output="scores", preprocess=trained.spec, labels=trained.labels, verbose=False)
    assert result.artifacts[0].error is None and result.artifacts[0].parity["top1_agreement"] == 1.0
    assert Classifier(result.artifacts[0].path).output.shape[-1] == 10
