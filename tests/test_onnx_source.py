"""ONNX in: a float classifier ONNX from any producer converted to every format, checked against onnxruntime on
the source; torch.onnx's preprocessing without flags; the bad inputs as one line each."""
import json

import numpy as np
import pytest

from edgelite import Classifier, checkset, cli
from edgelite.backends import open_backend
from edgelite.files import find_images

from conftest import shared
from onnx_fixtures import SIZE, small_cnn

FORMATS = ["tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "onnx-fp32", "onnx-int8"]
TOLERANCE = 1e-5  # the rebuilt Keras model against onnxruntime on the source, in probability


def photos():
    return find_images([shared("data/imagenet-sample")])


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("edgelite: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def source_probabilities(path, images, layout="NCHW"):
    """onnxruntime on the source file, softmax of its logits: the reference every artifact answers to."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = images.transpose(0, 3, 1, 2) if layout == "NCHW" else images
    logits = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The torch-style fixture (NCHW, producer "pytorch", no hard-swish) in all six formats, from the CLI with
    no preprocessing flags."""
    folder = tmp_path_factory.mktemp("onnx-in")
    source = small_cnn(folder / "small_cnn.onnx", hardswish=False)
    out = folder / "out"
    code = cli.main(["convert", str(source), "--calib", str(shared("data/imagenet-sample")), "--out", str(out),
                     "--calib-count", "80", "--check-count", "80"])
    return source, out, code


def test_every_format_passes_its_gate_against_the_source(converted):
    source, out, code = converted
    assert code == 0
    for fmt in FORMATS:
        family, precision = fmt.split("-")
        path = out / f"small_cnn_{precision}.{family}"
        meta = json.loads((out / f"small_cnn_{precision}.{family}.json").read_text())
        assert meta["parity"]["agreement"] >= meta["parity"]["min_agreement"], fmt
        assert meta["source"]["producer"].startswith("pytorch") and meta["source"]["layout"] == "NCHW"
        assert meta["source"]["rebuild_max_abs_diff"] < TOLERANCE
        assert meta["outputs"] == "logits"
        assert meta["preprocess"]["preset"] == "torch" and meta["preprocess"]["resize"] == "crop"
        assert meta["preprocess"]["crop_fraction"] == 0.875 and meta["preprocess"]["antialias"] is True
        assert meta["preprocess"]["layout"] == ("NCHW" if family == "onnx" else "NHWC")  # ONNX keeps the source's
        assert path.exists()


def test_the_check_set_reference_is_onnxruntime_on_the_source(converted):
    """The probabilities each artifact carries as its reference are the source model's (onnxruntime), not the
    rebuilt Keras model's: equal to onnxruntime run now on the check set's pixels."""
    source, out, _ = converted
    clf = Classifier(out / "small_cnn_int8.tflite")
    blobs, reference, _ = checkset.unpack(clf.backend.check_set())
    pixels = [checkset.decode(blob) for blob in blobs]
    spec = clf.spec
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    images = np.stack([(p.astype(np.float32) - mean) / std for p in pixels])
    np.testing.assert_allclose(reference, source_probabilities(source, images), atol=1e-6)


def test_tflite_int8_has_no_transpose_no_float_island_and_one_partition(converted):
    from edgelite.benchmarks.tflite_ops import op_facts

    _, out, _ = converted
    facts = op_facts(out / "small_cnn_int8.tflite")
    assert facts["transposes"] == facts["dequantize"] == facts["float_ops"] == 0, facts
    assert facts["float_head"] == ["DEQUANTIZE", "FULLY_CONNECTED"], facts  # the float32 logits, nothing else
    assert facts["partitions"] == 1, facts
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(facts["ops"])


def test_predict_needs_no_flags_on_the_source_and_the_artifacts(converted, capsys):
    source, out, _ = converted
    photo = photos()[0]
    answers = {}
    for model in (source, out / "small_cnn_fp32.tflite", out / "small_cnn_fp32.onnx", out / "small_cnn_int8.onnx"):
        code, printed, err = run_cli(capsys, "predict", model, photo, "--json")
        assert code == 0, err
        line = json.loads(printed.splitlines()[0])
        answers[model.name] = line["predictions"][0]["index"]
        assert line["preprocess"]["preset"] == "torch", line
    assert len(set(answers.values())) == 1, answers
    # the same torch convention, stated: RGB, 0.875 centre crop, antialiased bilinear, ImageNet mean/std
    spec = Classifier(source).spec
    assert (spec.preset, spec.resize, spec.crop_fraction, spec.antialias, spec.layout) == (
        "torch", "crop", 0.875, True, "NCHW")


def test_user_flags_override_the_torch_convention(tmp_path):
    source = small_cnn(tmp_path / "m.onnx")
    spec = Classifier(source, preprocess={"resize": "stretch", "mean": [0.0], "std": [255.0]}).spec
    assert spec.resize == "stretch" and spec.mean == (0.0, 0.0, 0.0) and spec.std == (255.0,) * 3


@pytest.mark.parametrize("variant", [
    {},  # NCHW, hard-swish, squeeze-excite, concat, global pool + flatten
    {"nhwc": True, "producer": "tf2onnx"},  # tf2onnx's NHWC input and Transpose to NCHW
    {"flatten_spatial": True},  # VGG's head: Flatten of a 4x4 map into Gemm
    {"external_data": True},  # the dynamo exporter's model.onnx.data
])
def test_the_rebuild_matches_onnxruntime_on_photos(tmp_path, variant):
    from edgelite.convert.loading import import_tensorflow, load_source
    from edgelite.preprocess import PreprocessSpec, batch

    import_tensorflow()
    path = small_cnn(tmp_path / "m.onnx", **variant)
    if variant.get("external_data"):
        assert (tmp_path / "m.onnx.data").stat().st_size > (tmp_path / "m.onnx").stat().st_size
    source = load_source(path)
    images = batch(photos()[:24], PreprocessSpec(size=(SIZE, SIZE), preset="torch"))
    ours = np.asarray(source.model.predict(images, verbose=0))
    theirs = source.run(images)
    assert np.abs(ours - theirs).max() < 1e-4  # logits
    assert len(set(theirs.argmax(1))) > 1  # the model tells photos apart: the comparison can fail
    names = [layer.name for layer in source.model.layers]
    assert not any("transpose" in n for n in names), names  # no layout transposes in a channels-last rebuild
    assert source.layout == ("NHWC" if variant.get("nhwc") else "NCHW")


def test_an_unknown_producer_needs_preprocessing(tmp_path, capsys):
    source = small_cnn(tmp_path / "tf.onnx", nhwc=True, producer="tf2onnx")
    code, _, err = run_cli(capsys, "predict", source, photos()[0])
    one_line_error(code, err, "cannot tell how tf.onnx expects its pixels")
    code, _, err = run_cli(capsys, "convert", source, "--calib", shared("data/imagenet-sample"),
                           "--out", tmp_path / "out")
    one_line_error(code, err, "cannot tell how tf.onnx expects its pixels")


def test_bad_inputs_are_one_line(tmp_path, capsys):
    calib = shared("data/imagenet-sample")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    cases = [
        (garbage, [], ["garbage.onnx", "not an ONNX model"]),
        (small_cnn(tmp_path / "two.onnx", outputs=2), [], ["two.onnx", "--output"]),
        (small_cnn(tmp_path / "dyn.onnx", dynamic_size=True), [], ["dynamic height and width", "--size H W"]),
        (small_cnn(tmp_path / "erf.onnx", extra_op="Erf"), [], ["operator Erf", "ONNX-to-Keras route"]),
        (small_cnn(tmp_path / "size.onnx"), ["--size", "32", "32"], ["--size 32 32", "64x64"]),
    ]
    for model, extra, words in cases:
        code, _, err = run_cli(capsys, "convert", model, "--calib", calib, "--out", tmp_path / "out", *extra)
        one_line_error(code, err, *words)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_several_outputs_with_a_choice_and_a_dynamic_size_with_size(tmp_path):
    from edgelite.convert.loading import import_tensorflow, load_source

    import_tensorflow()
    source = load_source(small_cnn(tmp_path / "two.onnx", outputs=2), output="probs")
    assert source.outputs == "probabilities" and source.info["output"] == "probs"
    dynamic = load_source(small_cnn(tmp_path / "dyn.onnx", dynamic_size=True), size=(48, 40))
    assert tuple(dynamic.model.inputs[0].shape[1:]) == (48, 40, 3)
    x = np.random.default_rng(0).normal(size=(2, 48, 40, 3)).astype(np.float32)
    assert np.abs(np.asarray(dynamic.model.predict(x, verbose=0)) - dynamic.run(x)).max() < 1e-4


def test_the_runtime_tells_torch_onnx_by_producer_name(tmp_path):
    torch_made = open_backend(small_cnn(tmp_path / "t.onnx"))
    assert torch_made.producer() == "pytorch"
    assert open_backend(small_cnn(tmp_path / "k.onnx", producer="tf2onnx")).producer() == "tf2onnx"


def test_convert_takes_the_users_preprocessing_over_the_torch_convention(tmp_path):
    from edgelite.convert.loading import import_tensorflow, load_source
    from edgelite.convert.pipeline import foreign_spec

    import_tensorflow()
    path = small_cnn(tmp_path / "m.onnx")
    source = load_source(path)
    assumed = foreign_spec(path, source, None)
    assert (assumed.preset, assumed.resize, assumed.crop_fraction, assumed.antialias) == ("torch", "crop", 0.875, True)
    given = foreign_spec(path, source, {"resize": "stretch", "mean": [0.0], "std": [255.0]})
    assert given.resize == "stretch" and given.mean == (0.0,) * 3 and given.std == (255.0,) * 3


def test_a_rebuild_that_differs_from_the_source_is_refused(tmp_path):
    from edgelite.convert.loading import import_tensorflow, load_source
    from edgelite.convert.onnx_source import REBUILD_TOLERANCE, check_rebuild
    from edgelite.errors import EdgeliteError

    import_tensorflow()
    source = load_source(small_cnn(tmp_path / "m.onnx"))
    images = np.random.default_rng(1).normal(size=(8, SIZE, SIZE, 3)).astype(np.float32)
    assert check_rebuild(source, images, "m.onnx") < TOLERANCE
    right = source.run
    def moved(share):  # the source's outputs with `share` of each class's neighbour's added
        return lambda x: right(x) + share * np.roll(right(x), 1, axis=1)

    source.run = moved(0.02)  # a source whose outputs the rebuild no longer matches
    source.other = moved(0.0201)  # another float32 run of it agrees with it far better than the rebuild does
    with pytest.raises(EdgeliteError, match="differs from the source"):
        check_rebuild(source, images, "m.onnx")
    source.other = right  # another float32 run of the source is as far from it as the rebuild: the floor
    check_rebuild(source, images, "m.onnx")
    assert source.info["rebuild_floor"]["max_abs_diff"] > 2 * REBUILD_TOLERANCE


def tiny_v3(path, size=SIZE):
    """A torch module with the ops of MobileNetV3 and EfficientNet at a tiny size, exported by torch.onnx (its
    TorchScript exporter): hard-swish on feature maps and on the classifier's [N, C], squeeze-excite with
    hard-sigmoid and with sigmoid (SiLU), adaptive average pooling, flatten, Linear."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SqueezeExcite(nn.Module):
        def __init__(self, channels, gate):
            super().__init__()
            self.pool, self.reduce, self.expand = nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, 8, 1), nn.Conv2d(8, channels, 1)
            self.gate = gate

        def forward(self, x):
            return x * self.gate(self.expand(torch.relu(self.reduce(self.pool(x)))))

    def conv_bn(cin, cout, k, stride=1, groups=1, act=nn.Hardswish):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act()]

    torch.manual_seed(0)
    model = nn.Sequential(
        *conv_bn(3, 16, 3, 2), *conv_bn(16, 16, 3, groups=16), SqueezeExcite(16, nn.Hardsigmoid()),
        *conv_bn(16, 32, 1, act=nn.SiLU), *conv_bn(32, 32, 3, 2, groups=32, act=nn.SiLU), SqueezeExcite(32, nn.Sigmoid()),
        *conv_bn(32, 48, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
        nn.Linear(48, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        model[-1].weight.mul_(4)  # spread the logits: photos get different classes
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    return path


def test_hard_swish_and_squeeze_excite_stay_in_one_xnnpack_partition_in_int8(tmp_path):
    """MobileNetV3's and EfficientNet's ops in int8 TFLite: no HARD_SWISH (which XNNPACK leaves to the builtin
    kernels: a partition either side of each), no float island, no TRANSPOSE, one delegate partition."""
    from edgelite.benchmarks.tflite_ops import op_facts
    from edgelite.convert import convert

    images = photos()
    result = convert(tiny_v3(tmp_path / "v3.onnx"), tmp_path / "out", images[:40], images[40:80],
                     formats=["tflite-int8"], verbose=False)
    assert result.ok, result.artifacts[0].error
    facts = op_facts(result.artifacts[0].path)
    assert "HARD_SWISH" not in facts["ops"] and facts["transposes"] == 0, facts
    assert facts["dequantize"] == facts["quantize"] == facts["float_ops"] == 0, facts
    assert facts["partitions"] == 1, facts
    assert facts["ops"]["LOGISTIC"] >= 2 and facts["ops"]["DEPTHWISE_CONV_2D"] >= 2, facts


def test_vgg_and_resnet_heads_are_one_partition_with_no_pooling_left_to_float(tmp_path):
    """torchvision's VGG head (adaptive average pooling to the size the map already has, Flatten of the map, Linear
    ReLU Dropout Linear) and ResNet's stem (max pool padded after a ReLU) and residual Add, as torch.onnx writes
    them: the 1x1 average pool is no op at all, the Flatten no TRANSPOSE, int8 TFLite one XNNPACK partition."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    from edgelite.benchmarks.tflite_ops import op_facts
    from edgelite.convert import convert

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            self.block = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1))
            self.pool = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d((4, 4)))
            self.head = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 10))

        def forward(self, x):
            x = self.stem(x)
            return self.head(torch.flatten(self.pool(x + self.block(x)), 1))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.head[-1].weight.mul_(4)
    path = tmp_path / "heads.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=17)
    import onnx

    assert "AveragePool" in [n.op_type for n in onnx.load(str(path)).graph.node]  # what the test is about
    images = photos()
    result = convert(path, tmp_path / "out", images[:40], images[40:80], formats=["tflite-int8"], verbose=False)
    assert result.ok, result.artifacts[0].error
    facts = op_facts(result.artifacts[0].path)
    assert facts["transposes"] == 0 and facts["partitions"] == 1, facts
    assert facts["dequantize"] == facts["quantize"] == facts["float_ops"] == 0, facts
    assert "AVERAGE_POOL_2D" not in facts["ops"] and "DEPTHWISE_CONV_2D" not in facts["ops"], facts
    assert facts["ops"]["FULLY_CONNECTED"] == 2 and facts["ops"]["MAX_POOL_2D"] == 3, facts


