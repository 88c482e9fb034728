"""input_normalisation: the pixel normalisation a Keras model does itself.

The core of each test is numerical: for random pixels, (pixel - mean) / std from the returned
mean/std must equal what Keras itself computes up to the model's first weighted layer (a model
cut right after the preprocessing, run with training=False as at inference).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgelite.convert.keras_preprocessing import input_normalisation  # noqa: E402

L = keras.layers
MEAN = [0.485, 0.456, 0.406]  # ImageNet "torch" statistics, 0..1 units
STD = [0.229, 0.224, 0.225]
TORCH_MEAN = [123.675, 116.28, 103.53]  # the same in 0..255 pixel units
TORCH_STD = [58.395, 57.12, 57.375]


def pixels(shape=(16, 16, 3), n=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype(np.float32)


def assert_reproduces(found, prefix, x=None):
    """(x - mean) / std from `found` equals prefix(x), the model cut before its first weighted layer."""
    assert found is not None, "no input normalisation found"
    x = pixels(tuple(prefix.inputs[0].shape[1:])) if x is None else x
    want = np.asarray(prefix(x, training=False), np.float64)
    got = (x.astype(np.float64) - np.asarray(found["mean"])) / np.asarray(found["std"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def cut_before(model, layer_name, lib=keras):
    """The model up to (not including) the named layer: its preprocessing prefix."""
    return lib.Model(model.inputs[0], model.get_layer(layer_name).input)


def head(x, lib=keras):
    x = lib.layers.Conv2D(4, 3, name="conv")(x)
    x = lib.layers.GlobalAveragePooling2D()(x)
    return lib.layers.Dense(1)(x)


def test_sequential_augmentation_then_rescaling():
    model = keras.Sequential([
        keras.Input((64, 64, 3)), L.RandomFlip(), L.RandomRotation(0.1), L.Rescaling(1 / 255, name="rescale"),
        L.Conv2D(4, 3, name="conv"), L.GlobalAveragePooling2D(), L.Dense(1),
    ])
    found = input_normalisation(model)
    assert found == {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "layers": ["rescale"]}
    assert_reproduces(found, cut_before(model, "conv"))


def test_greyscale_input_gives_one_channel():
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Rescaling(1 / 255), L.Conv2D(4, 3, name="conv")])
    found = input_normalisation(model)
    assert found["mean"] == [0.0] and found["std"] == [255.0]
    assert_reproduces(found, cut_before(model, "conv"))


def test_greyscale_input_without_a_channel_axis():
    model = keras.Sequential([keras.Input((28, 28)), L.Rescaling(1 / 127.5, offset=-1, name="rescale"),
                              L.Reshape((28, 28, 1), name="to_nhwc"), L.Conv2D(4, 3)])
    found = input_normalisation(model)
    assert found["mean"] == [127.5] and found["std"] == [127.5]
    assert_reproduces(found, cut_before(model, "to_nhwc"))


def test_per_column_rescaling_of_a_greyscale_input_is_not_per_channel():
    model = keras.Sequential([keras.Input((4, 3)), L.Rescaling([1.0, 2.0, 3.0]), L.Reshape((4, 3, 1)), L.Conv2D(4, 3)])
    assert input_normalisation(model) is None


def tutorial_augmentation(lib=keras):
    return lib.Sequential([lib.layers.RandomFlip("horizontal"), lib.layers.RandomRotation(0.2),
                           lib.layers.RandomZoom(0.1)], name="data_augmentation")


@pytest.mark.parametrize("style", ["sequential", "functional"])
def test_nested_data_augmentation_then_rescaling_to_minus_one_one(style):
    """The transfer-learning tutorial: data_augmentation (a nested Sequential), Rescaling(1/127.5, -1)."""
    if style == "sequential":
        model = keras.Sequential([keras.Input((32, 32, 3)), tutorial_augmentation(),
                                  L.Rescaling(1.0 / 127.5, offset=-1), L.Conv2D(4, 3, name="conv"),
                                  L.GlobalAveragePooling2D(), L.Dense(1)])
    else:
        inputs = keras.Input((32, 32, 3))
        model = keras.Model(inputs, head(L.Rescaling(1.0 / 127.5, offset=-1)(tutorial_augmentation()(inputs))))
    found = input_normalisation(model)
    assert found["mean"] == [127.5] * 3 and found["std"] == [127.5] * 3
    assert_reproduces(found, cut_before(model, "conv"))


def test_resize_and_rescale_then_augmentation():
    """The data-augmentation tutorial: Sequential([Resizing, Rescaling]) then the augmentation block."""
    resize_and_rescale = keras.Sequential([L.Resizing(24, 24), L.Rescaling(1.0 / 255)])
    model = keras.Sequential([keras.Input((40, 40, 3)), resize_and_rescale, tutorial_augmentation(),
                              L.Conv2D(4, 3, name="conv")])
    found = input_normalisation(model)
    assert found["std"] == [255.0] * 3
    x = pixels((40, 40, 3))
    resized = np.asarray(L.Resizing(24, 24)(x))
    want = np.asarray(cut_before(model, "conv")(x, training=False))
    np.testing.assert_allclose((resized - np.asarray(found["mean"])) / np.asarray(found["std"]), want,
                               rtol=1e-5, atol=1e-5)


def composed(case):
    """(preprocessing layers, expected mean, expected std) for the composition tests."""
    if case == "normalization in pixel units":  # ConvNeXt's
        return [L.Normalization(mean=[m * 255 for m in MEAN], variance=[(s * 255) ** 2 for s in STD])], \
            TORCH_MEAN, TORCH_STD
    if case == "rescaling then normalization":
        return [L.Rescaling(1 / 255), L.Normalization(mean=MEAN, variance=[s ** 2 for s in STD])], TORCH_MEAN, TORCH_STD
    if case == "rescaling to [-1, 1] then normalization in pixel units":
        # y = (x / 127.5 - 1 - M) / S  ->  mean = 127.5 (M + 1), std = 127.5 S
        norm = L.Normalization(mean=[m * 255 for m in MEAN], variance=[(s * 255) ** 2 for s in STD])
        return [L.Rescaling(1 / 127.5, offset=-1), norm], \
            [127.5 * (m * 255 + 1) for m in MEAN], [127.5 * s * 255 for s in STD]
    if case == "efficientnet: rescaling, adapted normalization, per-channel rescaling":
        norm = L.Normalization()
        data = pixels((8, 8, 3), n=16, seed=1) / 255 * np.array([0.5, 1.0, 2.0], np.float32)
        norm.adapt(data)
        mean, var = data.reshape(-1, 3).mean(0), data.reshape(-1, 3).var(0)
        per_channel = [1 / np.sqrt(s) for s in STD]
        return [L.Rescaling(1 / 255), norm, L.Rescaling(per_channel)], \
            list(255 * mean), list(255 * np.sqrt(var) / np.array(per_channel))
    raise ValueError(case)


CASES = ["normalization in pixel units", "rescaling then normalization",
         "rescaling to [-1, 1] then normalization in pixel units",
         "efficientnet: rescaling, adapted normalization, per-channel rescaling"]


@pytest.mark.parametrize("case", CASES)
def test_rescaling_and_normalization_compose(case):
    layers, mean, std = composed(case)
    model = keras.Sequential([keras.Input((16, 16, 3)), L.RandomFlip(), *layers, L.Conv2D(4, 3, name="conv")])
    found = input_normalisation(model)
    assert found["layers"] == [layer.name for layer in layers]
    np.testing.assert_allclose(found["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(found["std"], std, rtol=1e-5)
    assert_reproduces(found, cut_before(model, "conv"))


@pytest.mark.parametrize("library", ["keras", "tf_keras"])
def test_normalization_is_read_as_it_computes_after_set_weights(library):
    """Keras 3's Normalization computes with set_weights() values only after finalize_state() (Keras 2 at once):
    the answer follows what the layer computes."""
    lib = pytest.importorskip(library)
    norm = lib.layers.Normalization()
    model = lib.Sequential([lib.Input((16, 16, 3)), lib.layers.Rescaling(1 / 255), norm,
                            lib.layers.Conv2D(4, 3, name="conv")])
    count = norm.get_weights()[2]
    norm.set_weights([np.array(MEAN), np.array([s ** 2 for s in STD]), count])
    assert_reproduces(input_normalisation(model), cut_before(model, "conv", lib))


def test_functional_model_with_the_same_layers():
    inputs = keras.Input((16, 16, 3))
    x = L.RandomFlip()(inputs)
    x = L.RandomRotation(0.1)(x)
    x = L.Rescaling(1 / 255)(x)
    x = L.Normalization(mean=MEAN, variance=[s ** 2 for s in STD])(x)
    model = keras.Model(inputs, head(x))
    found = input_normalisation(model)
    np.testing.assert_allclose(found["mean"], TORCH_MEAN, rtol=1e-5)
    np.testing.assert_allclose(found["std"], TORCH_STD, rtol=1e-5)
    assert_reproduces(found, cut_before(model, "conv"))


def test_saved_keras_file_loaded_by_edgelite(tmp_path):
    from edgelite.convert.loading import load_model

    inputs = keras.Input((16, 16, 3))
    x = tutorial_augmentation()(inputs)
    x = L.Normalization(mean=[m * 255 for m in MEAN], variance=[(s * 255) ** 2 for s in STD])(x)
    keras.Model(inputs, head(x)).save(tmp_path / "m.keras")
    model = load_model(tmp_path / "m.keras")
    found = input_normalisation(model)
    np.testing.assert_allclose(found["mean"], TORCH_MEAN, rtol=1e-5)
    assert_reproduces(found, cut_before(model, "conv"))


def test_keras_applications_preprocess_input_on_the_input_tensor():
    """The tutorial's `x = preprocess_input(x)` on a symbolic tensor: Keras 3 records TrueDivide, Subtract."""
    inputs = keras.Input((16, 16, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(tutorial_augmentation()(inputs))
    model = keras.Model(inputs, head(x))
    found = input_normalisation(model)
    assert found["mean"] == [127.5] * 3 and found["std"] == [127.5] * 3
    assert_reproduces(found, cut_before(model, "conv"))


def test_constant_arithmetic_on_the_input_tensor():
    inputs = keras.Input((16, 16, 3))
    x = 2.0 - keras.ops.cast(inputs, "float32") * np.array([1, 2, 4], np.float32) / 100.0 + 1
    model = keras.Model(inputs, head(-x))
    found = input_normalisation(model)
    np.testing.assert_allclose(found["mean"], [300, 150, 75], rtol=1e-6)
    np.testing.assert_allclose(found["std"], [100, 50, 25], rtol=1e-6)
    assert_reproduces(found, cut_before(model, "conv"))


@pytest.mark.parametrize("family, mean, std", [("mobilenet_v2", [127.5] * 3, [127.5] * 3),
                                                ("densenet", TORCH_MEAN, TORCH_STD)])
def test_lambda_of_an_applications_preprocess_input(family, mean, std):
    preprocess = getattr(keras.applications, family).preprocess_input
    model = keras.Sequential([keras.Input((16, 16, 3)), L.Lambda(preprocess), L.Conv2D(4, 3, name="conv")])
    found = input_normalisation(model)
    np.testing.assert_allclose(found["mean"], mean, rtol=1e-4)
    np.testing.assert_allclose(found["std"], std, rtol=1e-4)
    assert_reproduces(found, cut_before(model, "conv"))


def test_backbone_with_its_rescaling_inside():
    """Keras 3 applications (and KerasCV backbones) normalise inside the nested backbone."""
    backbone = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                                   minimalistic=True)
    inputs = keras.Input((32, 32, 3))
    x = backbone(tutorial_augmentation()(inputs), training=False)
    model = keras.Model(inputs, L.Dense(1)(L.GlobalAveragePooling2D()(x)))
    found = input_normalisation(model)
    assert found["mean"] == [127.5] * 3 and found["std"] == [127.5] * 3
    first_conv = next(layer for layer in backbone.layers if type(layer).__name__ == "Conv2D")
    inner = keras.Model(backbone.inputs[0], first_conv.input)
    assert_reproduces(found, keras.Model(inputs, inner(model.get_layer("data_augmentation")(inputs))))


def test_application_whose_normalization_precedes_a_nested_stem():
    model = keras.applications.ConvNeXtTiny(input_shape=(32, 32, 3), include_top=False, weights=None)
    found = input_normalisation(model)
    np.testing.assert_allclose(found["mean"], TORCH_MEAN, rtol=1e-5)
    np.testing.assert_allclose(found["std"], TORCH_STD, rtol=1e-5)
    assert_reproduces(found, cut_before(model, model.layers[2].name))  # the stem Sequential


def test_stops_at_an_unreadable_lambda_keeping_what_came_before():
    model = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.Lambda(lambda x: x * 2, name="double"),
                              L.Normalization(mean=MEAN, variance=[s ** 2 for s in STD]), L.Conv2D(4, 3)])
    found = input_normalisation(model)
    assert found["std"] == [255.0] * 3 and len(found["layers"]) == 1
    assert_reproduces(found, cut_before(model, "double"))


