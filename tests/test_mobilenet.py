"""The converter's bar on the real MobileNetV2 and ImageNet photos (slow: about a minute)."""
import pytest

from edgelite import Classifier
from edgelite.benchmarks.labeled import accuracy, labeled_images
from edgelite.convert import FORMATS, convert
from edgelite.files import split

from conftest import shared

pytestmark = pytest.mark.slow


def test_all_formats_meet_the_bar(tmp_path):
    model = shared("data/models/mobilenet_v2_1.0_224_imagenet.keras")
    items = labeled_images(shared("data/imagenet-sample"), None, 1000)
    first, held = split([(p, p.parent.name) for p, _ in items], 0.5)
    calibration, check = [p for p, _ in first], [p for p, _ in held]
    truth = dict(items)
    result = convert(model, tmp_path / "out", calibration, check, formats=FORMATS, verbose=False)
    assert result.ok, [(a.format, a.error, a.parity) for a in result.artifacts]
    by = {a.format: a for a in result.artifacts}
    labels = [truth[p] for p in check]
    keras_top1 = accuracy(result.reference, labels)["top1"]
    assert keras_top1 > 0.8
    assert by["tflite-int8"].parity["top1_agreement"] >= 0.97
    assert abs(accuracy(by["tflite-int8"].scores, labels)["top1"] - keras_top1) <= 0.01
    assert by["onnx-fp32"].parity["max_abs_diff"] <= 1e-4
    assert abs(accuracy(by["onnx-int8"].scores, labels)["top1"] - keras_top1) <= 0.015
    tiger = shared("data/imagenet-sample/n02129604_tiger.JPEG")
    for artifact in result.artifacts:  # self-describing: ImageNet names, no flags
        assert Classifier(artifact.path).predict(tiger, top_k=1)[0].label.startswith("tiger")
