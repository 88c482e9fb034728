"""Per-layer quantization reports and the float-fallback search, on a tiny random CNN."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgelite.convert import dynamic_range, fallback, layer_report, onnx_layer_error, tflite_layer_error
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
def calibrated(cnn, calibration):
    from edgelite.convert import tflite

    return tflite.calibrate(tflite.to_tflite(cnn, "fp32"), calibration)


@pytest.fixture(scope="module")
def tflite_rows(calibrated, images):
    return tflite_layer_error.tflite_layer_report(calibrated, images, "int8")


def test_onnx_report_covers_every_quantized_activation(onnx_pair, images):
    import onnx

    fp32, qdq = onnx_pair
    rows = onnx_layer_error.onnx_layer_report(fp32, qdq, images, "input")
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
        onnx_layer_error.onnx_layer_report(tmp_path / "missing.onnx", onnx_pair[1], images, "input")


def test_onnx_report_runs_fewer_images_on_a_big_model(onnx_pair, images, monkeypatch):
    """The report keeps every float and QDQ activation of each image (EfficientNetB3 at 300x300 with 16 images:
    killed at 17 GB): no more images than REPORT_BYTES of activations allow, at least 2, and the same rows."""
    from edgelite.convert.onnx_export import activation_bytes

    fp32, qdq = onnx_pair
    per_image = activation_bytes(fp32)
    assert per_image > 4 * 16 * 16 * 3  # at least the first layer's output
    assert onnx_layer_error.report_images(fp32, 8) == 8
    monkeypatch.setattr(onnx_layer_error, "REPORT_BYTES", 3 * per_image)
    assert onnx_layer_error.report_images(fp32, 8) == 3
    monkeypatch.setattr(onnx_layer_error, "REPORT_BYTES", 1)
    assert onnx_layer_error.report_images(fp32, 8) == 2
    few = onnx_layer_error.onnx_layer_report(fp32, qdq, images, "input")
    monkeypatch.undo()
    assert [r["layer"] for r in few] == [r["layer"] for r in onnx_layer_error.onnx_layer_report(fp32, qdq, images,
                                                                                              "input")]


def test_onnx_report_takes_a_scalar_weight(images, calibration, tmp_path):
    """Hard-swish's scalar constants (3 and 1/6: MobileNetV3) are quantized as weights of Add/Mul; the report
    ranks those nodes instead of failing on the scalar ("numpy.float32 has no len()": TransferV3's rescue)."""
    import keras

    from edgelite.convert.onnx_export import quantize_int8, to_onnx

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Activation("hard_swish"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3)])
    fp32, qdq = tmp_path / "hs.onnx", tmp_path / "hs.int8.onnx"
    to_onnx(model, fp32)
    quantize_int8(fp32, qdq, calibration)
    rows = onnx_layer_error.onnx_layer_report(fp32, qdq, images, "input")
    scalar = [r for r in rows if r["op"] in ("Add", "Mul") and r["weight_sqnr_db"] is not None]
    assert scalar and all(math.isfinite(r["weight_sqnr_db"]) for r in scalar)
    assert {"Conv", "Mul"} <= {r["op"] for r in rows}


LAYERS = [{"layer": f"t{i}", "node": f"n{i}", "op": "Conv", "sqnr_db": s}
          for i, s in enumerate([30.0, 12.0, 25.0, 8.0, 40.0, 18.0])]


def test_fallback_search_stops_at_the_smallest_passing_set():
    seen = []

    def evaluate(excluded):
        seen.append(list(excluded))
        return 0.9 if "n2" in excluded else 0.5  # n2 is the 4th worst

    result = fallback.fallback_search(LAYERS, evaluate, gate=0.85, key="sqnr_db")
    assert seen == [["n3"], ["n3", "n1"], ["n3", "n1", "n5", "n2"]]
    assert result == {"excluded": ["n3", "n1", "n5", "n2"], "agreement": 0.9, "passed": True,
                      "tries": [{"excluded": 1, "agreement": 0.5}, {"excluded": 2, "agreement": 0.5},
                                {"excluded": 4, "agreement": 0.9}]}


