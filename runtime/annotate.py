"""Draw an image's top-k predictions on it (Pillow only: no matplotlib on the device)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .files import write_atomic
from .preprocess import load_image

WIDTH = 480
LINE = 22


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


def annotate(image: Image.Image, predictions: Sequence) -> Image.Image:
    """The image scaled to a fixed width with a panel below: one bar and label per prediction."""
    picture = load_image(image)
    height = max(1, round(picture.height * WIDTH / picture.width))
    picture = picture.resize((WIDTH, min(height, 2 * WIDTH)), Image.BILINEAR)
    panel = LINE * len(predictions) + 10
    canvas = Image.new("RGB", (WIDTH, picture.height + panel), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(15)
    for i, p in enumerate(predictions):
        y = picture.height + 5 + i * LINE
        bar = int((WIDTH - 10) * max(0.0, min(1.0, p.score)))
        draw.rectangle([5, y + 2, 5 + bar, y + LINE - 3], fill=(66, 133, 244) if i == 0 else (190, 205, 230))
        draw.text((10, y + 2), f"{p.score:6.1%}  {p.label}", fill="black", font=font)
    return canvas


def save_annotated(source, predictions: Sequence, out_dir: Path, taken: set, force: bool) -> Path:
    """Write `<stem>.png` into out_dir (`<stem>-N.png` when a name repeats in this run)."""
    stem = Path(str(source)).stem if not isinstance(source, (bytes, Image.Image)) else "image"
    name, n = f"{stem}.png", 1
    while name in taken:
        name, n = f"{stem}-{n}.png", n + 1
    taken.add(name)
    buffer = io.BytesIO()
    annotate(source, predictions).save(buffer, "PNG")
    return write_atomic(out_dir / name, buffer.getvalue(), force)
