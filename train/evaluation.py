"""After training: accuracy, per-class precision/recall, a confusion matrix and learning curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelite.figures import pyplot, write_figure

from .data import Batches, prefetch


def predict(model, batches: Batches, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, truth) over a stream of batches, decoded on worker threads while the model
    runs: only the scores are kept, never the images. Unreadable files are left out of both."""
    scores, truth = [], []
    for x, y in prefetch(batches, workers):
        scores.append(np.asarray(model.predict_on_batch(x)))
        truth.append(y)
    return np.concatenate(scores), np.concatenate(truth)


def evaluate(probabilities: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    """Figures on the validation images, via scikit-learn's metrics."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1)
    classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=classes, zero_division=0)
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "images": int(len(truth)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(labels, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(truth, predicted, labels=classes).tolist(),
    }


def per_class_table(figures: dict) -> str:
    lines = [f"{'class':20s} precision  recall  images"]
    for name, f in figures["per_class"].items():
        lines.append(f"{name:20s} {f['precision']:9.1%} {f['recall']:7.1%} {f['support']:7d}")
    return "\n".join(lines)


def plot_history(history: dict, path: Path, fine_tune_from: int | None = None) -> Path:
    """Accuracy and loss per epoch, training and validation; a line where fine-tuning began."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = range(1, len(history["loss"]) + 1)
    for ax, key, title in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(epochs, history[key], "o-", label="training")
        ax.plot(epochs, history[f"val_{key}"], "o-", label="validation")
        if fine_tune_from:
            ax.axvline(fine_tune_from + 0.5, color="gray", linestyle="--", label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = write_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(figures: dict, labels: list[str], path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    size = max(5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.array(figures["confusion_matrix"]), display_labels=labels).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45)
    ax.set_title(f"validation accuracy {figures['accuracy']:.1%} ({figures['images']} images)")
    fig.tight_layout()
    path = write_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