def test_fallback_search_reports_failure_and_respects_max_layers():
    agreements = iter([0.5, 0.7, 0.6])
    result = fallback.fallback_search(LAYERS, lambda excluded: next(agreements), gate=0.99, key="sqnr_db",
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

    result = fallback.fallback_search(rows, evaluate, gate=0.9, key="rmse_scale")
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


def test_tflite_fallback_keeps_the_denylisted_layer_in_float(cnn, calibrated, images, tflite_rows):
    from ai_edge_litert.interpreter import Interpreter

    from edgelite.convert.tflite import quantize_calibrated

    dense = next(r["layer"] for r in tflite_rows if r["op"] == "FULLY_CONNECTED")
    model = quantize_calibrated(calibrated, "int8", [dense])
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
    written = layer_report.write_report(tflite_rows, tmp_path / "model.int8", "test", "rmse_scale")
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

    result = fallback.fallback_search(LAYERS, evaluate, gate=0.95, key="sqnr_db", methods=("percentile", "entropy"))
    assert calls == [(0, "percentile"), (0, "entropy")]  # cheapest first, and no layer in float
    assert result["passed"] and result["method"] == "entropy" and result["excluded"] == []
    assert format_tries(result["tries"]) == "percentile calibration: 50.0%, entropy calibration: 97.0%"


def test_a_far_try_reads_as_far_and_the_layers_go_on_top_of_the_calibration_that_helped():
    """The converter's evaluator fails a try whose output is far from the source's (its agreement does not
    count); the search goes on, keeping in float on top of the method that helped most."""
    calls = []

    def evaluate(excluded, method=None):
        calls.append((len(excluded), method))
        if method == "percentile":
            raise EdgeliteError("far: total variation 0.72")
        return {"typical": 0.94, None: 0.5}[method] + 0.02 * len(excluded)

    result = fallback.fallback_search(LAYERS, evaluate, gate=0.95, key="sqnr_db", methods=("typical", "percentile"),
                                      baseline=0.0)
    assert calls == [(0, "typical"), (0, "percentile"), (1, "typical")]
    assert result["passed"] and result["method"] == "typical" and len(result["excluded"]) == 1
    assert format_tries(result["tries"]) == ("calibration without atypical samples: 94.0%, percentile calibration: "
                                             "far: total variation 0.72, 1 in float + calibration without atypical "
                                             "samples: 96.0%")


# --- TFLite dynamic range: each weight-quantized layer can be put back in float; the rescue in the converter


@pytest.fixture(scope="module")
def dynamic_pair():
    """A CNN whose two convolutions have >= 1024 weights (int8 in dynamic range) and whose head has fewer
    (left in float by the converter): its float and dynamic-range conversions, and some inputs."""
    import keras

    from edgelite.convert import tflite

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((12, 12, 8)), keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.Conv2D(32, 3),
        keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, activation="softmax"),
    ])
    x = np.random.default_rng(3).random((6, 12, 12, 8), dtype=np.float32)
    return tflite.to_tflite(model, "dynamic"), tflite.to_tflite(model, "fp32"), x


