"""Training recipes: MobileNetV2 transfer learning and the small custom CNN, on class folders."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgelite.classifier import sidecar_path
from edgelite.errors import EdgeliteError
from edgelite.files import move_atomic, prepare_out_dir, write_json
from edgelite.preprocess import PreprocessSpec
from edgelite.convert.loading import import_tensorflow

from .data import load_dataset
from .evaluation import evaluate, per_class_table, plot_confusion, plot_history

RECIPES = ("mobilenetv2", "cnn")


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
    evaluation: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def train(data_dir: str | Path, out_dir: str | Path, recipe: str = "cnn", size: int | None = None,
          epochs: int | None = None, fine_tune_epochs: int = 6, fine_tune_last: int = 30, alpha: float = 1.0,
          weights: str | None = "imagenet", val_split: float = 0.2, val_dir: str | Path | None = None,
          batch_size: int = 32, seed: int = 0, patience: int | None = None, augment: bool = True, force: bool = False,
          verbose: int = 2) -> Trained:
    """Train a recipe on `data_dir/<class>/*`, keep the best epoch by validation accuracy, and
    write model.keras (+ its sidecar with labels and preprocessing), history.json,
    evaluation.json, history.png and confusion.png into out_dir."""
    if recipe not in RECIPES:
        raise EdgeliteError(f"unknown recipe {recipe!r} (choose from {', '.join(RECIPES)})")
    size = size or (224 if recipe == "mobilenetv2" else 150)
    epochs = epochs or (8 if recipe == "mobilenetv2" else 20)
    patience = patience or (4 if recipe == "mobilenetv2" else 6)  # a small CNN's validation accuracy is noisier
    out_dir = prepare_out_dir(out_dir, force)
    spec = PreprocessSpec(size=(size, size), preset="mobilenet" if recipe == "mobilenetv2" else "unit",
                          resize="stretch")
    data = load_dataset(data_dir, spec, val_split, seed, val_dir, verbose=verbose > 0)
    for line in data.skipped:
        print(f"skipped: {line}")

    import_tensorflow()
    import keras

    from .models import augmentation, mobilenetv2_classifier, small_cnn, unfreeze_last

    keras.utils.set_random_seed(seed)
    classes = len(data.labels)
    base = None
    if recipe == "mobilenetv2":
        model, base = mobilenetv2_classifier(size, classes, alpha, None if weights == "none" else weights)
    else:
        model = small_cnn(size, classes)
    # augmentation lives in the training wrapper only: model.keras holds the plain classifier
    trainer = keras.Sequential([keras.Input((size, size, 3)), *([augmentation()] if augment else []), model])

    started = time.perf_counter()
    history = _fit(trainer, data, keras.optimizers.Adam(1e-3), epochs, batch_size, patience, verbose)
    fine_tune_from = None
    if base is not None and fine_tune_last > 0 and fine_tune_epochs > 0:
        fine_tune_from = len(history["loss"])
        trainable = unfreeze_last(base, fine_tune_last)
        if verbose:
            print(f"fine-tuning the last {fine_tune_last} backbone layers ({trainable} trainable) at a lower rate")
        more = _fit(trainer, data, keras.optimizers.Adam(1e-5), fine_tune_epochs, batch_size, patience, verbose,
                    baseline=max(history["val_accuracy"]))
        history = {k: history[k] + more.get(k, []) for k in history}
    seconds = time.perf_counter() - started

    probabilities = model.predict(data.x_val, batch_size=64, verbose=0)
    figures = evaluate(probabilities, data.y_val, data.labels)
    model_path = out_dir / "model.keras"
    staged = out_dir / ".model.staged.keras"  # Keras insists on the .keras suffix
    model.save(staged)
    move_atomic(staged, model_path)
    write_json(sidecar_path(model_path), {"labels": data.labels, "preprocess": spec.to_dict(), "recipe": recipe})
    files = {
        "history": write_json(out_dir / "history.json", {**history, "fine_tune_from_epoch": fine_tune_from}),
        "evaluation": write_json(out_dir / "evaluation.json", {**figures, "skipped": data.skipped,
                                                             "train_images": len(data.train), "seconds": seconds}),
        "history_plot": plot_history(history, out_dir / "history.png", fine_tune_from),
        "confusion_plot": plot_confusion(figures, data.labels, out_dir / "confusion.png"),
    }
    if verbose:
        print(per_class_table(figures))
    return Trained(model_path, data.labels, spec, data.train, data.val, history, figures["accuracy"], seconds,
                   figures, {k: str(v) for k, v in files.items()})


def _fit(trainer, data, optimizer, epochs, batch_size, patience, verbose, baseline=None) -> dict:
    """Fit; keep the weights of the best validation accuracy (EarlyStopping restores them)."""
    import keras

    trainer.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=patience, restore_best_weights=True,
                                         )
    before = trainer.get_weights() if baseline is not None else None
    fitted = trainer.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                         batch_size=batch_size, callbacks=[stop], verbose=verbose)
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    if before is not None and max(history["val_accuracy"]) < baseline:
        trainer.set_weights(before)  # fine-tuning did not beat the frozen stage: keep that
    return history


def train_cnn(data_dir, out_dir, size: int = 150, epochs: int = 10, **kwargs) -> Trained:
    """The small custom CNN recipe (what the demo trains)."""
    return train(data_dir, out_dir, recipe="cnn", size=size, epochs=epochs, **kwargs)
