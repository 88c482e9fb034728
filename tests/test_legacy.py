"""A real user's legacy Keras-2 .h5 (MobileNet v1 0.25, ImageNet weights) through every format (slow: ~3 min).

Its int8 exports used to lose 3.7-9.5 points of top-1 (TFLite 71 %, ONNX 70 % agreement): rounding
the folded depthwise weights moves output means, which bias correction (convert/bias.py) takes out.
The model is weak (61 % top-1 on the held-back photos, half its answers below 0.5), so many of its
top-1s are near-ties that any int8 rounding flips: agreement stays near 89 %, under the default
95 % gate. The issue's bars that are not met yet are strict xfails, so meeting them is noticed.
"""
import pytest

from edgelite.benchmarks.labeled import accuracy, labeled_images
from edgelite.classifier import Classifier
from edgelite.convert import FORMATS, convert
from edgelite.files import split_images

from conftest import shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    pytest.importorskip("tf_keras")
    import legacy_mobilenet

    shared("data/third-party-models/mobilenet_v1_0.25_224_1_metadata_1.tflite")
    folder = tmp_path_factory.mktemp("legacy")
    model = legacy_mobilenet.build(folder / "mobilenet_v1_025.h5")
    items = labeled_images(shared("data/imagenet-sample"), None, 1001)
    calibration, check = split_images([p for p, _ in items])
    truth = dict(items)
    result = convert(model, folder / "out", calibration, check, formats=FORMATS, preprocess="mobilenet",
                     labels=shared("data/third-party-models/imagenet_labels.txt"), verbose=False)
    by = {a.format: a for a in result.artifacts}
    labels = [truth[p] for p in check]
    top1 = {fmt: accuracy(a.scores, labels)["top1"] for fmt, a in by.items()}
    return result, by, top1, accuracy(result.reference, labels)["top1"]


def test_every_format_is_written_and_int8_is_bias_corrected(legacy):
    result, by, top1, keras_top1 = legacy
    assert set(by) == set(FORMATS) and all(a.error is None and a.path.is_file() for a in by.values())
    assert 0.5 < keras_top1 < 0.7
    for fmt in ("tflite-int8", "onnx-int8"):
        assert Classifier(by[fmt].path).metadata["quantization"]["bias_correction"] >= 27  # 27 convs + the head
        assert by[fmt].parity["top1_agreement"] >= 0.85  # was 71 % / 70 % uncorrected


def test_onnx_int8_keeps_the_float_top1(legacy):
    _, _, top1, keras_top1 = legacy
    assert top1["onnx-fp32"] == pytest.approx(keras_top1)
    assert top1["onnx-int8"] >= keras_top1 - 0.015


@pytest.mark.xfail(strict=True, reason="issue 10: tflite-int8 still loses ~3 pt top-1 on this model")
def test_tflite_int8_keeps_the_float_top1(legacy):
    _, _, top1, keras_top1 = legacy
    assert top1["tflite-int8"] >= keras_top1 - 0.015


@pytest.mark.xfail(strict=True, reason="issue 10: int8 agreement ~89 % is under the default 95 % gate")
def test_default_conversion_passes_its_gates(legacy):
    result, *_ = legacy
    assert result.ok
