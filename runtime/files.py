"""Finding images, and writing outputs atomically without overwriting by accident."""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

from .errors import EdgeliteError

log = logging.getLogger(__name__)

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
    """Create an output folder; an existing non-empty one needs force (then it is reused). Staging folders
    that killed runs left in it are removed first."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeliteError(f"{path} exists and is not a folder")
    if path.is_dir():
        clear_stale_staging(path)
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


STAGING = (".convert-",)  # the prefixes of staging folders that runs make in their output folders


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A hidden temporary folder in `parent` (prefix one of STAGING), locked while this process lives and
    removed when the block ends, normally, by an exception or by Ctrl-C (the CLI turns SIGTERM into the same).
    A process killed outright (SIGKILL, power loss) leaves it behind unlocked: `clear_stale_staging` removes
    it on the next run into the folder."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    lock = _locked(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def clear_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging folders in `parent` that no live process holds (left by a killed run); returns them."""
    import shutil

    removed = []
    for folder in parent.iterdir():
        if folder.name.startswith(STAGING) and folder.is_dir() and not folder.is_symlink():
            lock = _locked(folder)
            if lock is None:
                continue  # a live run's (or one that cannot be locked: left alone)
            shutil.rmtree(folder, ignore_errors=True)
            os.close(lock)
            removed.append(folder)
    if removed:
        log.info(f"removed {len(removed)} staging folder(s) left by an earlier run that was killed: "
                 f"{', '.join(p.name for p in removed)}")
    return removed


def _locked(folder: Path) -> int | None:
    """An open descriptor of `folder` holding an exclusive lock on it (released when the descriptor is closed or
    the process ends, however it ends), or None when another process holds it (or it cannot be opened)."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


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


def read_json(path: Path) -> dict:
    """A JSON object from a file; one that cannot be read, is not JSON or not an object is one clear error."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgeliteError(f"cannot read {path}: {exc}") from None
    if not isinstance(found, dict):
        raise EdgeliteError(f"{path} is not a JSON object")
    return found


def write_json(path: str | Path, obj, force: bool = True) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", force)


def sha256(path: str | Path) -> str:
    """A file's sha256 (a folder's: of its files' bytes in sorted order), read in chunks."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
