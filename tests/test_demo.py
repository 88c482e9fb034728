"""End to end: `edgelite demo` on a tiny configuration, and on the shared MobileNetV2 (slow)."""
import json

import pytest

from conftest import run_cli, shared


def test_demo_end_to_end_tiny(tmp_path):
    out = tmp_path / "demo"
    done = run_cli("demo", "--out", out, "--epochs", "3", "--runs", "5", "--check", "150")
    assert done.returncode == 0, done.stderr
    for step in ("1. dataset", "2. training", "3-4. exporting", "5. the TensorFlow-free runtime", "6. results"):
        assert step in done.stdout
    results = json.loads((out / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == ["Keras (compiled)", "Keras predict()", "tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"]
    assert results["held_back_images"] == 150
    for name, row in rows.items():
        assert row["size_mb"] > 0 and row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"]
        assert 0.5 < row["top1"] <= 1.0
    assert rows["tflite-int8"]["agreement"] >= 0.95
    assert rows["tflite-fp32"]["agreement"] == 1.0
    assert abs(rows["tflite-fp32"]["top1"] - rows["Keras (compiled)"]["top1"]) < 0.01
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == 7  # header + 6 rows
    assert (out / "results.png").stat().st_size > 1000
    again = run_cli("demo", "--out", out)
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
def test_demo_on_shared_mobilenet(tmp_path):
    model = shared("data/models/mobilenet_v2_1.0_224_imagenet.keras")
    data = shared("data/imagenet-sample")
    names = shared("data/models/imagenet_class_names.txt")
    done = run_cli("demo", "--model", model, "--data", data, "--labels", names, "--out", tmp_path / "d",
                   "--runs", "10")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads((tmp_path / "d" / "results.json").read_text())["rows"]}
    assert rows["Keras (compiled)"]["top1"] > 0.8
    assert rows["tflite-int8"]["agreement"] >= 0.95
    assert rows["onnx-fp32"]["max_abs_diff"] < 1e-4
