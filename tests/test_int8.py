"""int8 ONNX computes the same integers on every CPU: the saturation probe and the uint8 re-encoding."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgelite import int8  # noqa: E402
from edgelite.backends import OnnxBackend  # noqa: E402

from conftest import EXTERNAL  # noqa: E402


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    """A 1x1 conv whose pairs of u8 x s8 products overflow int16 (large positive inputs and weights),
    then a MatMul head, quantized by onnxruntime like every edgelite int8 export."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 1.0, (16, 64, 1, 1)).astype(np.float32)
    w[::2] *= -1  # both signs, like real weights
    head = rng.normal(0, 1, (16, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("MatMul", ["f", "head"], ["output"])],
        "saturating", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(head, "head")])
    folder = tmp_path_factory.mktemp("int8")
    fp32, path = folder / "model.onnx", folder / "model.int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    x = rng.uniform(0.8, 1.0, (8, 1, 64, 4, 4)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(x)

        def get_next(self):
            return {"input": b} if (b := next(self.batches, None)) is not None else None

    quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return path, x[:, 0]


def probe_model():
    """Q -> DQ -> Conv / MatMul with int8 weights of 127 -> Q -> DQ: onnxruntime fuses both into integer ops."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    inits = [const("one", np.float32(1)), const("zero_u8", np.uint8(0)), const("zero_s8", np.int8(0)),
             const("out_scale", np.float32(2**14)),
             const("w_conv", np.full((4, int8.PROBE_CHANNELS, 1, 1), 127, np.int8)),
             const("w_mm", np.full((int8.PROBE_CHANNELS, 4), 127, np.int8))]
    nodes = []
    for x, w, op, y in (("x", "w_conv", "Conv", "conv"), ("v", "w_mm", "MatMul", "matmul")):
        nodes += [helper.make_node("QuantizeLinear", [x, "one", "zero_u8"], [f"{x}_q"]),
                  helper.make_node("DequantizeLinear", [f"{x}_q", "one", "zero_u8"], [f"{x}_dq"]),
                  helper.make_node("DequantizeLinear", [w, "one", "zero_s8"], [f"{w}_dq"]),
                  helper.make_node(op, [f"{x}_dq", f"{w}_dq"], [f"{y}_f"]),
                  helper.make_node("QuantizeLinear", [f"{y}_f", "out_scale", "zero_u8"], [f"{y}_q"]),
                  helper.make_node("DequantizeLinear", [f"{y}_q", "out_scale", "zero_u8"], [f"{y}_r"]),
                  helper.make_node("Div", [f"{y}_r", "out_scale"], [y])]
    graph = helper.make_graph(
        nodes, "u8s8_saturation_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, int8.PROBE_CHANNELS, 2, 2]),
         helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, int8.PROBE_CHANNELS])],
        [helper.make_tensor_value_info("conv", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("matmul", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # any runtime since 1.14


def run(model, x, level="ORT_ENABLE_ALL"):
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def dequantized(model) -> dict:
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            q, scale, zp = (inits[n.input[k]] for k in (0, 1, 2))
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            shape = [-1 if d == axis % q.ndim else 1 for d in range(q.ndim)] if scale.ndim else []
            out[n.output[0]] = (q.astype(np.float64) - zp.reshape(shape)) * scale.reshape(shape)
    return out


def test_uint8_encoding_keeps_every_dequantized_weight(qdq):
    path, _ = qdq
    exact, count = int8.as_uint8(path)
    before, after = onnx.load(str(path)), onnx.load_from_string(exact)
    assert count == 2  # the conv's and the head's weights
    kinds = {i.name: i.data_type for i in after.graph.initializer}
    weights = [n.input[0] for n in after.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in kinds]
    assert {kinds[w] for w in weights} == {onnx.TensorProto.UINT8}
    old, new = dequantized(before), dequantized(after)
    assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)
    assert int8.as_uint8(path.with_name("model.onnx")) == (None, 0)  # a float model: nothing to re-encode


def test_re_encoding_reads_values_stored_as_int32_data(tmp_path):
    """Weights and zero points stored as int32_data (negative ones as 10-byte varints) instead of raw_data:
    the same dequantized values after re-encoding."""
    from onnx import TensorProto, helper

    q = helper.make_tensor("q", TensorProto.INT8, [6], [-128, -3, 0, 5, 100, 127])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [-7])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.5])
    graph = helper.make_graph([helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"])], "dq", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])], [q, scale, zero])
    path = tmp_path / "dq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    exact, count = int8.as_uint8(path)
    assert count == 1
    after = {i.name: i for i in onnx.load_from_string(exact).graph.initializer}
    assert after["q"].data_type == after["zero"].data_type == TensorProto.UINT8
    want = (np.array([-128, -3, 0, 5, 100, 127]) + 7) * 0.5
    for model in (str(path), exact):
        assert np.array_equal(ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {})[0], want)


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path):
    from edgelite.errors import EdgeliteError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x3a\xff\xff\xff\x0f not a protobuf")
    with pytest.raises(EdgeliteError, match="not a valid ONNX model"):
        int8.as_uint8(bad)


def test_uint8_kernels_compute_the_exact_sums_on_every_cpu(qdq):
    """In float (QDQ evaluated without integer kernels) and with the u8 x u8 integer kernels the model
    gives the same outputs, on any CPU; so does u8 x s8 exactly where the probe says it does not saturate."""
    path, x = qdq
    reference = run(str(path), x, "ORT_ENABLE_BASIC")
    step = 2 * np.abs(reference).max() / 255  # one step of the output's uint8 quantization, at most
    exact, _ = int8.as_uint8(path)
    assert np.abs(run(exact, x) - reference).max() <= step
    direct = np.abs(run(str(path), x) - reference).max()
    assert (direct > step) == int8.saturates()  # this model saturates exactly where the probe does


@pytest.mark.parametrize("saturating", [True, False])
def test_the_backend_re_encodes_exactly_where_the_probe_says(saturating, qdq, monkeypatch):
    """Both branches of OnnxBackend on every CPU: told the kernels saturate, it runs the re-encoded model
    (the same outputs as QDQ in float); told they do not, it runs the file as it is."""
    path, x = qdq
    monkeypatch.setattr(int8, "saturates", lambda: saturating)
    backend = OnnxBackend(path)
    assert ("run as uint8" in backend.version) == saturating
    out = np.concatenate([backend.run(x[i:i + 1]) for i in range(len(x))])
    want = run(int8.as_uint8(path)[0], x) if saturating else run(str(path), x)
    assert np.array_equal(out, want)
    reference = run(str(path), x, "ORT_ENABLE_BASIC")
    if saturating:
        assert np.abs(out - reference).max() <= 2 * np.abs(reference).max() / 255


def test_a_float_model_never_runs_the_probe(qdq, monkeypatch):
    def probe():
        raise AssertionError("the probe ran for a float model")

    monkeypatch.setattr(int8, "saturates", probe)
    assert "uint8" not in OnnxBackend(qdq[0].with_name("model.onnx")).version


def test_the_stored_probe_is_the_built_one():
    import base64

    assert base64.b64decode(int8.PROBE) == probe_model().SerializeToString()


def test_probe_expects_the_exact_answer():
    x = np.full((1, int8.PROBE_CHANNELS, 2, 2), 255.0, np.float32)
    exact = int8.PROBE_CHANNELS * 255 * 127 / 2**14
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    floating = ort.InferenceSession(probe_model().SerializeToString(), options, providers=["CPUExecutionProvider"])
    for out in floating.run(None, {"x": x, "v": x[:, :, 0, 0]}):
        assert np.abs(out - exact).max() <= 0.5


EMULATED = """
import json, sys, numpy as np, onnxruntime as ort
from edgelite import int8
from edgelite.backends import OnnxBackend
b = OnnxBackend(sys.argv[1])
plain = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
print(json.dumps({"saturates": int8.saturates(), "version": b.version,
                  "out": np.concatenate([b.run(x[i:i + 1]) for i in range(len(x))]).tolist(),
                  "plain": np.concatenate([plain.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))]).tolist()}))
