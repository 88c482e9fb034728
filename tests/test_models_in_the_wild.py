"""Models nobody here made, with no flags: standard TFLite Metadata, the ecosystem's resize, gray inputs,
one-unit heads, preprocessing inside a Keras model, and one resolver that merges what the user says."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgelite import Classifier
from edgelite.classifier import are_probabilities, scores_from_output
from edgelite.errors import EdgeliteError
from edgelite.files import find_images
from edgelite.train.datasets import class_folders
from edgelite.preprocess import PreprocessSpec, pixels

from conftest import run_cli, shared

MODELS = "data/third-party-models"


def test_coral_bird_classifier_needs_no_flags():
    """libcoral's CPU test: class 659 (Black-capped Chickadee) with score >= 0.5, the whole frame resized
    bilinearly without antialiasing (Coral's own pipeline gives 0.58); labels from inside the model."""
    clf = Classifier(shared(f"{MODELS}/mobilenet_v2_1.0_224_inat_bird_quant.tflite"))
    assert clf.spec.resize == "stretch" and not clf.spec.antialias
    top = clf.predict(shared(f"{MODELS}/bird.bmp"), top_k=1)[0]
    assert top.index == 659 and top.label.startswith("Poecile atricapillus")
    assert 0.5 <= top.score and abs(top.score - 0.58) < 0.05
    done = run_cli("predict", shared(f"{MODELS}/mobilenet_v2_1.0_224_inat_bird_quant.tflite"),
                   shared(f"{MODELS}/bird.bmp"), "--json", "--top-k", "1")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["predictions"][0]["index"] == 659 and line["preprocess"]["resize"] == "stretch"


def test_labels_given_win_and_the_models_own_are_not_read():
    """--labels over a model's zipped labels file: the user's names, the same preprocessing, and the zip left
    unread (a model whose zip is damaged still runs with labels of the user's)."""
    model = shared(f"{MODELS}/mobilenet_v2_1.0_224_inat_bird_quant.tflite")
    own = Classifier(model)
    names = [f"bird {i}" for i in range(own.classes)]
    given = Classifier(model, labels=names)
    assert given.labels == names and given.spec == own.spec
    assert given.standard["labels"] is None and given.standard["label_file"] == own.standard["label_file"]
    assert given.predict(shared(f"{MODELS}/bird.bmp"), top_k=1)[0].label == "bird 659"


def test_float_model_with_normalization_options_needs_no_preprocess():
    clf = Classifier(shared(f"{MODELS}/mobilenet_v1_0.25_224_1_metadata_1.tflite"))
    assert clf.spec.mean == (127.5,) * 3 and clf.spec.std == (127.5,) * 3 and clf.labels[0] == "background"
    top = clf.predict(shared("data/imagenet-sample/n02129604_tiger.JPEG"), top_k=1)[0]
    assert top.label == "tiger"


def test_resize_without_antialias_is_tflites_resize_bilinear():
    tf = pytest.importorskip("tensorflow")
    photo = shared("data/imagenet-sample/n02129604_tiger.JPEG")
    spec = PreprocessSpec(size=(224, 224), preset="raw", resize="stretch", antialias=False)
    image = np.asarray(Image.open(photo).convert("RGB"))
    reference = tf.image.resize(image[None].astype(np.float32), (224, 224), antialias=False).numpy()[0]
    assert np.abs(pixels(photo, spec).astype(np.float32) - reference).max() <= 1.0  # uint8 rounding
    smooth = pixels(photo, PreprocessSpec(size=(224, 224), preset="raw", resize="stretch"))
    assert np.abs(smooth.astype(np.float32) - reference).max() > 20  # Pillow's antialiasing is another filter


def test_a_carried_spec_is_merged_not_replaced(artifact, tmp_path):
    path = artifact["tflite-fp32"]
    carried = Classifier(path).spec
    clf = Classifier(path, preprocess="raw")
    assert (clf.spec.mean, clf.spec.std) == ((0.0,) * 3, (1.0,) * 3)
    assert (clf.spec.resize, clf.spec.size, clf.spec.antialias) == (carried.resize, carried.size, carried.antialias)
    flipped = Classifier(path, preprocess={"antialias": not carried.antialias})
    assert flipped.spec.antialias != carried.antialias and flipped.spec.mean == carried.mean
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"resize": "crop", "crop_fraction": 0.5}))
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(image)
    done = run_cli("predict", path, image, "--json", "--preprocess", spec_file, "--mean", "10")
    assert done.returncode == 0, done.stderr
    used = json.loads(done.stdout.splitlines()[0])["preprocess"]
    assert used["crop_fraction"] == 0.5 and used["mean"] == [10.0] * 3 and used["std"] == list(carried.std)
    assert used["size"] == list(carried.size) and used["channel_order"] == carried.channel_order
    with pytest.raises(EdgeliteError, match="unknown preprocessing preset"):
        Classifier(path, preprocess="imagenet-ish")


