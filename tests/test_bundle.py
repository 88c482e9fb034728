"""`edgelite bundle` and the proof that a bundle runs on linux/aarch64."""
import hashlib
import json
import shutil
import zipfile

import pytest

from edgelite import Classifier
from edgelite.bundle import BACKEND_PINS, DEVICE_PINS
from edgelite.classifier import sidecar_path
from edgelite.files import find_images

from conftest import run_cli, shared, skip_external


def test_bundle_holds_the_model_requirements_readme_and_wheel(artifact, tmp_path):
    out = tmp_path / "bundle"
    done = run_cli("bundle", artifact["tflite-int8"], "--out", out)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    wheel = next(n for n in names if n.endswith(".whl"))
    assert names == sorted(["README.md", "bundle.json", "model_int8.tflite", "model_int8.tflite.json",
                            "requirements.txt", wheel])
    requirements = [line for line in (out / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert requirements[0] == f"./{wheel}"
    assert set(requirements[1:]) == {f"{k}=={v}" for k, v in {**DEVICE_PINS, **BACKEND_PINS["litert"]}.items()}
    assert not any("tensorflow" in line or "onnx" in line for line in requirements)
    readme = (out / "README.md").read_text()
    assert "pip install -r requirements.txt" in readme and "edgelite predict model_int8.tflite" in readme
    assert "edgelite bench model_int8.tflite" in readme
    with zipfile.ZipFile(out / wheel) as whl:
        assert "edgelite/classifier.py" in whl.namelist()
    assert Classifier(out / "model_int8.tflite").metadata["format"] == "tflite-int8"
    again = run_cli("bundle", artifact["tflite-int8"], "--out", out)
    assert again.returncode == 2 and "--force" in again.stderr


def test_bundle_records_each_files_sha256_and_the_device_refuses_a_changed_one(artifact, digits, tmp_path):
    out = tmp_path / "b"
    assert run_cli("bundle", artifact["tflite-int8"], artifact["onnx-int8"], "--out", out, "--no-wheel").returncode == 0
    recorded = json.loads((out / "bundle.json").read_text())["sha256"]
    assert sorted(recorded) == sorted(p.name for p in out.iterdir() if p.name != "bundle.json")
    assert all(digest == hashlib.sha256((out / name).read_bytes()).hexdigest() for name, digest in recorded.items())
    photo = find_images([digits])[0]
    assert run_cli("tune", out, "--runs", "2", "--threads", "1").returncode == 0
    assert run_cli("predict", out, photo).returncode == 0 and run_cli("verify", out).returncode == 0
    chosen = out / json.loads((out / "tune.json").read_text())["choice"]["artifact"]
    for changed in (chosen, sidecar_path(chosen)):  # the file about to run, and what says how to run it
        original = changed.read_bytes()
        changed.write_bytes(original[:-100] + bytes([original[-100] ^ 1]) + original[-99:])
        for command in ("predict", "verify"):
            done = run_cli(command, out, photo) if command == "predict" else run_cli(command, out)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert f"{changed} changed since the bundle was made" in lines[0]
        changed.write_bytes(original)
    assert run_cli("predict", out, photo).returncode == 0


def test_onnx_bundle_pins_onnxruntime(artifact, tmp_path):
    done = run_cli("bundle", artifact["onnx-int8"], "--out", tmp_path / "b", "--no-wheel")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "b" / "requirements.txt").read_text()
    assert f"onnxruntime=={BACKEND_PINS['onnxruntime']['onnxruntime']}" in text and "ai-edge-litert" not in text
    assert "edgelite==" in text and not list((tmp_path / "b").glob("*.whl"))


def test_third_party_flags_travel_as_a_sidecar(tmp_path):
    model = shared("data/third-party-models/mobilenet_v2_1.0_224_quant.tflite")
    labels = shared("data/third-party-models/imagenet_labels.txt")
    done = run_cli("bundle", model, "--labels", labels, "--out", tmp_path / "b", "--no-wheel")
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((tmp_path / "b" / f"{model.name}.json").read_text())
    assert len(sidecar["labels"]) == 1001
    photo = shared("data/imagenet-sample/n02129604_tiger.JPEG")
    assert Classifier(tmp_path / "b" / model.name).predict(photo, top_k=1)[0].label.startswith("tiger")


@pytest.mark.slow
def test_bundle_classifies_the_same_on_emulated_aarch64(artifact, tmp_path):
    for tool in ("qemu-aarch64-static", "apt-get", "dpkg"):
        if not shutil.which(tool):
            skip_external(f"{tool} is not installed (apt-get install qemu-user-static)")
    from edgelite.benchmarks.aarch64 import prove

    photos = shared("data/imagenet-sample")
    images = sorted(photos.glob("*.JPEG"))[:3]
    for fmt in ("tflite-int8", "onnx-int8"):
        report = prove(artifact[fmt], tmp_path / "work", images)
        assert report["machine_emulated"] == "aarch64"
        assert report["no_tensorflow"]
        assert report["same_top1"], report["rows"]
        assert report["bench_exit"] == 0
