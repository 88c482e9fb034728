"""Training recipes: MobileNetV2 transfer learning and the small custom CNN, on class folders.

Images stream from disk: worker threads decode each batch with the runtime's own preprocessing
(`edgelite.preprocess.pixels`, then `from_pixels`) while the model trains, so memory does not
grow with the number of images. `cache=DIR` (`--cache DIR`) keeps the decoded uint8 pixels on
disk, one file per split keyed by a hash of its files and the preprocessing spec; it is filled
while the first run trains and read back by later runs (any run over the same files at the same
size). Augmentation lives in a training wrapper model only, so model.keras holds none.

Each time validation accuracy improves, model.keras (+ sidecar) is written: the best epoch so
far is always on disk. Ctrl-C ends training cleanly: the best weights are put back, evaluated
and plotted (model.keras, history.json, evaluation.json with "interrupted": true, the plots),
then KeyboardInterrupt goes on (`edgelite train` exits 130). A second Ctrl-C while that is
written stops at once; model.keras is already there.

Resuming: run the same command again with `--weights OUT/model.keras` (a previous run's model:
its labels must match the data, its input size is taken from its sidecar unless --size is given),
a new --out (or the same one with --force), and the same --cache DIR if there was one (nothing is
decoded again that was decoded before). The run starts from those weights and goes through the
recipe's schedule again (frozen epochs, then fine-tuning) with a fresh optimizer and epoch count;
the starting weights' validation accuracy is measured first and they are kept unless an epoch
beats it, so a resumed run never ends worse than where it started.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgelite.classifier import read_sidecar, sidecar_path
from edgelite.errors import EdgeliteError
from edgelite.files import move_atomic, prepare_out_dir, write_json
from edgelite.preprocess import PreprocessSpec
from edgelite.convert.loading import import_tensorflow

from .data import Batches, PixelCache, describe_cache, load_dataset
from .evaluation import evaluate, per_class_table, plot_confusion, plot_history, predict

log = logging.getLogger(__name__)

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


def train(data_dir: str | Path, out_dir: str | Path, recipe: str = "mobilenetv2", size: int | None = None,
          epochs: int | None = None, fine_tune_epochs: int = 6, fine_tune_last: int = 30, alpha: float = 1.0,
          weights: str | None = "imagenet", val_split: float = 0.2, val_dir: str | Path | None = None,
          batch_size: int = 32, seed: int = 0, patience: int | None = None, augment: bool = True, force: bool = False,
          verbose: int | None = None, cache: str | Path | None = None, workers: int | None = None) -> Trained:
    """Train a recipe on `data_dir/<class>/*`, keep the best epoch by validation accuracy, and
    write model.keras (+ its sidecar with labels and preprocessing), history.json,
    evaluation.json, history.png and confusion.png into out_dir.

    weights: for mobilenetv2 the backbone ('imagenet', 'none' or an ImageNet model file); for either
    recipe, a previous run's model.keras to start from (see the module's note on resuming).
    verbose: 0 quiet, 1 a progress bar per epoch, 2 a line per epoch (default: 1 on a terminal, else 2);
    either way a line per epoch with its time and the time left. cache: a folder for decoded pixels."""
    if recipe not in RECIPES:
        raise EdgeliteError(f"unknown recipe {recipe!r} (choose from {', '.join(RECIPES)})")
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    previous = _previous_run(weights, recipe)
    if previous is not None and size is None:
        size = int(PreprocessSpec.from_dict(previous["preprocess"]).size[0])
    size = size or (224 if recipe == "mobilenetv2" else 150)
    epochs = epochs or (8 if recipe == "mobilenetv2" else 20)
    patience = patience or (4 if recipe == "mobilenetv2" else 6)  # a small CNN's validation accuracy is noisier
    spec = PreprocessSpec(size=(size, size), preset="mobilenet" if recipe == "mobilenetv2" else "unit",
                          resize="stretch")
    data = load_dataset(data_dir, val_split, seed, val_dir)
    if previous is not None:
        _check_previous(previous, data.labels, spec)
    out_dir = prepare_out_dir(out_dir, force)
    caches = [PixelCache(cache, [p for p, _ in items], spec, name) for items, name in
              ((data.train, "train"), (data.val, "val"))] if cache else [None, None]
    train_batches = Batches(data.train, spec, batch_size, shuffle=True, seed=seed, cache=caches[0],
                            skipped=data.skipped)
    val_batches = Batches(data.val, spec, batch_size, cache=caches[1], skipped=data.skipped)
    if verbose:
        log.info(f"{len(data.train)} training and {len(data.val)} validation images in {len(data.labels)} classes, "
                 f"streamed in batches of {batch_size}" + (f"; {describe_cache(caches)}" if cache else ""))

    import_tensorflow()
    import keras

    from .fitting import KerasBatches, Run, fit_stage
    from .models import augmentation, mobilenetv2_classifier, small_cnn, unfreeze_last

    keras.utils.set_random_seed(seed)
    classes = len(data.labels)
    base = None
    if recipe == "mobilenetv2":
        backbone = None if weights == "none" or previous is not None else weights
        model, base = mobilenetv2_classifier(size, classes, alpha, backbone)
    else:
        model = small_cnn(size, classes)
    baseline = None
    if previous is not None:
        _load_previous(model, Path(weights))
        baseline = evaluate(*predict(model, val_batches, workers), data.labels)["accuracy"]
        if verbose:
            log.info(f"starting from {weights}: validation accuracy {baseline:.1%}")
    # augmentation lives in the training wrapper only: model.keras holds the plain classifier
    trainer = keras.Sequential([keras.Input((size, size, 3)), *([augmentation()] if augment else []), model])

    model_path = out_dir / "model.keras"

    def save() -> None:
        staged = out_dir / ".model.staged.keras"  # Keras insists on the .keras suffix
        model.save(staged)
        move_atomic(staged, model_path)
        write_json(sidecar_path(model_path), {"labels": data.labels, "preprocess": spec.to_dict(), "recipe": recipe})

    fine_tune = base is not None and fine_tune_last > 0 and fine_tune_epochs > 0
    stages = [epochs] + ([fine_tune_epochs] if fine_tune else [])
    run = Run(trainer, save, stages, len(data.train), verbose, baseline)
    fit_train, fit_val = KerasBatches(train_batches, workers), KerasBatches(val_batches, workers)
    started = time.perf_counter()
    fine_tune_from = None
    interrupted = False
    try:
        run.begin_stage(0, "frozen backbone" if base is not None else "training")
        fit_stage(trainer, run, fit_train, fit_val, keras.optimizers.Adam(1e-3), epochs, patience, verbose)
        if fine_tune:
            fine_tune_from = len(run.epoch_seconds)
            trainable = unfreeze_last(base, fine_tune_last)
            if verbose:
                log.info(f"fine-tuning the last {fine_tune_last} backbone layers ({trainable} trainable) "
                         "at a lower rate")
            run.begin_stage(1, "fine-tuning")
            fit_stage(trainer, run, fit_train, fit_val, keras.optimizers.Adam(1e-5), fine_tune_epochs, patience,
                      verbose)
    except KeyboardInterrupt:
        interrupted = True
        if not run.restore_best():
            log.warning("interrupted before the first epoch ended: nothing to keep")
            raise
        log.warning(f"interrupted: keeping the best epoch so far ({run.best:.1%} validation accuracy), "
                    "writing its evaluation and plots")
    seconds = time.perf_counter() - started

    probabilities, truth = predict(model, val_batches, workers)
    figures = evaluate(probabilities, truth, data.labels)
    save()
    history = {**run.history, "epoch_seconds": run.epoch_seconds}
    skipped = data.skipped.lines()
    for line in skipped:
        log.warning(f"skipped: {line}")
    files = {
        "history": write_json(out_dir / "history.json", {**history, "fine_tune_from_epoch": fine_tune_from,
                                                         "best_epoch": run.best_epoch, "interrupted": interrupted}),
        "evaluation": write_json(out_dir / "evaluation.json", {
            **figures, "skipped": skipped, "train_images": len(train_batches.kept()), "seconds": seconds,
            "interrupted": interrupted}),
        "history_plot": plot_history(history, out_dir / "history.png", fine_tune_from),
        "confusion_plot": plot_confusion(figures, data.labels, out_dir / "confusion.png"),
    }
    if verbose:
        log.info(per_class_table(figures))
        if cache:
            log.info(describe_cache(caches))
    if interrupted:
        log.warning(f"saved {model_path} and its plots in {out_dir}")
        raise KeyboardInterrupt
    return Trained(model_path, data.labels, spec, train_batches.kept(), val_batches.kept(), history,
                   figures["accuracy"], seconds, figures, {k: str(v) for k, v in files.items()})


def _previous_run(weights, recipe: str) -> dict | None:
    """The sidecar of a previous edgelite run when `weights` names its model.keras, else None."""
    if not weights or weights in ("imagenet", "none"):
        return None
    path = Path(weights)
    if not path.is_file():
        if recipe == "cnn":
            raise EdgeliteError(f"no such model file: {path}")
        return None  # the backbone loader reports it
    sidecar = read_sidecar(path)
    if not sidecar or "recipe" not in sidecar:
        if recipe == "cnn":
            raise EdgeliteError(f"{path}: for the cnn recipe, --weights can only be a previous run's model.keras")
        return None  # an ImageNet backbone file
    if sidecar["recipe"] != recipe:
        raise EdgeliteError(f"{path} was trained with the {sidecar['recipe']} recipe, not {recipe}")
    return sidecar


def _check_previous(previous: dict, labels: list[str], spec: PreprocessSpec) -> None:
    if previous.get("labels") != labels:
        raise EdgeliteError(f"the previous model's classes ({', '.join(previous.get('labels') or [])}) "
                            f"differ from the data's ({', '.join(labels)})")
    size = tuple(PreprocessSpec.from_dict(previous["preprocess"]).size)
    if size != spec.size:
        raise EdgeliteError(f"the previous model takes {size[1]}x{size[0]} images, not {spec.size[1]}x{spec.size[0]}")


def _load_previous(model, path: Path) -> None:
    import keras

    try:
        model.set_weights(keras.saving.load_model(path, compile=False).get_weights())
    except (ValueError, OSError) as exc:
        raise EdgeliteError(f"{path}: not the same model as this recipe builds ({exc})") from None


def train_cnn(data_dir, out_dir, size: int = 150, epochs: int = 10, **kwargs) -> Trained:
    """The small custom CNN recipe (what the demo trains)."""
    return train(data_dir, out_dir, recipe="cnn", size=size, epochs=epochs, **kwargs)
