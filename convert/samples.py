"""Seeded splits and samples of image lists: calibration against check images (convert), training against
validation images (train), and the benchmarks' halves."""
from __future__ import annotations

from pathlib import Path


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
