"""PyTorch in: a .pt2, a TorchScript .pt and an nn.Module converted with torch itself as the reference; a bare
state_dict, a file with no input size and torch missing are one line each."""
import json
import sys

import numpy as np
import pytest

from edgelite import Classifier, EdgeliteError, checkset

from conftest import shared
from test_onnx_source import one_line_error, photos, run_cli

torch = pytest.importorskip("torch")  # [dev] installs it: EDGELITE_REQUIRE_ALL fails a run that skips here
nn = torch.nn


class SmallNet(nn.Module):
    """Two conv blocks as torchvision writes them: stride-2 conv padded on both sides, BatchNorm, ReLU6,
    depthwise, max pool, 1x1 conv, adaptive average pool, flatten, linear (logits)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(16, 32, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():
        model.classifier.weight.mul_(8)  # spread logits: photos get different classes
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2)
                module.running_mean.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def saved(net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("torch-files")
    example = torch.zeros(1, 3, 64, 64)
    torch.export.save(torch.export.export(net, (example,)), str(folder / "net.pt2"))
    torch.jit.save(torch.jit.script(net), str(folder / "net.pt"))
    torch.save(net.state_dict(), str(folder / "weights.pt"))
    return folder


def torch_probabilities(net, images):
    with torch.no_grad():
        logits = net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_a_module_from_python_converts_with_torch_as_the_reference(net, tmp_path):
    from edgelite.convert import convert

    images = photos()
    result = convert(net, tmp_path / "out", images[:60], images[60:120], formats=["tflite-int8", "onnx-fp32"],
                     size=(64, 64), verbose=False)
    assert result.ok, [(a.format, a.error, a.parity) for a in result.artifacts]
    meta = json.loads((tmp_path / "out" / "SmallNet_int8.tflite.json").read_text())
    assert meta["source"]["producer"].startswith("torch ") and "nn.Module" in meta["source"]["producer"]
    assert meta["preprocess"]["preset"] == "torch"
    clf = Classifier(tmp_path / "out" / "SmallNet_int8.tflite")
    blobs, reference, _ = checkset.unpack(clf.backend.check_set())
    mean, std = np.array(clf.spec.mean, np.float32), np.array(clf.spec.std, np.float32)
    pixels = np.stack([(checkset.decode(b).astype(np.float32) - mean) / std for b in blobs])
    np.testing.assert_allclose(reference, torch_probabilities(net, pixels), atol=1e-5)  # torch's, not Keras'


def test_pt2_and_torchscript_convert_from_the_cli(saved, capsys):
    calib = shared("data/imagenet-sample")
    for name, extra in (("net.pt2", []), ("net.pt", ["--size", "64", "64"])):
        out = saved / f"out-{name}"
        code, printed, err = run_cli(capsys, "convert", saved / name, "--calib", calib, "--out", out,
                                     "--calib-count", "60", "--check-count", "60",
                                     "--formats", "tflite-int8", "onnx-int8", *extra)
        assert code == 0, err
        assert "assumed: torch" in err and "64x64 RGB, centre crop 0.875, bilinear with antialias, torch" in err
        stem = name.split(".")[0]
        for artifact in (f"{stem}_int8.tflite", f"{stem}_int8.onnx"):
            code, printed, err = run_cli(capsys, "predict", out / artifact, photos()[0], "--json")
            assert code == 0, err


def test_torch_bad_inputs_are_one_line(saved, tmp_path, capsys):
    calib = shared("data/imagenet-sample")
    not_zip = tmp_path / "junk.pt"
    not_zip.write_bytes(b"junk" * 100)
    for model, extra, words in [
        (saved / "weights.pt", [], ["a bare state_dict", "torch.export.save", "torch.jit.save"]),
        (saved / "net.pt", [], ["does not say its input size", "--size H W"]),
        (not_zip, [], ["not a PyTorch file"]),
    ]:
        code, _, err = run_cli(capsys, "convert", model, "--calib", calib, "--out", tmp_path / "out", *extra)
        one_line_error(code, err, *words)


def test_without_torch_one_line_names_the_extra(saved, monkeypatch):
    from edgelite.convert.loading import load_source

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(EdgeliteError, match=r"needs torch, which is not installed: pip install 'edgelite\[torch\]'"):
        load_source(saved / "net.pt2")
