"""Bias correction: the mean error int8 weights cause is taken out of the biases, and only that."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from edgelite.convert import bias  # noqa: E402
from edgelite.convert.onnx_export import quantize_int8  # noqa: E402


@pytest.fixture(scope="module")
def edge_detectors(tmp_path_factory):
    """Depthwise 3x3 kernels whose large weights nearly cancel (what BatchNorm folding makes of
    MobileNet's edge detectors), then a pointwise conv: int8 rounding moves their output means."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    dw = rng.normal(0, 4, (16, 1, 3, 3))
    dw -= dw.mean(axis=(2, 3), keepdims=True) - rng.normal(0, 0.02, (16, 1, 1, 1))
    pw = rng.normal(0, 1, (8, 16, 1, 1))
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((dw, "dw"), (np.zeros(16), "dw_b"), (pw, "pw"), (rng.normal(0, 0.1, 8), "pw_b"))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "dw", "dw_b"], ["d"], group=16, pads=[1, 1, 1, 1], name="depthwise"),
         helper.make_node("Relu", ["d"], ["r"]),
         helper.make_node("Conv", ["r", "pw", "pw_b"], ["p"], name="pointwise"),
         helper.make_node("GlobalAveragePool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["output"])],
        "edges", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 16, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 8])], inits)
    folder = tmp_path_factory.mktemp("bias")
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    smooth = rng.uniform(0.5, 1.0, (48, 16, 1, 1)) + rng.normal(0, 0.05, (48, 16, 8, 8))  # photos are smooth
    return path, smooth.astype(np.float32)


def outputs(path, x):
    options = ort.SessionOptions()  # QDQ evaluated as written, the same on every CPU
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_correction_removes_the_mean_error_of_int8_weights(edge_detectors, tmp_path):
    path, x = edge_detectors
    calib, held = x[:32], x[32:]
    calibration = lambda: (calib[i:i + 1] for i in range(len(calib)))  # noqa: E731
    plain, corrected = tmp_path / "plain.onnx", tmp_path / "corrected.onnx"
    assert quantize_int8(path, plain, calibration, correct_bias=False)["bias_correction"] == 0
    assert quantize_int8(path, corrected, calibration)["bias_correction"] == 2  # both convs
    reference = outputs(path, held)
    before = np.abs((outputs(plain, held) - reference).mean(axis=0)).mean()
    after = np.abs((outputs(corrected, held) - reference).mean(axis=0)).mean()
    assert after < before / 3, (before, after)  # on photos it was not measured on


def test_only_biases_change(edge_detectors, tmp_path):
    from onnx import numpy_helper

    path, x = edge_detectors
    calibration = lambda: (x[i:i + 1] for i in range(8))  # noqa: E731
    plain, corrected = tmp_path / "plain.onnx", tmp_path / "corrected.onnx"
    quantize_int8(path, plain, calibration, correct_bias=False)
    quantize_int8(path, corrected, calibration)
    a = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(plain)).graph.initializer}
    b = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(corrected)).graph.initializer}
    changed = {name for name in a if not np.array_equal(a[name], b[name])}
    assert a.keys() == b.keys() and changed and all(a[name].dtype == np.int32 for name in changed)


def test_shifted_bias_saturates_instead_of_wrapping():
    q = np.array([2**31 - 10, -(2**31) + 10, 100], np.int32)
    out = bias.shifted(q, np.array([1.0, 1.0, 0.5]), np.array([-100.0, 100.0, 1.0]))
    assert out.tolist() == [2**31 - 1, -(2**31), 98]


def test_tflite_correction_removes_the_mean_error_of_int8_weights():
    pytest.importorskip("tensorflow")
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from edgelite.convert.tflite import to_tflite

    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    model = keras.Sequential([keras.Input((8, 8, 16)), keras.layers.DepthwiseConv2D(3, padding="same"),
                              keras.layers.ReLU(), keras.layers.Conv2D(8, 1), keras.layers.GlobalAveragePooling2D()])
    dw, dw_b = model.layers[0].get_weights()
    dw = rng.normal(0, 4, dw.shape)
    dw -= dw.mean(axis=(0, 1), keepdims=True) - rng.normal(0, 0.02, (1, 1) + dw.shape[2:])  # edge detectors
    model.layers[0].set_weights([dw.astype(np.float32), dw_b])
    x = (rng.uniform(0.5, 1.0, (48, 1, 1, 16)) + rng.normal(0, 0.05, (48, 8, 8, 16))).astype(np.float32)
    calibration = lambda: (x[i:i + 1] for i in range(32))  # noqa: E731
    plain = to_tflite(model, "int8", calibration, io_type="float32")
    fp32 = to_tflite(model, "fp32")
    corrected, count, skipped = bias.correct_tflite(plain, fp32, bias.input_means(fp32, calibration))
    assert count == 2  # the depthwise and the pointwise conv

    def run(content):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        i, o = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        out = []
        for sample in x[32:]:
            interpreter.set_tensor(i, sample[None])
            interpreter.invoke()
            out.append(interpreter.get_tensor(o).copy())
        return np.concatenate(out)

    reference = model.predict(x[32:], verbose=0)
    before = np.abs((run(plain) - reference).mean(axis=0)).mean()
    after = np.abs((run(corrected) - reference).mean(axis=0)).mean()
    assert after < before / 2, (before, after)  # on inputs it was not measured on (measured: 4x)


def test_weights_on_the_int8_grid_need_no_correction_and_the_recipe_says_so():
    """A model whose float weights are int8 values times a per-channel scale (as the shared MobileNetV2's are):
    no weight error, so no bias moves, and the reason is counted instead of a bare 0."""
    keras = pytest.importorskip("keras")
    from edgelite.convert import bias
    from edgelite.convert.tflite import to_tflite

    rng = np.random.default_rng(1)
    model = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.Conv2D(6, 3, padding="same"),
                              keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    for layer in (model.layers[0], model.layers[3]):
        w, b = layer.get_weights()
        steps = rng.integers(-127, 128, w.shape)
        steps.reshape(-1, w.shape[-1])[0] = 127  # each output channel's largest |step| is 127: its scale is exact
        scale = rng.uniform(0.001, 0.01, w.shape[-1])
        layer.set_weights([(steps * scale).astype(np.float32), rng.normal(0, 0.1, b.shape).astype(np.float32)])
    x = rng.uniform(0, 1, (16, 8, 8, 4)).astype(np.float32)
    calibration = lambda: (x[i:i + 1] for i in range(16))  # noqa: E731
    plain, fp32 = to_tflite(model, "int8", calibration, io_type="float32"), to_tflite(model, "fp32")
    _, count, skipped = bias.correct_tflite(plain, fp32, bias.input_means(fp32, calibration))
    assert count == 0 and skipped == {"weights already on the int8 grid: no error to correct": 2}
