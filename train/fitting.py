"""The Keras side of a training run: streamed batches for `fit`, the best epoch kept (in memory and
on disk) as training goes, a line per epoch with the time left, and stages run back to back.

Imported only after TensorFlow (`edgelite.convert.loading.import_tensorflow`).
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Callable

import keras
import numpy as np

from .data import Batches, default_workers

log = logging.getLogger(__name__)


class KerasBatches(keras.utils.PyDataset):
    """`Batches` for `fit`: Keras' enqueuer calls it from `workers` threads, so images decode on other
    cores while the model trains, at most `max_queue_size` batches ahead."""

    def __init__(self, batches: Batches, workers: int | None = None):
        workers = workers or default_workers()
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=workers + 2)
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        return self.batches[i]

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


def snapshot(model) -> dict:
    return {v.path: np.array(v.numpy(), copy=True) for v in model.weights}


def restore(model, weights: dict) -> None:
    for v in model.weights:
        v.assign(weights[v.path])


class Run(keras.callbacks.Callback):
    """One callback for a whole run of one or more stages: the history of every epoch, the best
    weights by validation accuracy (saved through `save` each time they improve), and a line per
    epoch with its time and an estimate of the time left for the run.

    After a KeyboardInterrupt, `history` holds the finished epochs and `restore_best()` puts the
    best weights back."""

    def __init__(self, trainer, save: Callable[[], None] | None, planned: list[int], images: int,
                 verbose: int = 1, baseline: float | None = None):
        super().__init__()
        self.trainer, self.save, self.planned, self.images, self.verbose = trainer, save, list(planned), images, verbose
        self.history: dict[str, list[float]] = {}
        self.epoch_seconds: list[float] = []
        self.stage_of_epoch: list[int] = []
        self.best = -math.inf if baseline is None else baseline
        self.best_weights = snapshot(trainer) if baseline is not None else None
        self.best_epoch: int | None = None  # 1-based, over the run; None: the starting weights
        self.stage, self.stage_name = 0, ""
        self.started = time.perf_counter()
        self._epoch_started = 0.0

    # -- stages
    def begin_stage(self, stage: int, name: str) -> None:
        for earlier in range(stage):  # a stage that stopped early: its real length, for the estimate
            self.planned[earlier] = self.stage_of_epoch.count(earlier)
        self.stage, self.stage_name = stage, name

    def restore_best(self) -> bool:
        """Put the best weights so far back into the trainer; False if no epoch finished."""
        if self.best_weights is None:
            return False
        restore(self.trainer, self.best_weights)
        return True

    # -- Keras hooks
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._epoch_started
        logs = logs or {}
        for key, value in logs.items():
            if key != "learning_rate":
                self.history.setdefault(key, []).append(float(value))
        self.epoch_seconds.append(seconds)
        self.stage_of_epoch.append(self.stage)
        accuracy = float(logs.get("val_accuracy", -math.inf))
        improved = accuracy > self.best
        if improved:
            self.best, self.best_epoch = accuracy, len(self.epoch_seconds)
            self.best_weights = snapshot(self.trainer)
            if self.save is not None:
                self.save()
        if self.verbose:
            log.info(self.line(seconds, accuracy, improved))

    def line(self, seconds: float, accuracy: float, improved: bool) -> str:
        done = len(self.epoch_seconds)
        total = sum(self.planned)
        in_stage = self.stage_of_epoch.count(self.stage)
        this_stage = [s for s, g in zip(self.epoch_seconds, self.stage_of_epoch) if g == self.stage]
        per_epoch = sum(this_stage) / len(this_stage)
        left_epochs = (self.planned[self.stage] - in_stage) + sum(self.planned[self.stage + 1:])
        elapsed = time.perf_counter() - self.started
        best = f"best {self.best:.1%}" + (", saved" if improved and self.save is not None else "")
        return (f"epoch {done}/{total} ({self.stage_name} {in_stage}/{self.planned[self.stage]}): "
                f"{duration(seconds)}, {self.images / seconds:.1f} images/s, val_accuracy {accuracy:.1%} ({best}); "
                f"run {duration(elapsed)}, "
                + (f"up to ~{duration(left_epochs * per_epoch)} left ({left_epochs} more "
                   f"epoch{'s' if left_epochs > 1 else ''} at most)" if left_epochs else "training done"))


class CtrlC(keras.callbacks.Callback):
    """Within `with`, the first Ctrl-C is a KeyboardInterrupt raised at the next batch or epoch boundary
    of fit; a second one interrupts at once. Raised wherever the signal lands, inside Keras' and
    TensorFlow's training loop, it once aborted the process ("free(): invalid next size") instead of
    keeping the best epoch. Only the main thread receives signals: elsewhere it changes nothing."""

    def __init__(self):
        super().__init__()
        self.requested, self._previous = False, None

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.requested and kind is None:  # fit ended before a boundary saw it: not swallowed
            raise KeyboardInterrupt
        return False

    def _request(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def _stop_if_requested(self, *args, **kwargs) -> None:
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _stop_if_requested


def fit_stage(trainer, run: Run, train: KerasBatches, val: KerasBatches, optimizer, epochs: int, patience: int,
              verbose: int) -> None:
    """Fit one stage; early stopping on validation accuracy; the run's best weights at the end."""
    trainer.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=patience)
    with CtrlC() as ctrl_c:  # last: the run has recorded an epoch before Ctrl-C stops at its end
        # Keras' own progress bar first, so that the run's line comes after the epoch's figures
        callbacks = [keras.callbacks.ProgbarLogger(), run, stop, ctrl_c] if verbose else [run, stop, ctrl_c]
        trainer.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    run.restore_best()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
