"""Labeled image folders: class sub-folders, or ImageNet-style `<wnid>_*.JPEG` with wnids.txt."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelite.classifier import background_offset
from edgelite.errors import EdgeliteError
from edgelite.files import find_images


def labeled_images(folder: str | Path, labels: list[str] | None, classes: int) -> list[tuple[Path, int | None]]:
    """[(image, true class index or None)] for a folder, matched to a model's classes.

    - `wnids.txt` in the folder: a file `<wnid>_*.ext` is class `line of its wnid`
      (shifted by one when the model has a background class, i.e. 1001 outputs);
    - class sub-folders named like the model's labels: by name;
    - as many sub-folders as classes: sorted folder i is class i;
    - otherwise the images are unlabeled (None): agreement can still be measured.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeliteError(f"not a folder: {folder}")
    images = find_images([folder])
    if not images:
        raise EdgeliteError(f"{folder}: no images found")
    wnids_file = folder / "wnids.txt"
    if wnids_file.is_file():
        wnids = {w.strip(): i for i, w in enumerate(wnids_file.read_text().split()) if w.strip()}
        offset = background_offset(classes, len(wnids))
        return [(p, _shift(wnids.get(p.name.split("_")[0]), offset)) for p in images]
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    index = None
    if labels and subfolders and all(name in labels for name in subfolders):
        index = {name: labels.index(name) for name in subfolders}
    elif len(subfolders) == classes:
        index = {name: i for i, name in enumerate(subfolders)}
    if index is None:
        return [(p, None) for p in images]
    return [(p, index.get(p.relative_to(folder).parts[0])) for p in images]


def _shift(value: int | None, offset: int) -> int | None:
    return None if value is None else value + offset


def accuracy(scores: np.ndarray, truth: list[int | None]) -> dict:
    """Top-1 and top-5 accuracy over the images that have a true class (None if none do)."""
    known = [i for i, t in enumerate(truth) if t is not None]
    if not known:
        return {"top1": None, "top5": None, "labeled": 0}
    s = scores[known]
    t = np.array([truth[i] for i in known])
    top5 = np.argsort(-s, axis=1)[:, :5]
    return {
        "top1": float(np.mean(top5[:, 0] == t)),
        "top5": float(np.mean([ti in row for ti, row in zip(t, top5)])),
        "labeled": len(known),
    }
