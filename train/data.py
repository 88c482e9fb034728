"""A class-folder dataset as file lists, streamed in batches through the runtime's own preprocessing.

Nothing here holds decoded images beyond the batches in flight: memory does not grow with the
number of images (beyond the file lists). `PixelCache` keeps decoded uint8 pixels on disk for
repeated runs, only when asked.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgelite.convert.samples import split
from edgelite.errors import EdgeliteError
from edgelite.files import write_json, write_staged
from edgelite.preprocess import PreprocessSpec, from_pixels, pixels
from edgelite.train.datasets import class_folders


@dataclass
class Dataset:
    labels: list[str]
    train: list  # (path, class index)
    val: list
    skipped: "Skipped" = field(default_factory=lambda: Skipped())  # unreadable files, as they are met


class Skipped:
    """One line per unreadable file, in the order they were met; shared by worker threads."""

    def __init__(self):
        self._lines: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, path, message: str) -> None:
        with self._lock:
            self._lines.setdefault(str(path), message)

    def __contains__(self, path) -> bool:
        return str(path) in self._lines

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines.values())


def class_names(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def load_dataset(data_dir: str | Path, val_split: float = 0.2, seed: int = 0,
                 val_dir: str | Path | None = None) -> Dataset:
    """Class sub-folders -> file lists; a seeded stratified split unless `val_dir` is given.
    No image is decoded here: unreadable files are found, skipped and listed as batches are made."""
    data_dir = Path(data_dir)
    items = class_folders(data_dir)
    labels = class_names(data_dir)
    if len(labels) < 2 or not items:
        raise EdgeliteError(f"{data_dir}: need at least 2 class sub-folders with images "
                            f"(found {len(labels)} classes, {len(items)} images)")
    if val_dir:
        if class_names(Path(val_dir)) != labels:
            raise EdgeliteError(f"{val_dir}: its class folders differ from {data_dir}'s")
        train, val = items, class_folders(val_dir)
    else:
        if not 0 < val_split < 1:
            raise EdgeliteError(f"--val-split must be between 0 and 1, got {val_split}")
        train, val = split(items, val_split, seed)
    if not val:
        raise EdgeliteError(f"{val_dir or data_dir}: no validation images")
    return Dataset(labels, train, val)


def default_workers() -> int:
    """Decoding threads: the cores, 2 to 4 (Pillow and NumPy release the GIL while they work)."""
    return max(2, min(4, os.cpu_count() or 2))


class Batches:
    """(x float32 [n, ...], y int64 [n]) batches of a file list, decoded when asked for by
    `edgelite.preprocess.pixels` and normalised by `from_pixels`: the runtime's own preprocessing.

    Thread-safe for distinct batches. With `shuffle`, the order of epoch e is a seeded permutation
    (seed, e); `on_epoch_end` moves to the next one. Unreadable files are left out of their batch
    (a batch is never empty: it takes the next readable file) and reported through `skipped`.
    """

    def __init__(self, items: list, spec: PreprocessSpec, batch_size: int = 32, shuffle: bool = False,
                 seed: int = 0, cache: "PixelCache | None" = None, skipped: Skipped | None = None):
        if batch_size < 1:
            raise EdgeliteError(f"--batch-size must be at least 1, got {batch_size}")
        self.paths = [path for path, _ in items]
        self.targets = np.fromiter((target for _, target in items), dtype=np.int64, count=len(items))
        self.spec, self.batch_size, self.shuffle, self.seed = spec, batch_size, shuffle, seed
        self.cache = cache
        self.skipped = skipped if skipped is not None else Skipped()
        self.bad: set[int] = set()  # indices of unreadable files, not tried again
        self.epoch = 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.paths))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.paths))

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._make_order()

    def pixels(self, index: int) -> np.ndarray | None:
        """uint8 [H, W, C] of file `index` (from the cache when it is there), None if unreadable."""
        if index in self.bad:
            return None
        if self.cache is not None:
            cached = self.cache.get(index)
            if cached is not None:
                return cached
        try:
            array = pixels(self.paths[index], self.spec)
        except EdgeliteError as exc:
            self.bad.add(index)
            self.skipped.add(self.paths[index], str(exc))
            return None
        if self.cache is not None:
            self.cache.put(index, array)
        return array

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        order = self._order
        indices = list(order[i * self.batch_size:(i + 1) * self.batch_size])
        arrays, targets = [], []
        for index in indices:
            array = self.pixels(index)
            if array is not None:
                arrays.append(array)
                targets.append(self.targets[index])
        position = (i + 1) * self.batch_size
        while not arrays:  # every file of the batch was unreadable: take the next readable one
            if position - i * self.batch_size >= len(order):
                raise EdgeliteError("no readable images" + (f" (e.g. {self.skipped.lines()[0]})"
                                                            if self.skipped.lines() else ""))
            index = order[position % len(order)]
            position += 1
            array = self.pixels(index)
            if array is not None:
                arrays.append(array)
                targets.append(self.targets[index])
        first = from_pixels(arrays[0], self.spec)
        x = np.empty((len(arrays), *first.shape[1:]), np.float32)
        x[0] = first[0]
        for row, array in enumerate(arrays[1:], start=1):
            x[row] = from_pixels(array, self.spec)[0]
        return x, np.asarray(targets, dtype=np.int64)

    def kept(self) -> list:
        """(path, class index) of the files that decoded (or were not tried yet)."""
        return [(path, int(target)) for index, (path, target) in enumerate(zip(self.paths, self.targets))
                if index not in self.bad]


def prefetch(batches: Batches, workers: int | None = None):
    """Yield batches[0], batches[1], ... in order while worker threads decode the next ones
    (at most workers + 1 batches in flight)."""
    workers = workers or default_workers()
    with ThreadPoolExecutor(workers, thread_name_prefix="edgelite-decode") as pool:
        pending: deque = deque()
        upcoming = iter(range(len(batches)))
        try:
            for i in upcoming:
                pending.append(pool.submit(batches.__getitem__, i))
                if len(pending) > workers:
                    break
            while pending:
                batch = pending.popleft().result()
                nxt = next(upcoming, None)
                if nxt is not None:
                    pending.append(pool.submit(batches.__getitem__, nxt))
                yield batch
        finally:
            for future in pending:
                future.cancel()


class PixelCache:
    """Decoded uint8 pixels of one file list on disk: `<key>.pixels.npy` [N, H, W, C] (a plain .npy,
    np.load(..., mmap_mode="r") reads it) and `<key>.done.npy` [N] (1 where a row is filled), keyed by a
    hash of the spec and the files (path, size, modification time). Filled as batches are decoded, so
    a first run fills it while it trains and an interrupted run leaves what it decoded; reused when
    present. Rows are read and written with pread/pwrite, not mapped: cached pages stay the
    kernel's page cache and do not count in the process's memory."""

    def __init__(self, folder: str | Path, paths: list, spec: PreprocessSpec, name: str = "pixels"):
        self.folder = Path(folder)
        self.shape = (*spec.size, spec.channels)
        self.row_bytes = int(np.prod(self.shape))
        self.count = len(paths)
        self.key = cache_key(paths, spec)
        self.path = self.folder / f"{name}-{self.key[:16]}.pixels.npy"
        self.done_path = self.folder / f"{name}-{self.key[:16]}.done.npy"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            opened = self._open()
            if opened is None:
                self._create(paths, spec)
                opened = self._open()
        except OSError as exc:
            raise EdgeliteError(f"cache {self.folder}: {exc.strerror or exc}") from None
        if opened is None:
            raise EdgeliteError(f"cache {self.folder}: cannot open {self.path.name}")
        self._fd, self._offset, self._done_fd, self._done_offset = opened
        self.reused = self.filled() > 0

    def _open(self):
        """(fd, data offset, done fd, done offset) of a complete cache for this key, else None."""
        try:
            offset = _npy_offset(self.path, (self.count, *self.shape))
            done_offset = _npy_offset(self.done_path, (self.count,))
        except (OSError, ValueError):
            return None
        return (os.open(self.path, os.O_RDWR), offset, os.open(self.done_path, os.O_RDWR), done_offset)

    def _create(self, paths: list, spec: PreprocessSpec) -> None:
        self.done_path.unlink(missing_ok=True)  # the done marks go last: they vouch for the pixels
        for path, shape in ((self.path, (self.count, *self.shape)), (self.done_path, (self.count,))):
            write_staged(path, lambda tmp: _zeros(tmp, shape), force=True)
        write_json(self.folder / f"{self.path.name[:-len('.pixels.npy')]}.json",
                   {"key": self.key, "images": self.count, "shape": list(self.shape), "preprocess": spec.to_dict(),
                    "first": str(paths[0]) if paths else None})

    def get(self, index: int) -> np.ndarray | None:
        if os.pread(self._done_fd, 1, self._done_offset + index) != b"\x01":
            return None
        data = os.pread(self._fd, self.row_bytes, self._offset + index * self.row_bytes)
        if len(data) != self.row_bytes:
            return None
        return np.frombuffer(data, np.uint8).reshape(self.shape)

    def put(self, index: int, array: np.ndarray) -> None:
        if array.shape != self.shape:
            return
        os.pwrite(self._fd, np.ascontiguousarray(array, np.uint8).tobytes(), self._offset + index * self.row_bytes)
        os.pwrite(self._done_fd, b"\x01", self._done_offset + index)

    def filled(self) -> int:
        done = os.pread(self._done_fd, self.count, self._done_offset)
        return int(np.count_nonzero(np.frombuffer(done, np.uint8)))

    def close(self) -> None:
        for fd in (self._fd, self._done_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self):
        if hasattr(self, "_done_fd"):
            self.close()


def cache_key(paths: list, spec: PreprocessSpec) -> str:
    """sha256 of the preprocessing spec and of every file's absolute path, size and modification time."""
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for path in paths:
        try:
            stat = os.stat(path)
            signature = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            signature = "missing"
        digest.update(f"\0{os.path.abspath(path)}\0{signature}".encode())
    return digest.hexdigest()


def _npy_offset(path: Path, shape: tuple) -> int:
    """Where the data of a uint8 .npy file of this shape starts; ValueError if it is another array."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        found_shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if tuple(found_shape) != tuple(shape) or fortran or dtype != np.uint8:
        raise ValueError(f"{path}: {found_shape} {dtype}, not {shape} uint8")
    if path.stat().st_size < offset + int(np.prod(shape)):
        raise ValueError(f"{path}: truncated")
    return offset


def describe_cache(caches: list[PixelCache]) -> str:
    parts = [f"{c.path.name} {c.filled()}/{c.count} decoded" for c in caches]
    return "cache: " + ", ".join(parts)


def _zeros(path: Path, shape: tuple) -> None:
    """A .npy file of uint8 zeros (sparse: nothing written but the header)."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    del array
