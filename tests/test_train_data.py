"""Streamed training data: memory flat in the number of images, the pixel cache, unreadable files,
Ctrl-C during training, and starting again from a previous run."""
import json
import signal
import subprocess
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from edgelite import EdgeliteError
from edgelite.train.datasets import class_folders
from edgelite.preprocess import PreprocessSpec, to_float
import edgelite.train.data as data_module
from edgelite.train.data import Batches, PixelCache, prefetch

from conftest import python_command

SPEC = PreprocessSpec(size=(32, 32), preset="unit", resize="stretch")


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """40 distinct small photos in 2 classes, and the same folder 4 times over (symlinks, new names)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "x1" / c).mkdir(parents=True)
        for n in range(20):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "x1" / c / f"{n:02d}.png")
    for path, _ in class_folders(root / "x1"):
        (root / "x4" / path.parent.name).mkdir(parents=True, exist_ok=True)
        for k in range(4):
            (root / "x4" / path.parent.name / f"{path.stem}_{k}.png").symlink_to(path)
    return root


def _epoch_peak(items, **kwargs) -> int:
    """Bytes allocated at the peak of one threaded epoch, above what the file list holds."""
    tracemalloc.start()
    try:
        batches = Batches(items, SPEC, batch_size=8, shuffle=True, **kwargs)
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        seen = sum(len(y) for _, y in prefetch(batches, workers=2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == len(items)
    return peak - before


def test_memory_of_an_epoch_does_not_grow_with_the_number_of_images(tiny_images):
    small, big = class_folders(tiny_images / "x1"), class_folders(tiny_images / "x4")
    assert len(big) == 4 * len(small) == 160
    _epoch_peak(small)  # warm-up: thread pools, caches
    grown = _epoch_peak(big) - _epoch_peak(small)
    holding = (len(big) - len(small)) * 32 * 32 * 3 * 4  # the extra images as float32: 1.4 MiB
    # what varies is how many 96 KiB batches are in flight at the peak (measured: at most 2)
    assert grown < holding / 3, f"an epoch over 4x the images peaked {grown} bytes higher"


def test_batches_hold_the_runtimes_preprocessing_and_a_seeded_order(tiny_images):
    items = class_folders(tiny_images / "x1")
    batches = Batches(items, SPEC, batch_size=16, shuffle=True, seed=3)
    x, y = batches[0]
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int64
    first = batches._order[0]
    np.testing.assert_array_equal(x[0], to_float(items[first][0], SPEC))
    assert y[0] == items[first][1]
    again = Batches(items, SPEC, batch_size=16, shuffle=True, seed=3)
    np.testing.assert_array_equal(again[0][0], x)  # same seed, same batches
    epoch0 = list(batches._order)
    batches.on_epoch_end()
    assert list(batches._order) != epoch0 and sorted(batches._order) == sorted(epoch0)
    assert len(batches) == 3 and len(batches[2][1]) == 8  # 40 = 16 + 16 + 8
    plain = Batches(items, SPEC, batch_size=16)
    assert [int(t) for _, ys in prefetch(plain) for t in ys] == [t for _, t in items]


def test_unreadable_files_are_left_out_and_reported(tiny_images, tmp_path):
    items = class_folders(tiny_images / "x1")[:6]
    broken = [(tmp_path / f"broken{n}.jpg", 1) for n in range(3)]
    for path, _ in broken:
        path.write_bytes(b"not a jpeg")
    batches = Batches(broken + items, SPEC, batch_size=3)  # the first batch is all unreadable
    x, y = batches[0]
    assert len(y) == 1  # it takes the next readable file rather than come back empty
    sizes = [len(ys) for _, ys in prefetch(batches)]
    assert sizes == [1, 3, 3]
    assert len(batches.skipped.lines()) == 3 and "broken0.jpg" in batches.skipped.lines()[0]
    assert [p for p, _ in batches.kept()] == [p for p, _ in items]
    with pytest.raises(EdgeliteError, match="no readable images"):
        Batches(broken, SPEC, batch_size=2)[0]


def test_the_cache_is_filled_once_and_read_back(tiny_images, tmp_path, monkeypatch):
    items = class_folders(tiny_images / "x1")
    paths = [p for p, _ in items]
    cache = PixelCache(tmp_path / "cache", paths, SPEC, "train")
    assert not cache.reused and cache.filled() == 0
    first = [b for b in prefetch(Batches(items, SPEC, 8, shuffle=True, cache=cache))]
    assert cache.filled() == len(items)
    stored = np.load(cache.path, mmap_mode="r")  # a plain .npy: the pixels of each file
    np.testing.assert_array_equal(stored[5], data_module.pixels(paths[5], SPEC))
    del stored

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds it")

    monkeypatch.setattr(data_module, "pixels", no_decoding)
    again = PixelCache(tmp_path / "cache", paths, SPEC, "train")
    assert again.reused and again.path == cache.path and again.filled() == len(items)
    second = [b for b in prefetch(Batches(items, SPEC, 8, shuffle=True, cache=again))]
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # another size or other files: another cache file
    assert PixelCache(tmp_path / "cache", paths, PreprocessSpec(size=(16, 16), preset="unit"), "train").path != cache.path
    assert PixelCache(tmp_path / "cache", paths[1:], SPEC, "train").path != cache.path


def test_training_with_a_cache_decodes_once(digits, tmp_path, monkeypatch):
    from edgelite.train.recipes import train

    cache = tmp_path / "cache"
    first = train(digits, tmp_path / "a", recipe="cnn", size=16, epochs=1, augment=False, verbose=0, cache=cache)
    assert len(list(cache.glob("*.pixels.npy"))) == 2  # one per split

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds it")

    monkeypatch.setattr(data_module, "pixels", no_decoding)
    second = train(digits, tmp_path / "b", recipe="cnn", size=16, epochs=1, augment=False, verbose=0, cache=cache)
    assert second.val == first.val and second.evaluation["images"] == first.evaluation["images"]
    assert len(list(cache.glob("*.pixels.npy"))) == 2


def test_a_run_starts_from_a_previous_model(digits, tmp_path):
    from edgelite.train.recipes import train

    first = train(digits, tmp_path / "a", recipe="cnn", size=16, epochs=2, augment=False, verbose=0)
    again = train(digits, tmp_path / "b", recipe="cnn", epochs=1, augment=False, verbose=0,
                  weights=str(first.model_path))  # the size comes from its sidecar
    assert again.spec.size == (16, 16)
    assert again.val_accuracy >= first.val_accuracy  # never worse than where it started
    with pytest.raises(EdgeliteError, match="takes 16x16 images"):
        train(digits, tmp_path / "c", recipe="cnn", size=24, epochs=1, verbose=0, weights=str(first.model_path))
    with pytest.raises(EdgeliteError, match="cnn recipe, not mobilenetv2"):
        train(digits, tmp_path / "d", recipe="mobilenetv2", epochs=1, verbose=0, weights=str(first.model_path))


def test_ctrl_c_keeps_the_best_epoch_and_its_plots(digits, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(python_command("-m", "edgelite.cli", "train", digits, "--recipe", "cnn",
                                           "--size", "16", "--epochs", "500", "--no-augment", "--out", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "model.keras").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # into a later epoch
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted: keeping the best epoch so far" in stderr and "Traceback" not in stderr
    history = json.loads((out / "history.json").read_text())
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert history["interrupted"] and evaluation["interrupted"]
    assert 1 <= history["best_epoch"] <= len(history["loss"]) < 500
    assert evaluation["accuracy"] == pytest.approx(max(history["val_accuracy"]))
    assert (out / "history.png").stat().st_size and (out / "confusion.png").stat().st_size
    assert json.loads((out / "model.keras.json").read_text())["labels"][0] == "0"
