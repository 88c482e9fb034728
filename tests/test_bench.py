"""`edgelite bench`: the report's structure and its arithmetic, never its speed."""
import csv
import json

import numpy as np
import pytest

from edgelite.benchmarks import report
from edgelite.benchmarks.bench import bench
from edgelite.files import find_artifacts
from edgelite.labeled import accuracy, labeled_images

from conftest import run_cli, run_python


def test_accuracy_arithmetic():
    scores = np.array([[0.7, 0.2, 0.1, 0.0, 0.0, 0.0],
                       [0.1, 0.2, 0.3, 0.4, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 0.1, 0.2, 0.7]])
    result = accuracy(scores, [0, 0, None])
    assert result == {"top1": 0.5, "top5": 1.0, "labeled": 2}
    assert accuracy(scores, [None, None, None])["top1"] is None
    six = np.eye(6)[[5]] * 0.5 + 0.01
    assert accuracy(six, [0])["top5"] == 1.0  # index 0 ties: stable order keeps it within the top 5


def test_labeled_folder_kinds(tmp_path):
    (tmp_path / "inet").mkdir()
    (tmp_path / "inet" / "wnids.txt").write_text("n001\nn002\nn003\n")
    for name in ("n002_cat.JPEG", "n003_dog.JPEG", "n999_x.JPEG"):
        (tmp_path / "inet" / name).write_bytes(b"x")
    items = dict((p.name, t) for p, t in labeled_images(tmp_path / "inet", None, 3))
    assert items == {"n002_cat.JPEG": 1, "n003_dog.JPEG": 2, "n999_x.JPEG": None}
    background = dict((p.name, t) for p, t in labeled_images(tmp_path / "inet", None, 4))
    assert background["n002_cat.JPEG"] == 2  # 1001-style model: index 0 is background
    for cls in ("b", "a"):
        (tmp_path / "folders" / cls).mkdir(parents=True)
        (tmp_path / "folders" / cls / "1.png").write_bytes(b"x")
    by_name = dict((p.parent.name, t) for p, t in labeled_images(tmp_path / "folders", ["x", "b", "a"], 3))
    assert by_name == {"a": 2, "b": 1}
    by_order = dict((p.parent.name, t) for p, t in labeled_images(tmp_path / "folders", None, 2))
    assert by_order == {"a": 0, "b": 1}


