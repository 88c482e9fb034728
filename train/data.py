"""A class-folder dataset in memory, split and preprocessed by the runtime's own functions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgelite.errors import EdgeliteError
from edgelite.files import class_folders, split
from edgelite.preprocess import PreprocessSpec, to_float


@dataclass
class Dataset:
    labels: list[str]
    train: list  # (path, class index) that loaded
    val: list
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    skipped: list[str]  # one line per unreadable file


def class_names(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def load_dataset(data_dir: str | Path, spec: PreprocessSpec, val_split: float = 0.2, seed: int = 0,
                 val_dir: str | Path | None = None, verbose: bool = True) -> Dataset:
    """Class sub-folders -> arrays; a seeded stratified split unless `val_dir` is given.
    Unreadable files are skipped and listed."""
    data_dir = Path(data_dir)
    items = class_folders(data_dir)
    labels = class_names(data_dir)
    if len(labels) < 2 or not items:
        raise EdgeliteError(f"{data_dir}: need at least 2 class sub-folders with images "
                            f"(found {len(labels)} classes, {len(items)} images)")
    if val_dir:
        if class_names(Path(val_dir)) != labels:
            raise EdgeliteError(f"{val_dir}: its class folders differ from {data_dir}'s")
        train, val = items, class_folders(val_dir)
    else:
        if not 0 < val_split < 1:
            raise EdgeliteError(f"--val-split must be between 0 and 1, got {val_split}")
        train, val = split(items, val_split, seed)
    skipped: list[str] = []
    x_train, y_train, train = _arrays(train, spec, skipped, "training images", verbose)
    x_val, y_val, val = _arrays(val, spec, skipped, "validation images", verbose)
    return Dataset(labels, train, val, x_train, y_train, x_val, y_val, skipped)


def _arrays(items, spec, skipped, desc, verbose):
    arrays, targets, kept = [], [], []
    for path, target in tqdm(items, desc=desc, disable=not verbose):
        try:
            arrays.append(to_float(path, spec))
        except EdgeliteError as exc:
            skipped.append(str(exc))
            continue
        targets.append(target)
        kept.append((path, target))
    if not arrays:
        raise EdgeliteError(f"no readable {desc}")
    return np.stack(arrays), np.array(targets, dtype=np.int64), kept