"""


@pytest.mark.skipif(platform.machine() != "x86_64" or not shutil.which("qemu-x86_64-static"),
                    reason=EXTERNAL + "needs x86_64 and qemu-x86_64-static (Debian's qemu-user-static)")
def test_avx2_without_vnni_gives_the_same_outputs_as_this_cpu(qdq, tmp_path):
    """Under `qemu-x86_64-static -cpu Haswell` onnxruntime takes its AVX2 (VPMADDUBSW) kernels: the probe
    must see the saturation and the backend must then give this machine's outputs."""
    path, x = qdq
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run(["qemu-x86_64-static", "-cpu", "Haswell", sys.executable, "-c", EMULATED, str(path),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    emulated = json.loads(done.stdout.strip().splitlines()[-1])
    assert emulated["saturates"] is True and "run as uint8" in emulated["version"]
    here = OnnxBackend(path)
    native = np.concatenate([here.run(x[i:i + 1]) for i in range(len(x))])
    reference = run(str(path), x, "ORT_ENABLE_BASIC")
    step = 2 * np.abs(reference).max() / 255
    assert np.abs(np.asarray(emulated["out"]) - native).max() <= step
    assert np.abs(np.asarray(emulated["out"]) - reference).max() <= step
    assert np.abs(np.asarray(emulated["plain"]) - reference).max() > step  # what it fixes: the same file, opened plainly