def no_preprocessing():
    return keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(1)])


def conv_first():
    return keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(4, 3), L.Rescaling(1 / 255), L.Dense(1)])


def augmentation_only():
    return keras.Sequential([keras.Input((16, 16, 3)), tutorial_augmentation(), L.Conv2D(4, 3)])


def lambda_first():
    return keras.Sequential([keras.Input((16, 16, 3)), L.Lambda(lambda x: x / 255.0), L.Rescaling(2.0), L.Conv2D(4, 3)])


def caffe_preprocess_input():  # RGB -> BGR and mean subtraction: not a per-channel mean/std
    return keras.Sequential([keras.Input((16, 16, 3)), L.Lambda(keras.applications.resnet50.preprocess_input),
                             L.Conv2D(4, 3)])


def inverted_normalization():
    return keras.Sequential([keras.Input((16, 16, 3)), L.Normalization(mean=MEAN, variance=STD, invert=True),
                             L.Conv2D(4, 3)])


def per_pixel_normalization():
    norm = L.Normalization(axis=(1, 2, 3))
    norm.adapt(pixels((16, 16, 3), n=2))
    return keras.Sequential([keras.Input((16, 16, 3)), norm, L.Conv2D(4, 3)])


def input_used_twice():  # half the model sees raw pixels
    inputs = keras.Input((16, 16, 3))
    x = L.Add()([L.Rescaling(1 / 255)(inputs), L.Conv2D(3, 1)(inputs)])
    return keras.Model(inputs, head(x))


