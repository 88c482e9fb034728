from pathlib import Path

import pytest

from edgelite import EdgeliteError
from edgelite.convert.samples import split
from edgelite.files import clear_stale_staging, find_images, prepare_out_dir, staging_dir, write_atomic
from edgelite.train.datasets import class_folders


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_find_images_walks_folders_and_globs(tmp_path):
    a = touch(tmp_path / "a" / "1.jpg")
    b = touch(tmp_path / "a" / "deep" / "2.PNG")
    touch(tmp_path / "a" / "notes.txt")
    c = touch(tmp_path / "c.webp")
    assert find_images([tmp_path / "a"]) == [a, b]
    assert find_images([str(tmp_path / "*.webp")]) == [c]
    assert find_images([tmp_path / "a" / "notes.txt"]) == [tmp_path / "a" / "notes.txt"]  # named: kept, judged later
    with pytest.raises(EdgeliteError, match="no such file"):
        find_images([tmp_path / "missing.jpg"])
    with pytest.raises(EdgeliteError, match="no file matches"):
        find_images([str(tmp_path / "*.gif")])


def test_class_folders_index_sorted_names(tmp_path):
    touch(tmp_path / "dog" / "1.jpg")
    touch(tmp_path / "cat" / "1.jpg")
    touch(tmp_path / "cat" / "2.jpg")
    assert [(p.parent.name, i) for p, i in class_folders(tmp_path)] == [("cat", 0), ("cat", 0), ("dog", 1)]


def test_split_is_seeded_stratified_and_disjoint():
    items = [(f"{c}{i}", c) for c in "abc" for i in range(10)]
    first, held = split(items, 0.2, seed=1)
    assert sorted(first + held) == sorted(items)
    assert not set(first) & set(held)
    assert sorted(label for _, label in held) == ["a", "a", "b", "b", "c", "c"]
    assert split(items, 0.2, seed=1) == (first, held)
    assert split(items, 0.2, seed=2) != (first, held)


def test_out_dir_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "out"
    prepare_out_dir(out, force=False)
    touch(out / "result.json")
    with pytest.raises(EdgeliteError, match="--force"):
        prepare_out_dir(out, force=False)
    assert prepare_out_dir(out, force=True) == out
    assert (out / "result.json").exists()


def test_staging_left_by_a_killed_run_is_cleared_and_a_live_runs_kept(tmp_path):
    out = tmp_path / "out"
    touch(out / ".convert-killed" / "sub" / "model.onnx")  # no process holds it
    assert prepare_out_dir(out, force=False) == out  # staging alone: the folder counts as empty
    assert list(out.iterdir()) == []
    with staging_dir(out, ".convert-") as live:  # held by this run while it lives
        touch(live / "model.tflite")
        touch(out / ".convert-killed" / "model.tflite")
        assert clear_stale_staging(out) == [out / ".convert-killed"]
        assert (live / "model.tflite").exists()
    assert list(out.iterdir()) == []


def test_unwritable_out_dir_is_a_clear_error(tmp_path):
    blocker = touch(tmp_path / "file")
    with pytest.raises(EdgeliteError, match="not a folder"):
        prepare_out_dir(blocker, force=True)
    with pytest.raises(EdgeliteError, match="cannot write"):
        prepare_out_dir(blocker / "sub", force=True)


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(EdgeliteError, match="already exists"):
        write_atomic(target, "three", force=False)
