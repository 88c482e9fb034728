"""A device environment made of exactly what `pip install edgelite[EXTRAS]` installs: the edgelite wheel
unpacked, and every distribution its requirements name (recursively, markers and extras honoured) linked
file by file from this Python's site-packages. Nothing else: no TensorFlow, no test tools."""
from __future__ import annotations

import zipfile
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(requirements: list[str], extras: tuple[str, ...]) -> dict[str, Distribution]:
    """The installed distributions that these requirement lines pull in, for the given extras."""
    found: dict[str, Distribution] = {}
    todo = [(Requirement(line), set(extras)) for line in requirements]
    while todo:
        req, wanted = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            found[name] = distribution(req.name)
        except PackageNotFoundError:
            raise RuntimeError(f"{req.name} is required but not installed here") from None
        todo += [(Requirement(line), set(req.extras)) for line in found[name].requires or []]
    return found


def device_root(folder: Path, wheel: Path, extras: tuple[str, ...]) -> Path:
    """`folder` made into a site-packages holding edgelite from `wheel` plus its dependencies for `extras`."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    ours = Distribution.at(next(folder.glob("edgelite-*.dist-info")))
    own = [line for line in ours.requires or []]
    for dist in closure(own, extras).values():
        for file in dist.files or []:
            if file.parts[0] == ".." or file.suffix == ".pyc":
                continue
            source, target = Path(dist.locate_file(file)), folder / file
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    return folder
