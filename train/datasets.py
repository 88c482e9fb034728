"""Labeled image folders on the workstation: class folders read, seeded splits and samples, and the
demo's small dataset made on the spot with no download."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from edgelite.errors import EdgeliteError
from edgelite.files import find_images

DIGIT_NAMES = [str(d) for d in range(10)]  # folder names sort in numeric order


def write_digits(folder: str | Path, size: int = 32) -> Path:
    """scikit-learn's 1,797 handwritten digits (8x8, shipped with the package) as
    `folder/<name>/<n>.png` RGB images of size x size, one folder per class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = Path(folder)
    for name in DIGIT_NAMES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for n, (image, target) in enumerate(tqdm(list(zip(digits.images, digits.target)), desc="digits dataset")):
        pixels = (255 - image * 255 / 16).astype(np.uint8)  # dark ink on white paper
        Image.fromarray(pixels).resize((size, size), Image.BILINEAR).convert("RGB").save(
            folder / DIGIT_NAMES[target] / f"{n:04d}.png")
    return folder


def class_folders(root: str | Path) -> list[tuple[Path, int]]:
    """A folder of class sub-folders -> [(image, class index)], classes sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise EdgeliteError(f"not a folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [(path, index) for index, name in enumerate(classes) for path in find_images([root / name])]
    return items




def split(items: list, fraction: float, seed: int = 0) -> tuple[list, list]:
    """Seeded split into (first, held-back); stratified when items are (path, label) pairs
    with labels. `fraction` is the held-back share, at least one item per class with 2+.
    Both lists come back in a seeded shuffled order, so any prefix is a fair sample."""
    import random

    rng = random.Random(seed)
    groups: dict = {}
    for item in items:
        label = item[1] if isinstance(item, tuple) else None
        groups.setdefault(label, []).append(item)
    if len(groups) > 1 and min(len(g) for g in groups.values()) < 2:
        groups = {None: list(items)}  # one image per class: stratifying means nothing
    first, held = [], []
    for label in sorted(groups, key=str):
        group = sorted(groups[label], key=str)
        rng.shuffle(group)
        n_held = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        held.extend(group[:n_held])
        first.extend(group[n_held:])
    rng.shuffle(first)
    rng.shuffle(held)
    return first, held


def split_images(images: list[Path], fraction: float = 0.5, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Image paths -> (first, held-back), seeded and stratified by parent folder."""
    first, held = split([(p, p.parent.name) for p in images], fraction, seed)
    return [p for p, _ in first], [p for p, _ in held]


def choose(items: list, n: int, seed: int = 0) -> list:
    """A seeded sample of n items (all of them if fewer), kept in their original order."""
    import random

    if len(items) <= n:
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), n))
    return [item for i, item in enumerate(items) if i in keep]