@pytest.mark.parametrize("build", [no_preprocessing, conv_first, augmentation_only, lambda_first,
                                   caffe_preprocess_input, inverted_normalization, per_pixel_normalization,
                                   input_used_twice])
def test_no_normalisation_at_the_input(build):
    assert input_normalisation(build()) is None


@pytest.fixture(scope="module")
def tf_keras():
    return pytest.importorskip("tf_keras")


def reload_h5(tf_keras, model, path):
    with warnings.catch_warnings():  # "HDF5 is legacy": that is the point
        warnings.simplefilter("ignore")
        model.save(path)  # the legacy HDF5 format (tf_keras picks it from the suffix)
    loaded = tf_keras.models.load_model(path, compile=False)
    assert type(loaded).__module__.startswith("tf_keras")
    return loaded


def test_legacy_h5_sequential_with_rescaling(tf_keras, tmp_path):
    T = tf_keras.layers
    model = tf_keras.Sequential([T.InputLayer((32, 32, 3)), T.RandomFlip(), T.Rescaling(1.0 / 255),
                                 T.Conv2D(4, 3, name="conv"), T.GlobalAveragePooling2D(), T.Dense(1)])
    loaded = reload_h5(tf_keras, model, tmp_path / "m.h5")
    found = input_normalisation(loaded)
    assert found["mean"] == [0.0] * 3 and found["std"] == [255.0] * 3
    assert_reproduces(found, cut_before(loaded, "conv", tf_keras))


