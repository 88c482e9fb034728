"""int8 files whose logits come out in float (convert/float_logits.py): the last weighted layer's sums are not
rounded to 256 levels, and nothing else changes."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from edgelite.convert.float_logits import onnx_float_logits, tflite_float_logits  # noqa: E402
from edgelite.convert.onnx_export import quantize_int8  # noqa: E402


def run_onnx(path, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # the same on every CPU
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": b[None]})[0] for b in x])


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """Conv, Relu, average pool, then a MatMul + Add head of 40 classes, in float."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((rng.normal(0, 0.5, (16, 3, 3, 3)), "w"), (rng.normal(0, 0.1, 16), "b"),
              (rng.normal(0, 0.5, (16, 40)), "fc"), (rng.normal(0, 0.2, 40), "fc_b"))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
         helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
         helper.make_node("Add", ["m", "fc_b"], ["output"], name="fc_bias")],
        "head", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 40])], inits)
    path = tmp_path_factory.mktemp("float_logits") / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, rng.normal(0, 1, (64, 3, 8, 8)).astype(np.float32)


def test_onnx_logits_leave_the_int8_grid_and_come_closer_to_float(head, tmp_path):
    path, x = head
    calibration = lambda: (x[i:i + 1] for i in range(32))  # noqa: E731
    plain, floated = tmp_path / "plain.onnx", tmp_path / "floated.onnx"
    quantize_int8(path, plain, calibration)
    recipe = quantize_int8(path, floated, calibration, float_logits=True)
    assert "float_logits_skipped" not in recipe
    # the bias-correction count says what was done and what was left alone, and why (issue 30 point 5)
    assert recipe["bias_correction"] == 1 and recipe["bias_correction_skipped"] == {
        "Gemm: only Conv biases are corrected": 1}  # MatMul + Add, fused by quant_pre_process
    last = {n.output[0]: n for n in onnx.load(str(floated)).graph.node}["output"]
    assert last.op_type not in ("QuantizeLinear", "DequantizeLinear")  # the output is the head's own float
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(floated)).graph.node) < \
        sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(plain)).graph.node)
    reference, before, after = (run_onnx(p, x[32:]) for p in (path, plain, floated))
    assert len(np.unique(before)) <= 256 < len(np.unique(after))  # an int8 output has 256 levels at most
    assert np.abs(after - reference).mean() < np.abs(before - reference).mean()
    assert onnx_float_logits(floated, path) == "its output is float already"  # a second edit changes nothing


def test_tflite_logits_come_out_float_on_both_kernel_paths():
    pytest.importorskip("tensorflow")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    import keras

    from edgelite.convert import tflite

    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(40)])
    x = rng.normal(0, 1, (48, 8, 8, 3)).astype(np.float32)
    data = tflite.to_tflite(model, "int8", lambda: (x[i:i + 1] for i in range(32)))
    floated, why = tflite_float_logits(data)
    assert why is None
    reference = model.predict(x[32:], verbose=0)
    outputs = {}
    for name, content in (("int8", data), ("float", floated)):
        for xnnpack in (True, False):
            interpreter = litert.Interpreter(model_content=content, **({} if xnnpack else {
                "experimental_op_resolver_type": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}))
            interpreter.allocate_tensors()
            i, o = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
            rows = []
            for sample in x[32:]:
                scale, zero = i["quantization"]
                interpreter.set_tensor(i["index"], np.clip(np.round(sample / scale + zero), -128, 127)
                                       .astype(np.int8)[None])
                interpreter.invoke()
                out = interpreter.get_tensor(o["index"])
                scale, zero = o["quantization"]
                rows.append((out.astype(np.float32) - zero) * scale if o["dtype"] == np.int8 else out)
            outputs[name, xnnpack] = np.concatenate(rows)
    int8_step = float(np.min(np.diff(np.unique(outputs["int8", True]))))
    for xnnpack in (True, False):
        assert outputs["float", xnnpack].dtype == np.float32
        assert len(np.unique(outputs["float", xnnpack])) > len(np.unique(outputs["int8", xnnpack]))
        # the same int8 layers: on average within about one int8 output step of the int8 file (whose output also
        # saturates at its calibrated range), and no farther from float
        assert np.abs(outputs["float", xnnpack] - outputs["int8", xnnpack]).mean() < 2 * int8_step
        assert np.abs(outputs["float", xnnpack] - reference).mean() <= np.abs(outputs["int8", xnnpack]
                                                                               - reference).mean() * 1.1


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_histogram_calibration_sees_a_bounded_number_of_samples(head, tmp_path, method):
    """onnxruntime's percentile and entropy calibrators keep every activation of every sample (MobileNetV2 with 400
    samples: killed past 13 GB), so they see at most HISTOGRAM_SAMPLES; min/max sees every sample."""
    from edgelite.convert.onnx_export import HISTOGRAM_SAMPLES

    path, x = head
    seen = []

    def calibration():
        for i in range(HISTOGRAM_SAMPLES + 20):
            seen.append(i)
            yield x[i % len(x)][None]

    quantize_int8(path, tmp_path / "q.onnx", calibration, method=method, correct_bias=False)
    assert len(seen) == (HISTOGRAM_SAMPLES if method == "percentile" else HISTOGRAM_SAMPLES + 20)


def test_histogram_calibration_is_bounded_by_activation_bytes(head, tmp_path, monkeypatch):
    """A big model's activations are what fill memory (EfficientNetB3 at 300x300: 64 samples past 19 GB): the
    histogram calibrators see no more samples than HISTOGRAM_BYTES of activations allow, and at least a few."""
    from edgelite.convert import onnx_export

    path, x = head
    monkeypatch.setattr(onnx_export, "HISTOGRAM_BYTES", 1)
    seen = []

    def calibration():
        for i in range(onnx_export.HISTOGRAM_SAMPLES):
            seen.append(i)
            yield x[i % len(x)][None]

    quantize_int8(path, tmp_path / "q.onnx", calibration, method="entropy", correct_bias=False)
    assert len(seen) == onnx_export.HISTOGRAM_MIN_SAMPLES