@pytest.fixture(scope="module")
def benched(converted, trained, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    artifacts = [a.path for a in converted.artifacts if a.format in ("tflite-int8", "onnx-fp32")]
    return bench(artifacts, data=digits, keras=trained.model_path, out=out, runs=5, warmup=1, threads=[1, 2],
                 batches=[1, 4], limit=80, cold_repeat=1, verbose=False), out


def test_report_rows_and_files(benched):
    document, out = benched
    rows = {r["name"]: r for r in document["rows"]}
    assert list(rows) == ["Keras (compiled)", "Keras predict()", "tflite-int8", "onnx-fp32"]
    for row in rows.values():
        assert row["size_mb"] > 0
        assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["p99_ms"] >= row["p90_ms"]
        assert row["cold_start_s"] > 0 and row["peak_rss_mib"] > 10
        assert 0 <= row["top1"] <= row["top5"] <= 1
    assert rows["Keras (compiled)"]["speedup"] == 1.0
    assert set(rows["tflite-int8"]["threads"]) == {"1", "2"}
    assert "4" in rows["onnx-fp32"]["batch_ms_per_image"]
    assert document["settings"]["images"] == 80
    assert {"cpu", "cores", "versions"} <= set(document["environment"])
    assert json.loads((out / "results.json").read_text())["rows"][2]["name"] == "tflite-int8"
    with open(out / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["name"] for r in table] == list(rows) and "threads_1" in table[2]
    assert (out / "results.md").read_text().count("\n| ") == 5
    assert (out / "results.png").stat().st_size > 1000


def test_figures_agree_with_the_converter_and_the_runtime(benched, converted, trained, digits):
    """Accuracy and agreement recomputed by hand from the runtime's own predictions."""
    document, _ = benched
    row = next(r for r in document["rows"] if r["name"] == "tflite-int8")
    items = labeled_images(digits, trained.labels, 10)[:80]
    from edgelite import Classifier
    clf = Classifier(row["path"])
    tops = [clf.predict(p, top_k=1)[0].index for p, _ in items]
    assert row["top1"] == pytest.approx(np.mean([t == y for t, (_, y) in zip(tops, items)]))
    keras_top1 = [r for r in document["rows"] if r["name"] == "Keras (compiled)"][0]["top1"]
    assert abs(keras_top1 - row["top1"]) <= 0.05
    assert row["agreement"] >= 0.95 and row["agreement_source"] == "measured"


def test_device_side_bench_measures_agreement_on_the_check_set(converted, digits):
    """No Keras on the device: agreement is measured here on the check set the artifact carries."""
    from edgelite import Classifier
    from edgelite.checkset import verify

    path = next(a.path for a in converted.artifacts if a.format == "tflite-int8")
    document = bench([path], data=digits, runs=3, warmup=1, threads=[1], limit=20, cold_repeat=1, verbose=False)
    (row,) = document["rows"]
    assert row["agreement_source"] == "measured here on its 24 check images"
    assert row["agreement"] == verify(Classifier(path))["top1_agreement"]


def test_bench_cli_on_a_convert_folder(artifact, digits, tmp_path):
    folder = artifact["tflite-fp32"].parent
    assert len(find_artifacts([folder])) == 6
    done = run_cli("bench", folder, "--data", digits, "--quick", "--runs", "3", "--limit", "10",
                   "--out", tmp_path / "b")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 6 and "p50 ms" in lines[0]
    again = run_cli("bench", folder, "--quick", "--out", tmp_path / "b")
    assert again.returncode == 2 and "--force" in again.stderr
    assert "speed-up" not in lines[0]  # no Keras reference: nothing to be faster than


def test_markdown_leaves_out_empty_columns():
    table = report.markdown([{"name": "a", "size_mb": 1.0, "p50_ms": 2.0}])
    assert table.splitlines()[0] == "| model | size MB | p50 ms |"


def test_noise_floor_counts_the_answers_pixel_noise_changes(artifact, trained):
    """The fp32 file against itself: no noise changes nothing; noise of many levels changes answers, and the
    strict figure is the share kept (digits at 24x24, whose answers survive half a level)."""
    from edgelite.noise import describe, of_file

    photos = [p for p, _ in trained.val][:40]
    quiet, loud = of_file(artifact["tflite-fp32"], photos, levels=(0.0, 160.0), seeds=2)
    assert quiet["strict_min"] == quiet["strict_max"] == 1.0 and quiet["changed_median"] == 0
    assert loud["changed_median"] > 0 and loud["strict_median"] == 1 - loud["changed_median"] / 40
    assert loud["strict_min"] <= loud["strict_median"] <= loud["strict_max"] < 1.0
    assert describe(quiet).startswith("+-0 px: 100.0% strict (100.0%-100.0%, 2 seeds)")


def test_held_back_sets_are_photos_calibration_never_saw_with_imagenet_indices():
    from conftest import shared
    from edgelite.benchmarks.heldback import IMAGENET_CATS, held_back, table
    from edgelite.files import find_images
    from edgelite.convert.samples import split_images

    imagenet, cats = shared("data/imagenet-sample"), shared("data/big-cats")
    names = shared("data/models/imagenet_class_names.txt").read_text().splitlines()
    sets = held_back(1001, imagenet, cats)
    calibration, check = split_images(find_images([imagenet]))  # what `convert --calib` splits
    held = sets["imagenet held-back"]
    assert {p for p, _ in held} == set(check) and not set(check) & set(calibration)
    wnids = imagenet.joinpath("wnids.txt").read_text().split()
    assert all(wnids[t - 1] == p.name.split("_")[0] for p, t in held)  # 1001 outputs: 0 is background
    big = sets["big-cats (ImageNet classes)"]
    assert len(big) > 1000 and {p.parent.name for p, _ in big} == set(IMAGENET_CATS)
    cat_names = {"puma": "cougar", "african_leopard": "leopard", "snow_leopard": "snow leopard", "jaguar": "jaguar",
                 "lions": "lion", "tiger": "tiger", "cheetah": "cheetah"}
    assert all(names[t - 1].startswith(cat_names[p.parent.name]) for p, t in big)
    assert {t for _, t in held_back(1000, imagenet, cats)["big-cats (ImageNet classes)"]} == set(IMAGENET_CATS.values())
    rows = [{"format": "a", "imagenet held-back": 0.6, "big": 0.7, "both": 0.69},
            {"format": "b", "imagenet held-back": 0.58, "big": 0.7, "both": 0.688}]
    text = table({"sets": {"imagenet held-back": 125, "big": 1096}, "rows": rows})
    assert "| b | 58.0% (-2.0 pt) | 70.0% (+0.0 pt) | 68.8% (-0.2 pt) |" in text and "both (1221)" in text


@pytest.mark.parametrize("program, args, expect", [
    ("heldback", ["{missing}"], "missing.tflite"),
    ("load", ["{missing}", "--images", "{tmp}"], "no images found"),
    ("load", ["{missing}", "--images", "{tmp}", "--out", "{tmp}/old"], "already exists"),  # checked before any work
    ("load", ["{missing}", "--images", "{tmp}", "--out", "{tmp}/old/load.json/x"], "cannot write"),
    ("runtime_speed", ["--model", "{missing}", "--out", "{tmp}/out"], "missing.tflite"),
    ("runtime_speed", ["--model", "{tmp}/m.onnx", "--out", "{tmp}/out"], "--onnx"),
    ("runtime_speed", ["--images", "{tmp}/old", "--out", "{tmp}/out"], "no images found"),
    ("cluster_speed", ["{missing}", "--images", "{tmp}"], "no images found"),
    ("aarch64", ["{missing}", "--work", "{tmp}/work"], "missing.tflite"),
    ("tune_check", ["{tmp}"], "no recorded choice"),
    ("convert_speed", ["{missing}", "--calib", "{tmp}"], "missing.tflite"),
    ("keras_families", ["--out", "{tmp}/f", "--families", "AlexNet"], "unknown families AlexNet"),
    ("keras_families", ["--out", "{tmp}/f", "--calib", "{tmp}/none"], "no calibration folder"),
    ("int8_head", ["--model", "{missing}"], "missing.tflite"),
    ("noise_floor", ["{missing}", "--photos", "{tmp}/old"], "no photos found"),
])
def test_benchmark_programs_answer_bad_input_with_one_line(program, args, expect, tmp_path):
    """Every benchmark program goes through the CLI's guard (runtime/errors.py): one line, exit 2."""
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "load.json").write_text("{}")
    argv = [a.format(missing=tmp_path / "missing.tflite", tmp=tmp_path) for a in args]
    done = run_python("-m", f"edgelite.benchmarks.{program}", *argv, timeout=300, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(lines) == 1 and "error" in lines[0], done.stderr
    assert expect in lines[0]
