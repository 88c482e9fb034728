"""Finding images, and writing outputs atomically without overwriting by accident."""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Iterable

from .errors import EdgeliteError

MODEL_SUFFIXES = (".tflite", ".onnx")
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


def find_artifacts(paths: Iterable[str | Path]) -> list[Path]:
    """Model files, and the .tflite/.onnx files inside folders (e.g. a convert output)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in MODEL_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise EdgeliteError(f"no such model or folder: {path}")
    if not found:
        raise EdgeliteError("no .tflite or .onnx artifacts found")
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


def prepare_out_dir(path: str | Path, force: bool) -> Path:
    """Create an output folder; an existing non-empty one needs force (then it is reused)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeliteError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise EdgeliteError(f"{path} already exists and is not empty (use --force to overwrite)")
    import tempfile  # here, not at import: predict's cold start writes nothing

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

    return write_staged(Path(path), stage, force)


def move_atomic(src: str | Path, dst: str | Path, force: bool = True) -> Path:
    """Move a finished file into place: copied beside the target, then renamed over it."""
    import shutil

    return write_staged(Path(dst), lambda tmp: shutil.move(str(src), tmp), force)


def write_staged(path: Path, stage, force: bool) -> Path:
    """Have `stage(tmp)` write a temporary file beside `path`, then rename it into place."""
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