def _run(content: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    i, o = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    out = []
    for sample in x:
        interpreter.set_tensor(i, sample[None])
        interpreter.invoke()
        out.append(interpreter.get_tensor(o).copy())
    return np.concatenate(out)


def test_dynamic_layers_put_a_named_layer_back_in_float(dynamic_pair):
    from edgelite.convert.tflite_model import unpack, weighted_ops

    dynamic, fp32, x = dynamic_pair
    layers = dynamic_range.DynamicLayers(dynamic, fp32)
    names = list(layers.layers)
    assert len(names) == 2  # the two convolutions; the 160-weight head was never quantized
    float_out, plain_out = _run(fp32, x), _run(dynamic, x)
    assert np.abs(plain_out - float_out).max() > 1e-5  # dynamic range changes the numbers at all
    np.testing.assert_array_equal(_run(layers.with_float([]), x), plain_out)  # nothing named: the same model
    one = layers.with_float(names[:1])
    _, model = unpack(one)
    kinds = [model.subgraphs[0].tensors[op.inputs[1]].type for op, _ in weighted_ops(model)]
    assert kinds == [0, 9, 0]  # TensorType FLOAT32, INT8, FLOAT32: only the second conv is still int8
    assert not np.array_equal(_run(one, x), plain_out)
    np.testing.assert_allclose(_run(layers.with_float(names), x), float_out, atol=1e-6)  # all: the float model
    np.testing.assert_array_equal(_run(layers.with_float([]), x), plain_out)  # the object is int8 again after each
    with pytest.raises(EdgeliteError, match="no weight-quantized layer"):
        layers.with_float(["no such layer"])



def test_dynamic_range_keeps_depthwise_weights_in_float_for_one_delegate_partition(dynamic_pair):
    """A MobileNet-style block: with int8 depthwise weights (no XNNPACK hybrid kernel) the graph is cut into
    several delegate partitions; float_depthwise gives them float weights, the pointwise convolution stays
    int8, and the whole model is one XNNPACK partition with the float model's depthwise numbers."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from edgelite.convert import tflite
    from edgelite.convert.tflite_model import OP_NAMES, unpack, weighted_ops

    keras.utils.set_random_seed(4)
    model = keras.Sequential([  # expand, depthwise, project: the depthwise between two delegated convolutions
        keras.Input((10, 10, 64)), keras.layers.Conv2D(128, 1, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"), keras.layers.Conv2D(64, 1, activation="relu"),
        keras.layers.DepthwiseConv2D(3), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax"),
    ])
    dynamic, fp32 = tflite.to_tflite(model, "dynamic"), tflite.to_tflite(model, "fp32")
    out, count = dynamic_range.float_depthwise(dynamic, fp32)
    assert count == 1  # the first depthwise (1152 weights); the second has 576, left in float by the converter

    def kinds(content):
        _, m = unpack(content)
        return [(OP_NAMES[kind], m.subgraphs[0].tensors[op.inputs[1]].type) for op, kind in weighted_ops(m)]

    assert kinds(dynamic)[:3] == [("CONV_2D", 9), ("DEPTHWISE_CONV_2D", 9), ("CONV_2D", 9)]  # TensorType INT8
    assert kinds(out)[:3] == [("CONV_2D", 9), ("DEPTHWISE_CONV_2D", 0), ("CONV_2D", 9)]  # FLOAT32 in the middle

    def partitions(content):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())

    assert partitions(dynamic) > 1 and partitions(out) == 1
    x = np.random.default_rng(4).random((3, 10, 10, 64), dtype=np.float32)
    assert np.abs(_run(out, x) - _run(fp32, x)).max() < np.abs(_run(dynamic, x) - _run(fp32, x)).max()
    assert dynamic_range.float_depthwise(dynamic_pair[0], dynamic_pair[1]) == (dynamic_pair[0], 0)  # no depthwise
    assert dynamic_range.float_depthwise(dynamic, dynamic_pair[1]) == (dynamic, 0)  # layers that do not pair: as it is

def test_dynamic_report_rates_each_quantized_layer(dynamic_pair):
    dynamic, fp32, x = dynamic_pair
    rows = dynamic_range.tflite_dynamic_layer_report(dynamic, fp32, x)
    assert [r["op"] for r in rows] == ["CONV_2D", "CONV_2D"] and [r["weights"] for r in rows] == [1152, 4608]
    assert [r["node"] for r in rows] == list(dynamic_range.DynamicLayers(dynamic, fp32).layers)
    for r in rows:
        assert 30 < r["weight_sqnr_db"] < 70  # per-channel int8 rounding: about 6 dB a bit
        assert 10 < r["output_sqnr_db"] < 120
    assert format_table(rows, "output_sqnr_db", worst=1).splitlines()[1].split()[0] == \
        f"{min(r['output_sqnr_db'] for r in rows):.3f}"


def test_fallback_search_keeps_the_helping_method_and_bisects():
    seen = []

    def evaluate(excluded, method=None):
        seen.append((len(excluded), method))
        return 0.90 if not excluded else (0.96 if len(excluded) >= 3 else 0.5)

    layers = LAYERS  # 6 rated layers
    result = fallback.fallback_search(layers, evaluate, gate=0.95, key="sqnr_db", methods=("bias_correction",),
                                    baseline=0.80, max_layers=len(layers), refine=True)
    # the method helped (0.90 > 0.80): the float tries are made on top of it; 4 passes, 2 fails: 3 is tried
    assert seen == [(0, "bias_correction"), (1, "bias_correction"), (2, "bias_correction"), (4, "bias_correction"),
                    (3, "bias_correction")]
    assert result["passed"] and len(result["excluded"]) == 3 and result["method"] == "bias_correction"
    assert format_tries(result["tries"][:2]) == "bias correction: 90.0%, 1 in float + bias correction: 50.0%"
    # without a baseline (ONNX's search) or when the method did not help, the float tries are plain
    seen.clear()
    fallback.fallback_search(layers, evaluate, gate=0.95, key="sqnr_db", methods=("bias_correction",), baseline=0.95)
    assert [method for _, method in seen] == ["bias_correction", None, None, None]


def _dynamic_convert(trained, out, **kwargs):
    from edgelite.convert import convert

    calibration = [p for p, _ in trained.train][:30]
    check = [p for p, _ in trained.val][:40]
    return convert(trained.model_path, out, calibration, check, formats=["tflite-dynamic"], verbose=False, **kwargs)


def test_dynamic_range_below_its_gate_is_rescued_by_bias_correction(trained, tmp_path, first_measure_fails):
    """The plain export's measurement made to fail: the rescue writes its report, tries bias correction first
    (no size or speed cost) and ships that file, recorded as int8's rescue is, shown by inspect."""
    from edgelite import Classifier
    from conftest import run_cli

    a = _dynamic_convert(trained, tmp_path / "out").artifacts[0]
    assert a.error is None and a.passed
    recipe = Classifier(a.path).metadata["quantization"]
    found = recipe["rescue"]
    assert found["passed"] and found["method"] == "bias_correction" and found["excluded"] == []
    assert found["from_agreement"] == 0.0 and found["tries"] == [
        {"excluded": 0, "method": "bias_correction", "agreement": a.parity["agreement"]}]
    assert recipe["bias_correction"] >= 1 and abs(found["cost"]["size_bytes"]) < 1000  # biases change, not sizes
    assert found["key"] == "output_sqnr_db" and found["report"] == "model_dynamic.tflite.layers.json"
    rows = json.loads((a.path.parent / found["report"]).read_text())
    assert len(rows) == 2 and all(math.isfinite(r["output_sqnr_db"]) for r in rows)
    assert (a.path.parent / "model_dynamic.tflite.layers.png").is_file()
    # the shipped file is the bias-corrected model: its biases differ from the plain conversion's
    plain = _dynamic_convert(trained, tmp_path / "plain", rescue=False).artifacts[0]
    assert plain.path.read_bytes() != a.path.read_bytes() and "rescue" not in Classifier(plain.path).metadata[
        "quantization"]
    done = run_cli("inspect", a.path)
    assert done.returncode == 0 and "rescue: bias correction:" in done.stdout
    assert "output_sqnr_db" in done.stdout and "; bias correction;" in done.stdout


def test_dynamic_range_rescue_that_cannot_pass_tries_every_layer_count(trained, tmp_path):
    """A gate nothing reaches: bias correction, then 1 and 2 (all) layers in float; the best try is recorded and
    the artifact is still written, below its gate."""
    a = _dynamic_convert(trained, tmp_path / "out", thresholds={"dynamic": 1.01}).artifacts[0]
    assert a.error is None and not a.passed and a.path.is_file()
    from edgelite import Classifier

    found = Classifier(a.path).metadata["quantization"]["rescue"]
    assert not found["passed"]
    assert [(t["excluded"], t.get("method")) for t in found["tries"]][0] == (0, "bias_correction")
    assert [t["excluded"] for t in found["tries"]][1:] == [1, 2]
    assert all(t["agreement"] is not None for t in found["tries"])
    # the file written is the best of the plain export and its tries, still below the gate
    assert a.parity["agreement"] >= max(t["agreement"] for t in found["tries"])
