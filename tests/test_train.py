"""Training recipes on small data: what they write, what they skip, and what they promise."""
import json

import numpy as np
import pytest
from PIL import Image

from edgelite import Classifier, EdgeliteError
from edgelite.train.recipes import train

from conftest import run_cli, shared


@pytest.fixture(scope="module")
def small_cats(tmp_path_factory):
    """3 big-cat classes, 24 photos each, plus one corrupt file (skipped and reported)."""
    source = shared("data/big-cats")
    root = tmp_path_factory.mktemp("cats") / "data"
    for name in ("lions", "tiger", "snow_leopard"):
        (root / name).mkdir(parents=True)
        for photo in sorted((source / name).glob("*.jpg"))[:24]:
            Image.open(photo).resize((96, 96)).save(root / name / photo.name)
    (root / "tiger" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_cnn_recipe_writes_everything(digits, tmp_path):
    out = tmp_path / "cnn"
    trained = train(digits, out, recipe="cnn", size=24, epochs=3, verbose=0)
    names = {p.name for p in out.iterdir()}
    assert {"model.keras", "model.keras.json", "history.json", "evaluation.json", "history.png", "confusion.png"} <= names
    sidecar = json.loads((out / "model.keras.json").read_text())
    assert sidecar["labels"] == [str(d) for d in range(10)] and sidecar["preprocess"]["size"] == [24, 24]
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_accuracy"]) == len(history["loss"]) <= 3
    figures = trained.evaluation
    matrix = np.array(figures["confusion_matrix"])
    assert matrix.sum() == figures["images"] == len(trained.val)
    assert figures["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert trained.val_accuracy == max(history["val_accuracy"]) or trained.val_accuracy > 0.5
    recall = figures["per_class"]["3"]["recall"]
    assert recall == pytest.approx(matrix[3, 3] / matrix[3].sum())
    # stratified split: every class is in the validation set, about 20 % of it
    assert {y for _, y in trained.val} == set(range(10))
    assert 0.18 < len(trained.val) / (len(trained.val) + len(trained.train)) < 0.22


def test_mobilenetv2_recipe_fine_tunes_and_exports(small_cats, tmp_path):
    weights = shared("data/models/mobilenet_v2_1.0_224_imagenet.keras")
    out = tmp_path / "mnv2"
    done = run_cli("train", small_cats, "--recipe", "mobilenetv2", "--weights", weights, "--size", "96",
                   "--epochs", "2", "--fine-tune-epochs", "1", "--fine-tune-last", "10", "--out", out, "--export")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipped:" in done.stderr and "broken.jpg" in done.stderr  # the library logs; the CLI shows it on stderr
    assert "fine-tuning the last 10 backbone layers" in done.stderr
    history = json.loads((out / "history.json").read_text())
    assert history["fine_tune_from_epoch"] == len(history["loss"]) - 1
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["accuracy"] > 0.8  # ImageNet features tell lions from tigers from snow leopards
    assert len(evaluation["skipped"]) == 1
    import keras
    model = keras.saving.load_model(out / "model.keras")
    assert not any("random" in layer.name for layer in model.layers)  # augmentation stays out of the model
    clf = Classifier(out / "artifacts" / "model_int8.tflite")
    assert clf.labels == ["lions", "snow_leopard", "tiger"]
    line = next(line for line in done.stdout.splitlines() if line.startswith("validation accuracy: Keras"))
    figures = dict(part.strip().rsplit(" ", 1) for part in line.split(":", 1)[1].split(","))
    assert abs(float(figures["tflite-int8"].rstrip("%")) - float(figures["Keras"].rstrip("%"))) <= 7.0


def test_empty_and_single_class_folders_are_clear_errors(tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(EdgeliteError, match="at least 2 class sub-folders"):
        train(tmp_path / "one", tmp_path / "out", recipe="cnn", verbose=0)
    (tmp_path / "empty").mkdir()
    done = run_cli("train", tmp_path / "empty", "--recipe", "cnn", "--out", tmp_path / "out2")
    assert done.returncode == 2 and "at least 2 class sub-folders" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_big_cats_transfer_learning_meets_the_bar(tmp_path):
    """The default recipe on all of big-cats with the shared ImageNet backbone (about 5 minutes)."""
    data = shared("data/big-cats")
    weights = shared("data/models/mobilenet_v2_1.0_224_imagenet.keras")
    done = run_cli("train", data, "--recipe", "mobilenetv2", "--weights", weights, "--out", tmp_path / "o", "--export")
    assert done.returncode == 0, done.stderr[-2000:]
    evaluation = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert evaluation["accuracy"] >= 0.94
    line = next(line for line in done.stdout.splitlines() if line.startswith("validation accuracy: Keras"))
    figures = dict(part.strip().rsplit(" ", 1) for part in line.split(":", 1)[1].split(","))
    keras_acc = float(figures["Keras"].rstrip("%"))
    assert abs(float(figures["tflite-int8"].rstrip("%")) - keras_acc) <= 1.0


def test_separate_validation_folder(digits, tmp_path):
    import shutil

    val = tmp_path / "val"
    for folder in sorted(digits.iterdir()):
        (val / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:2]:
            shutil.copy(image, val / folder.name / image.name)
    trained = train(digits, tmp_path / "out", recipe="cnn", size=16, epochs=1, val_dir=val, augment=False, verbose=0)
    assert len(trained.val) == 20 and trained.evaluation["images"] == 20
    assert len(trained.train) == 1797  # all of DATA trains when --val is given
    (val / "0").rename(val / "zero")
    with pytest.raises(EdgeliteError, match="class folders differ"):
        train(digits, tmp_path / "out2", recipe="cnn", size=16, epochs=1, val_dir=val, verbose=0)


def test_train_and_the_command_default_to_the_same_recipe():
    import inspect

    from edgelite.cli import build_parser

    args = build_parser(["train"]).parse_args(["train", "DATA", "--out", "OUT"])
    assert args.recipe == inspect.signature(train).parameters["recipe"].default == "mobilenetv2"