def test_verify_measures_against_the_source_and_says_so(converted, capsys):
    _, out, _ = converted
    code, printed, err = run_cli(capsys, "verify", out / "small_cnn_int8.tflite", out / "small_cnn_int8.onnx")
    assert code == 0, err
    assert printed.count("agreement with the source (pytorch 2.13.0)") == 2 and "Keras" not in printed, printed


def test_bench_takes_the_onnx_source_as_its_reference(converted):
    """`bench --source model.onnx`: the reference row is onnxruntime on the source, and each artifact's
    agreement is measured against it (the fp32 ONNX export agrees on every photo)."""
    from edgelite.benchmarks.bench import bench

    source, out, _ = converted
    items = [(p, None) for p in photos()[:24]]
    document = bench([out / "small_cnn_fp32.onnx", out / "small_cnn_int8.tflite"], keras=source, items=items,
                     runs=3, warmup=1, threads=[1], cold_repeat=1, verbose=False)
    rows = {row["name"]: row for row in document["rows"]}
    assert rows["source (onnxruntime)"]["format"] == "source.onnx" and rows["source (onnxruntime)"]["p50_ms"] > 0
    fp32 = next(row for row in document["rows"] if row.get("path", "").endswith("small_cnn_fp32.onnx"))
    assert fp32["agreement"] == 1.0 and fp32.get("agreement_source") == "measured", fp32