def test_one_unit_heads_are_two_classes():
    logits = np.array([[0.0], [2.0], [-3.0]], np.float32)
    scores = scores_from_output(logits, probabilities=False)
    assert np.allclose(scores.sum(axis=1), 1) and np.allclose(scores[:, 1], 1 / (1 + np.exp(-logits[:, 0])))
    sigmoid = scores_from_output(np.array([[0.9]], np.float32))  # in [0, 1] and nothing says: a sigmoid
    assert np.allclose(sigmoid, [[0.1, 0.9]])
    # the converter reads a head whose activation the graph does not name (a SavedModel) the same way
    assert are_probabilities(np.array([[0.9], [0.2]])) and not are_probabilities(logits)
    assert not are_probabilities(np.array([[0.9, 0.9]])) and are_probabilities(np.array([[0.3, 0.7]]))


def test_symlinked_class_folders_are_found(tmp_path):
    real = tmp_path / "real" / "cats"
    real.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(real / "a.png")
    data = tmp_path / "data"
    data.mkdir()
    (data / "cats").symlink_to(real, target_is_directory=True)
    (data / "cats" / "loop").symlink_to(data, target_is_directory=True)  # a cycle is walked once
    assert [p.name for p in find_images([data])] == ["a.png"]
    assert [(p.name, i) for p, i in class_folders(data)] == [("a.png", 0)]


