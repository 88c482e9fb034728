"""benchmarks/convert_speed.py: seconds per format, wall and CPU, with what each export agreed."""
import json

import pytest

pytest.importorskip("tensorflow")


def test_convert_speed_times_each_format_and_writes_json(trained, tmp_path, capsys):
    from edgelite.benchmarks.convert_speed import main

    folder = tmp_path / "images"
    folder.mkdir()
    for i, (path, _) in enumerate(trained.val[:24]):
        (folder / f"{i:02d}{path.suffix}").write_bytes(path.read_bytes())
    out = tmp_path / "out"
    assert main([str(trained.model_path), "--calib", str(folder), "--out", str(out),
                 "--formats", "tflite-fp32", "tflite-dynamic", "onnx-fp32"]) == 0
    document = json.loads((out / "convert_speed.json").read_text())
    rows = document["formats"]
    assert [r["format"] for r in rows] == ["tflite-fp32", "tflite-dynamic", "onnx-fp32"]
    for r in rows:
        assert r["error"] is None and r["passed"] and 0 < r["wall_s"] and 0 < r["cpu_s"]
        assert r["agreement"] >= r["top1_agreement"] > 0.9 and not r["rescue"]
    total = document["convert"]
    assert total["wall_s"] >= sum(r["wall_s"] for r in rows) and document["setup"]["cpu_s"] > 0
    assert document["check_images"] == 12 and document["calibration_images"] == 12
    printed = capsys.readouterr().out
    assert "tflite-dynamic" in printed and "total (convert)" in printed and "load average" in printed