def test_bench_source_flag_is_the_general_reference(monkeypatch, capsys):
    from edgelite.cli import bench as bench_cli

    seen = {}
    monkeypatch.setattr(bench_cli, "run", lambda args: seen.setdefault("reference", args.keras) and 0)
    code, _, _ = run_cli(capsys, "bench", "a.tflite", "--source", "model.onnx")
    assert code == 0 and seen["reference"] == "model.onnx"
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    printed = capsys.readouterr().out
    assert "--source" in printed and ".pt2" in printed



def test_large_logits_that_agree_to_float_rounding_pass_the_rebuild_check():
    """A random EfficientNet-B0 from torchvision has logits in the hundreds: float32 rounding alone moved its
    probabilities by 2.4e-4 (above the 1e-4 bar) while its logits agreed to 2.4e-6 of their scale. Such a rebuild
    is faithful; one off by 1 % of the logits is not, whatever their size."""
    from edgelite.convert.onnx_source import LOGIT_TOLERANCE, REBUILD_TOLERANCE, rebuild_error

    rng = np.random.default_rng(0)
    theirs = (rng.normal(size=(16, 1000)) * 60).astype(np.float32)
    theirs[:, :2] = 300.0 + rng.normal(size=(16, 2)).astype(np.float32) * 0.01  # two classes near a tie
    rounded = theirs.copy()
    rounded[:, 0] += 1e-3  # 3e-6 of the logits' scale, where two classes tie: the probabilities move 2.5e-4
    diff, relative = rebuild_error(rounded, theirs, probabilities=False)
    assert diff > REBUILD_TOLERANCE and relative < LOGIT_TOLERANCE  # what the probability bar alone refused
    wrong = theirs.copy()
    wrong[:, 0] += 3.0  # 1 % of the logits' scale
    diff, relative = rebuild_error(wrong, theirs, probabilities=False)
    assert diff > REBUILD_TOLERANCE and relative > LOGIT_TOLERANCE
    probabilities = np.exp(theirs - theirs.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    moved = probabilities.copy()
    moved[:, 0] += 2e-4
    moved[:, 1] -= 2e-4
    diff, relative = rebuild_error(moved, probabilities, probabilities=True)
    assert diff == relative > REBUILD_TOLERANCE