def test_legacy_h5_preprocess_input_as_tfoplambda(tf_keras, tmp_path):
    """Keras 2 records `preprocess_input(x)` on a symbolic tensor as TFOpLambda layers (truediv, subtract)."""
    inputs = tf_keras.Input((32, 32, 3))
    x = tutorial_augmentation(tf_keras)(inputs)
    x = tf_keras.applications.mobilenet_v2.preprocess_input(x)
    loaded = reload_h5(tf_keras, tf_keras.Model(inputs, head(x, tf_keras)), tmp_path / "m.h5")
    assert "TFOpLambda" in {type(layer).__name__ for layer in loaded.layers}
    found = input_normalisation(loaded)
    assert found["mean"] == [127.5] * 3 and found["std"] == [127.5] * 3
    assert_reproduces(found, cut_before(loaded, "conv", tf_keras))


def test_legacy_h5_adapted_normalization(tf_keras, tmp_path):
    """Adapted statistics are weights in the .h5: they must be read as loaded, not as first built."""
    T = tf_keras.layers
    norm = T.Normalization()
    data = pixels((8, 8, 3), n=8, seed=2) / 255.0
    norm.adapt(data)
    model = tf_keras.Sequential([T.InputLayer((16, 16, 3)), T.Rescaling(1.0 / 255), norm, T.Conv2D(4, 3, name="conv")])
    loaded = reload_h5(tf_keras, model, tmp_path / "m.h5")
    found = input_normalisation(loaded)
    np.testing.assert_allclose(found["mean"], 255 * data.reshape(-1, 3).mean(0), rtol=1e-4)
    np.testing.assert_allclose(found["std"], 255 * data.reshape(-1, 3).std(0), rtol=1e-4)
    assert_reproduces(found, cut_before(loaded, "conv", tf_keras))
