import json
import signal
import subprocess
import time

import pytest

from conftest import python_command, run_cli, shared

COMMANDS = ["demo", "convert", "verify", "inspect", "predict", "serve", "bench", "bundle", "tune", "train"]


def test_every_command_has_its_module_and_help():
    """Each command is one module of edgelite.cli owning its parser and its run function."""
    import importlib

    from edgelite import cli

    assert list(cli.COMMANDS) == COMMANDS
    listed = run_cli("--help").stdout
    for command in COMMANDS:
        module = importlib.import_module(f"edgelite.cli.{command}")
        assert callable(module.add) and callable(module.run)
        assert f"    {command} " in listed
        done = run_cli(command, "--help")
        assert done.returncode == 0 and f"usage: edgelite {command}" in done.stdout


def test_renamed_flag_keeps_its_old_spelling_hidden(monkeypatch):
    """`bench --reference` (0.1's name for --keras) still works for one release, and is not advertised."""
    from edgelite.cli import bench

    seen = {}
    monkeypatch.setattr(bench, "run", lambda args: seen.setdefault("keras", args.keras) and 0)
    assert run_cli("bench", "a.tflite", "--reference", "model.keras").returncode == 0
    assert seen["keras"] == "model.keras"
    assert "--reference" not in run_cli("bench", "--help").stdout


def test_predict_plain_and_json(artifact, trained):
    path, label = trained.val[0]
    done = run_cli("predict", artifact["tflite-int8"], path, "--top-k", "2")
    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout and "  1. " in done.stdout and "  3. " not in done.stdout
    done = run_cli("predict", artifact["onnx-int8"], path, path, "--json")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2 and len(lines[0]["predictions"]) == 5
    assert lines[0]["predictions"][0]["label"] == trained.labels[lines[0]["predictions"][0]["index"]]


def test_predict_reports_bad_files_and_goes_on(artifact, trained, tmp_path):
    bad = tmp_path / "text.jpg"
    bad.write_text("I am not a JPEG")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = trained.val[0][0]
    done = run_cli("predict", artifact["tflite-fp32"], bad, good, empty)
    assert done.returncode == 1
    assert str(good) in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgelite: error:")]
    assert len(errors) == 2 and "text.jpg" in errors[0] and "empty.png" in errors[1]
    assert "Traceback" not in done.stderr
    assert "2 of 3 images failed" in done.stderr


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "missing.tflite",
    lambda tmp: (tmp / "fake.tflite").write_bytes(b"junk") and tmp / "fake.tflite",
    lambda tmp: (tmp / "fake.onnx").write_bytes(b"junk") and tmp / "fake.onnx",
])
def test_predict_bad_model_is_one_line(make, tmp_path, trained):
    done = run_cli("predict", make(tmp_path), trained.val[0][0])
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("edgelite: error:")


def test_predict_third_party_model_needs_only_labels():
    model = shared("data/third-party-models/mobilenet_v2_1.0_224_quant.tflite")
    labels = shared("data/third-party-models/imagenet_labels.txt")
    photo = shared("data/imagenet-sample/n02129604_tiger.JPEG")
    done = run_cli("predict", model, photo, "--labels", labels, "--top-k", "1")
    assert done.returncode == 0, done.stderr
    assert "tiger, Panthera tigris" in done.stdout


def test_convert_cli_writes_and_refuses_to_overwrite(trained, digits, tmp_path):
    out = tmp_path / "out"
    args = ["convert", trained.model_path, "--calib", digits / "1", "--check", digits / "7",
            "--out", out, "--formats", "tflite-fp32", "onnx-fp32", "--calib-count", "5"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "tflite-fp32" in done.stdout and "ok" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "model_fp32.onnx", "model_fp32.onnx.json", "model_fp32.tflite", "model_fp32.tflite.json"]
    again = run_cli(*args)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert run_cli(*args, "--force").returncode == 0


def _convert_stopped(args: list, signum: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """`edgelite convert ARGS` in a child process, sent `signum` as soon as its staging folder exists."""
    out = args[args.index("--out") + 1]
    proc = subprocess.Popen(python_command("-m", "edgelite.cli", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not list(out.glob(".convert-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"convert ended before it was stopped: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigterm_cleans_up_like_ctrl_c_and_a_later_run_clears_what_a_killed_one_left(trained, digits, tmp_path):
    out = tmp_path / "out"
    args = ["convert", trained.model_path, "--calib", digits / "1", "--check", digits / "7", "--out", out,
            "--formats", "tflite-int8", "onnx-int8", "tflite-fp32", "--calib-count", "20"]
    done = _convert_stopped(args, signal.SIGTERM)
    assert done.returncode == 143 and done.stderr.strip().endswith("edgelite: terminated"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not list(out.glob(".convert-*"))
    killed = _convert_stopped([*args, "--force"], signal.SIGKILL)  # no clean-up possible: the staging stays
    assert killed.returncode == -signal.SIGKILL and list(out.glob(".convert-*"))
    again = run_cli(*args[:-5], "tflite-fp32", "--calib-count", "20", "--force")
    assert again.returncode == 0, again.stderr
    assert "removed 1 staging folder(s) left by an earlier run that was killed" in again.stderr
    assert not list(out.glob(".*"))


def test_convert_cli_empty_calibration_folder(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_cli("convert", trained.model_path, "--calib", tmp_path / "empty", "--out", tmp_path / "o")
    assert done.returncode == 2 and "no images" in done.stderr


def test_exit_codes_mean_one_thing_each(monkeypatch, capsys):
    from edgelite import cli
    from edgelite.cli import predict

    assert "exit codes: 0 all good; 1 some inputs failed" in run_cli("--help").stdout
    assert run_cli("predict").returncode == 2  # argparse: usage
    assert run_cli("predict", "no-such-model.tflite", "x.jpg").returncode == 2  # input error

    def bug(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(predict, "run", bug)
    assert cli.main(["predict", "m.tflite", "x.jpg"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("edgelite: internal error: ZeroDivisionError") and "Traceback" not in err


def test_camera_stream_and_no_camera(artifact, trained):
    import numpy as np
    from PIL import Image

    from edgelite import Classifier
    from edgelite.camera import classify_stream

    clf = Classifier(artifact["tflite-int8"])
    frame = np.asarray(Image.open(trained.val[0][0]).convert("RGB"))
    lines = []
    count = classify_stream(clf, iter([frame] * 50), top_k=1, limit=40, say=lines.append)
    assert count == 40 and len(lines) == 40
    assert lines[-1].split()[1] == "fps" and float(lines[-1].split()[0]) > 0
    assert lines[-1].split()[2] == clf.predict(frame_image := Image.fromarray(frame), top_k=1)[0].label
    done = run_cli("predict", artifact["tflite-int8"], "--camera", "/no/such/stream.mp4", "--frames", "3")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 2  # preprocessing line + one error
    assert "Traceback" not in done.stderr and frame_image.size
