"""Labeled image folders on the workstation: class folders read, and the demo's small dataset made on the spot
with no download. Seeded splits and samples: edgelite.convert.samples."""
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
