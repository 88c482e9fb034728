"""Small labeled datasets made on the spot, with no download."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

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