@pytest.fixture(scope="module")
def gray_digits(tmp_path_factory):
    """sklearn's digits as 28x28 gray PNGs in class folders, and two MNIST-style Keras models trained on
    them: Input(28, 28) -> Flatten and Input(28, 28, 1) -> Conv2D, each with Rescaling(1/255) inside."""
    pytest.importorskip("tensorflow")
    import keras
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("gray")
    digits = load_digits()
    images = [Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
              for image in digits.images]
    for n, (image, target) in enumerate(zip(images, digits.target)):
        (folder / "data" / str(target)).mkdir(parents=True, exist_ok=True)
        image.save(folder / "data" / str(target) / f"{n:04d}.png")
    x = np.stack([np.asarray(i) for i in images]).astype(np.float32)
    keras.utils.set_random_seed(0)
    models = {}
    for name, shape, body in (("flat", (28, 28), [keras.layers.Flatten(), keras.layers.Dense(32, activation="relu")]),
                              ("conv", (28, 28, 1), [keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                                                     keras.layers.Flatten()])):
        model = keras.Sequential([keras.Input(shape), keras.layers.Rescaling(1 / 255), *body,
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x.reshape((-1, *shape)), digits.target, epochs=8, batch_size=64, verbose=0)
        models[name] = folder / f"{name}.keras"
        model.save(models[name])
    return folder, models


@pytest.mark.parametrize("name", ["flat", "conv"])
def test_gray_models_convert_and_classify_a_digit(gray_digits, name):
    folder, models = gray_digits
    labels = folder / "labels.txt"
    labels.write_text("\n".join(map(str, range(10))))
    out = folder / f"out-{name}"
    done = run_cli("convert", models[name], "--calib", folder / "data", "--out", out, "--labels", labels,
                   "--formats", "tflite-fp32", "tflite-int8", "onnx-fp32", "--io-type", "uint8", "--calib-count", "100")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    digit = folder / "data" / "7" / sorted(p.name for p in (folder / "data" / "7").iterdir())[0]
    for artifact in sorted(out.glob(f"{name}_*.*")):
        if artifact.suffix == ".json":
            continue
        clf = Classifier(artifact)
        layout = "NHW" if name == "flat" else "NHWC"
        assert clf.spec.channels == 1 and clf.spec.layout == clf.metadata["preprocess"]["layout"] == layout
        assert clf.metadata["normalised_in_model"]["std"][0] == pytest.approx(255)
        assert clf.predict(digit, top_k=1)[0].label == "7", artifact.name
        assert clf.predict(Image.open(digit).convert("RGB"), top_k=1)[0].label == "7"  # colour in, gray used


def test_a_bare_uint8_gray_model_needs_no_flags(gray_digits, tmp_path):
    """[1, 28, 28] uint8 with no metadata at all (as a third party ships it): raw pixels, its own scale."""
    import keras

    from edgelite.convert.tflite import to_tflite

    folder, models = gray_digits
    model = keras.models.load_model(models["flat"])
    calibration = [np.asarray(Image.open(p), np.float32)[None] for p in find_images([folder / "data"])[::20]]
    bare = tmp_path / "digits_uint8.tflite"
    bare.write_bytes(to_tflite(model, "int8", lambda: iter(calibration), io_type="uint8"))
    clf = Classifier(bare)
    assert clf.input.shape[1:] == (28, 28) and clf.spec.layout == "NHW" and clf.labels is None
    digit = sorted((folder / "data" / "3").iterdir())[0]
    assert clf.predict(digit, top_k=1)[0].index == 3


def test_edgelite_tflite_also_carries_standard_metadata(artifact):
    """Other tools (Task Library, MediaPipe) read edgelite's TFLite artifacts through the standard metadata;
    edgelite's own entry and the check set (an .npz inside a buffer) survive the appended labels zip."""
    from edgelite.tflite_format import read

    for fmt in ("tflite-fp32", "tflite-int8"):
        clf = Classifier(artifact[fmt])
        standard = read(artifact[fmt])
        assert standard["labels"] == clf.labels and standard["color_space"] == "RGB"
        assert standard["mean"] == list(clf.spec.mean) and standard["std"] == list(clf.spec.std)
        assert clf.backend.check_set() and clf.metadata["format"] == fmt


def test_score_calibration_follows_the_task_library():
    from edgelite.classifier import calibrated

    calibration = {"transformation": "LOG", "default_score": 0.2,
                   "params": [(1.0, 2.0, 0.5, None), None, (0.5, 1.0, 0.0, 0.3)]}
    scores = np.array([[0.5, 0.4, 0.1], [0.25, 0.25, 0.5]], np.float32)
    out = calibrated(scores, calibration)
    expected_0 = 1 / (1 + np.exp(-(2 * np.log(scores[:, 0]) + 0.5)))
    assert np.allclose(out[:, 0], expected_0) and np.allclose(out[:, 1], 0.2)  # no parameters: default
    assert out[0, 2] == pytest.approx(0.2) and out[1, 2] == pytest.approx(0.5 / (1 + np.exp(-np.log(0.5))))


def test_tutorial_binary_model_with_preprocessing_inside(tmp_path):
    """The TensorFlow transfer-learning tutorial's shape: augmentation + Rescaling inside the model and a
    Dense(1) logit, trained a few epochs on two big-cats classes (about 15 s); converted with --labels only,
    from class folders that are symlinks."""
    pytest.importorskip("tensorflow")
    import keras

    from edgelite.convert.samples import split

    root = shared("data/big-cats")
    items = [(p, i) for i, name in enumerate(["snow_leopard", "tiger"]) for p in find_images([root / name])]
    train_items, held = split(items, 0.25, seed=0)
    size = 96
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p, _ in train_items])
    y = np.array([label for _, label in train_items], np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)],
                         name="data_augmentation"),
        keras.layers.Rescaling(1 / 127.5, offset=-1),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1),  # a logit, as the tutorial's from_logits=True loss wants
    ])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(x.astype(np.float32), y, epochs=12, batch_size=32, verbose=0)
    model.save(tmp_path / "cats.keras")
    labels = tmp_path / "labels.txt"
    labels.write_text("snow_leopard\ntiger\n")
    calib = tmp_path / "calib"
    for name in ("snow_leopard", "tiger"):
        (calib / name).mkdir(parents=True)
        (calib / name).joinpath("link").symlink_to(root / name, target_is_directory=True)
    done = run_cli("convert", tmp_path / "cats.keras", "--calib", calib, "--out", tmp_path / "out", "--labels", labels,
                   "--formats", "tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8", "--calib-count", "100")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    for artifact in sorted((tmp_path / "out").glob("cats_*.*[xe]")):  # .onnx and .tflite
        clf = Classifier(artifact)
        assert clf.metadata["outputs"] == "logits" and clf.labels == ["snow_leopard", "tiger"]
        assert clf.spec.preset == "raw" and clf.metadata["normalised_in_model"]["std"] == [127.5] * 3
        results = list(clf.predict_batch([p for p, _ in held], top_k=2))
        assert all(abs(sum(p.score for p in r.predictions) - 1) < 1e-5 for r in results)
        right = np.mean([r.predictions[0].index == label for r, (_, label) in zip(results, held)])
        assert right >= 0.8, (artifact.name, right)
