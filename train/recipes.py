"""Training recipes: the classic small custom CNN on a class-folder dataset."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgelite.classifier import sidecar_path
from edgelite.errors import EdgeliteError
from edgelite.files import class_folders, prepare_out_dir, split, write_json
from edgelite.preprocess import PreprocessSpec, to_float
from edgelite.quiet import import_tensorflow


@dataclass
class Trained:
    model_path: Path
    labels: list[str]
    spec: PreprocessSpec
    train: list  # (path, class index)
    val: list
    history: dict
    val_accuracy: float
    seconds: float


def small_cnn(size: int, classes: int):
    """Two conv 3x3 + max-pool blocks, a dense layer, softmax: the tutorial custom model."""
    import keras

    return keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(classes, activation="softmax"),
    ], name="edgelite_cnn")


def train_cnn(data_dir: str | Path, out_dir: str | Path, size: int = 150, epochs: int = 10,
              val_split: float = 0.2, seed: int = 0, force: bool = False, verbose: int = 2) -> Trained:
    """Train the small CNN on class folders; keep the best epoch by validation accuracy.

    Writes `model.keras`, its sidecar `model.keras.json` (labels, preprocessing) and
    `history.json` into out_dir.
    """
    import_tensorflow()
    import keras

    data_dir = Path(data_dir)
    items = class_folders(data_dir)
    labels = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(labels) < 2 or not items:
        raise EdgeliteError(f"{data_dir}: need class sub-folders with images (found {len(labels)} classes, {len(items)} images)")
    out_dir = prepare_out_dir(out_dir, force)
    spec = PreprocessSpec(size=(size, size), preset="unit", resize="stretch")
    train_items, val_items = split(items, val_split, seed)
    x_train, y_train = _arrays(train_items, spec)
    x_val, y_val = _arrays(val_items, spec)

    keras.utils.set_random_seed(seed)
    model = small_cnn(size, len(labels))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=3, restore_best_weights=True)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=32,
                        callbacks=[stop], verbose=verbose)
    seconds = time.perf_counter() - started
    val_accuracy = float(model.evaluate(x_val, y_val, verbose=0)[1])

    model_path = out_dir / "model.keras"
    tmp = out_dir / ".model.keras.part.keras"
    model.save(tmp)
    os.replace(tmp, model_path)
    write_json(sidecar_path(model_path), {"labels": labels, "preprocess": spec.to_dict()})
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    write_json(out_dir / "history.json", hist)
    return Trained(model_path, labels, spec, train_items, val_items, hist, val_accuracy, seconds)


def _arrays(items: list, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images and labels; unreadable files are skipped and reported."""
    arrays, targets = [], []
    for path, target in items:
        try:
            arrays.append(to_float(path, spec))
            targets.append(target)
        except EdgeliteError as exc:
            print(f"skipped: {exc}")
    if not arrays:
        raise EdgeliteError("no readable images")
    return np.stack(arrays), np.array(targets, dtype=np.int64)
