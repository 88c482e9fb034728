"""Per-layer quantization reports and the float-fallback search, on a tiny random CNN."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgelite.convert import rescue
from edgelite.errors import EdgeliteError
from edgelite.layers import format_table, format_tries

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def cnn():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax"),
    ])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((8, 16, 16, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def calibration(images):
    return lambda: (images[i:i + 1] for i in range(len(images)))


@pytest.fixture(scope="module")
def onnx_pair(cnn, calibration, tmp_path_factory):
    from edgelite.convert.onnx_export import quantize_int8, to_onnx

    folder = tmp_path_factory.mktemp("rescue")
    fp32, qdq = folder / "model.onnx", folder / "model.int8.onnx"
    to_onnx(cnn, fp32)
    quantize_int8(fp32, qdq, calibration)
    return fp32, qdq


@pytest.fixture(scope="module")
def tflite_rows(cnn, calibration, images):
    return rescue.tflite_layer_report(cnn, calibration, images, "int8")


def test_onnx_report_covers_every_quantized_activation(onnx_pair, images):
    import onnx

    fp32, qdq = onnx_pair
    rows = rescue.onnx_layer_report(fp32, qdq, images, "input")
    graph = onnx.load(str(qdq)).graph
    nodes = {n.name: n for n in graph.node}
    # every QuantizeLinear of an activation (not of a constant weight) has one row
    constants = {i.name for i in graph.initializer}
    quantized = {n.input[0].removesuffix("_QuantizeLinear_Input") for n in graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] not in constants}
    assert {r["layer"] for r in rows} == quantized - {i.name for i in graph.input}
    assert len(rows) == len(quantized) >= 4
    for r in rows:
        assert r["node"] in nodes and nodes[r["node"]].op_type == r["op"]
        assert r["op"] not in ("QuantizeLinear", "DequantizeLinear")  # the real producer, not the QDQ pair
        assert math.isfinite(r["sqnr_db"]) and 10 < r["sqnr_db"] < 120
    conv = next(r for r in rows if r["op"] == "Conv")
    assert conv["weight_sqnr_db"] is not None and math.isfinite(conv["weight_sqnr_db"])
    order = [n.name for n in graph.node]
    assert [order.index(r["node"]) for r in rows] == sorted(order.index(r["node"]) for r in rows)


def test_onnx_report_wraps_errors(onnx_pair, images, tmp_path):
    with pytest.raises(EdgeliteError, match="ONNX layer report failed"):
        rescue.onnx_layer_report(tmp_path / "missing.onnx", onnx_pair[1], images, "input")


LAYERS = [{"layer": f"t{i}", "node": f"n{i}", "op": "Conv", "sqnr_db": s}
          for i, s in enumerate([30.0, 12.0, 25.0, 8.0, 40.0, 18.0])]


def test_fallback_search_stops_at_the_smallest_passing_set():
    seen = []

    def evaluate(excluded):
        seen.append(list(excluded))
        return 0.9 if "n2" in excluded else 0.5  # n2 is the 4th worst

    result = rescue.fallback_search(LAYERS, evaluate, gate=0.85, key="sqnr_db")
    assert seen == [["n3"], ["n3", "n1"], ["n3", "n1", "n5", "n2"]]
    assert result == {"excluded": ["n3", "n1", "n5", "n2"], "agreement": 0.9, "passed": True,
                      "tries": [{"excluded": 1, "agreement": 0.5}, {"excluded": 2, "agreement": 0.5},
                                {"excluded": 4, "agreement": 0.9}]}


def test_fallback_search_reports_failure_and_respects_max_layers():
    agreements = iter([0.5, 0.7, 0.6])
    result = rescue.fallback_search(LAYERS, lambda excluded: next(agreements), gate=0.99, key="sqnr_db",
                                    max_layers=3)
    assert not result["passed"]
    assert [t["excluded"] for t in result["tries"]] == [1, 2, 3]
    assert result["excluded"] == ["n3", "n1"] and result["agreement"] == 0.7  # the best try


def test_fallback_search_high_is_worse_for_rmse_and_survives_failed_tries():
    rows = [{"layer": n, "node": n, "op": "X", "rmse_scale": v} for n, v in [("a", 0.2), ("b", 0.9), ("c", None)]]

    def evaluate(excluded):
        if excluded == ["b"]:
            raise EdgeliteError("conversion failed")
        return 1.0

    result = rescue.fallback_search(rows, evaluate, gate=0.9, key="rmse_scale")
    assert result["passed"] and result["excluded"] == ["b", "a"]
    assert result["tries"][0]["agreement"] is None and "conversion failed" in result["tries"][0]["error"]


def test_tflite_report_has_one_finite_row_per_layer(tflite_rows):
    ops = [r["op"] for r in tflite_rows]
    assert ops == ["CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    for r in tflite_rows:
        for key in ("rmse_scale", "mean_error", "scale", "sqnr_db"):
            assert math.isfinite(r[key]), (key, r)
        assert r["scale"] > 0 and 0 < r["rmse_scale"] < 2  # int8 rounding error is about 0.29 steps
        assert 20 < r["sqnr_db"] < 100
        assert r["range"] == pytest.approx(255 * r["scale"])


def test_tflite_fallback_keeps_the_denylisted_layer_in_float(cnn, calibration, images, tflite_rows):
    from ai_edge_litert.interpreter import Interpreter

    dense = next(r["layer"] for r in tflite_rows if r["op"] == "FULLY_CONNECTED")
    model = rescue.tflite_with_fallback(cnn, calibration, [dense], "int8")
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    types = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    assert types[dense] == np.float32
    conv = next(r["layer"] for r in tflite_rows if r["op"] == "CONV_2D")
    assert types[conv] == np.int8  # the rest stays int8
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    scale, zero = inp["quantization"]
    interpreter.set_tensor(inp["index"], np.clip(np.round(images[:1] / scale + zero), -128, 127).astype(np.int8))
    interpreter.invoke()
    scale, zero = out["quantization"]
    probs = (interpreter.get_tensor(out["index"]).astype(np.float32) - zero) * scale
    np.testing.assert_allclose(probs, cnn(images[:1]).numpy(), atol=0.03)


def test_write_report_and_table(tmp_path, tflite_rows):
    pytest.importorskip("matplotlib")
    written = rescue.write_report(tflite_rows, tmp_path / "model.int8", "test", "rmse_scale")
    assert written["json"] == tmp_path / "model.int8.layers.json"
    assert json.loads(written["json"].read_text()) == json.loads(json.dumps(tflite_rows))
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(tflite_rows, "rmse_scale", worst=2).splitlines()
    worst = max(tflite_rows, key=lambda r: r["rmse_scale"])
    assert len(table) == 3 and worst["op"] in table[1]


def test_search_tries_calibration_methods_before_float_fallback():
    calls = []

    def evaluate(excluded, method=None):
        calls.append((len(excluded), method))
        return 0.97 if method == "entropy" else 0.5

    result = rescue.fallback_search(LAYERS, evaluate, gate=0.95, key="sqnr_db", methods=("percentile", "entropy"))
    assert calls == [(0, "percentile"), (0, "entropy")]  # cheapest first, and no layer in float
    assert result["passed"] and result["method"] == "entropy" and result["excluded"] == []
    assert format_tries(result["tries"]) == "percentile calibration: 50.0%, entropy calibration: 97.0%"
