"""Finding images, and writing outputs atomically without overwriting by accident."""
from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import EdgeliteError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files, folders (recursive, sorted) and glob patterns -> image paths.

    A named file is kept whatever its suffix (it is reported later if it is not an
    image); inside folders only image suffixes are taken.
    """
    found: list[Path] = []
    for item in paths:
        item = str(item)
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        if not matches:
            raise EdgeliteError(f"no file matches {item}")
        for match in map(Path, matches):
            if match.is_dir():
                found.extend(_images_under(match))
            elif match.exists():
                found.append(match)
            else:
                raise EdgeliteError(f"no such file or folder: {match}")
    return found


def _images_under(folder: Path) -> list[Path]:
    """Image files under a folder, sorted, following symlinked sub-folders (each real folder once)."""
    found, seen = [], set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        found.extend(Path(top) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES
                     and os.path.isfile(os.path.join(top, f)))
    return sorted(found)


def class_folders(root: str | Path) -> list[tuple[Path, int]]:
    """A folder of class sub-folders -> [(image, class index)], classes sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise EdgeliteError(f"not a folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [(path, index) for index, name in enumerate(classes) for path in find_images([root / name])]
    return items


def prepare_out_dir(path: str | Path, force: bool) -> Path:
    """Create an output folder; an existing non-empty one needs force (then it is reused)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeliteError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise EdgeliteError(f"{path} already exists and is not empty (use --force to overwrite)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-")
        probe.close()
    except OSError as exc:
        raise EdgeliteError(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path


def write_atomic(path: str | Path, data: bytes | str, force: bool = True) -> Path:
    """Write via a temporary file in the same folder and rename it into place."""
    payload = data.encode() if isinstance(data, str) else data

    def stage(tmp: Path) -> None:
        tmp.write_bytes(payload)

    return _into_place(Path(path), stage, force)


def move_atomic(src: str | Path, dst: str | Path, force: bool = True) -> Path:
    """Move a finished file into place: copied beside the target, then renamed over it."""
    return _into_place(Path(dst), lambda tmp: shutil.move(str(src), tmp), force)


def write_figure(fig, path: str | Path, dpi: int = 120, force: bool = True) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    return _into_place(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=dpi), force)


def _into_place(path: Path, stage, force: bool) -> Path:
    if path.exists() and not force:
        raise EdgeliteError(f"{path} already exists (use --force to overwrite)")
    tmp = path.with_name(f".{path.name}.part")
    try:
        stage(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgeliteError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_json(path: str | Path, obj, force: bool = True) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", force)


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
