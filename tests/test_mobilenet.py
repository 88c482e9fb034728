"""The converter's bar on the real MobileNetV2 and ImageNet photos (slow: about a minute)."""
import pytest

from edgelite import Classifier
from edgelite.convert import FORMATS, convert
from edgelite.convert.samples import split_images
from edgelite.labeled import accuracy, labeled_images

from conftest import shared

pytestmark = pytest.mark.slow


def test_all_formats_meet_the_bar(tmp_path):
    model = shared("data/models/mobilenet_v2_1.0_224_imagenet.keras")
    items = labeled_images(shared("data/imagenet-sample"), None, 1000)
    calibration, check = split_images([p for p, _ in items])
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

    # the same model exported to TFLite and ONNX gives the same top-1 on every sample photo
    photos = [p for p, _ in items]
    tflite = Classifier(by["tflite-fp32"].path)
    onnx = Classifier(by["onnx-fp32"].path)
    tops = [[r.predictions[0].index for r in clf.predict_batch(photos, top_k=1)] for clf in (tflite, onnx)]
    assert tops[0] == tops[1]


def test_google_model_through_the_cli_scores_like_its_paper():
    """`edgelite predict` on Google's uint8 MobileNetV2 over the ImageNet sample: >= 87 % top-1."""
    import json

    from conftest import run_cli

    model = shared("data/third-party-models/mobilenet_v2_1.0_224_quant.tflite")
    labels = shared("data/third-party-models/imagenet_labels.txt")
    photos = shared("data/imagenet-sample")
    wnids = (photos / "wnids.txt").read_text().split()
    done = run_cli("predict", model, photos, "--labels", labels, "--json", "--top-k", "1")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 250
    hits = [line["predictions"][0]["index"] == wnids.index(line["image"].rsplit("/", 1)[1].split("_")[0]) + 1
            for line in lines]
    assert sum(hits) / len(hits) >= 0.87
