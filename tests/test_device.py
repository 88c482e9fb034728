"""The device side on its own: exactly what `pip install edgelite[tflite]` / `edgelite[onnx]` installs, no
TensorFlow; and the device package closed (runtime/ imports no workstation side, and has no import cycle)."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

import imports
from conftest import python_command
from device_env import device_root

BLOCKED = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "sklearn", "matplotlib", "pytest", "ray")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    from edgelite.bundle import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


def device_python(root: Path, code: str, timeout: float = 300, popen: bool = False):
    """Run `code` in a Python that sees the standard library and `root` only (-S -I: no site-packages,
    no user site, no PYTHONPATH), under the test emulator if one is set."""
    prefix = f"import sys\nsys.path[:0] = [{str(root)!r}]\n"
    command = python_command("-S", "-I", "-c", prefix + textwrap.dedent(code))
    env = {"PATH": os.environ.get("PATH", "")}
    if popen:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_runtime_imports_no_workstation_side_and_has_no_cycle():
    for name, path in imports.modules().items():
        workstation = sorted(m for m in imports.imports(path) if m.startswith(imports.WORKSTATION))
        assert not workstation, f"{path.name} imports {workstation}"
    assert imports.cycle(imports.graph()) is None


def test_the_cycle_finder_finds_one():
    assert imports.cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert imports.cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("extras,fmt", [(("tflite",), "tflite-int8"), (("onnx",), "onnx-int8")])
def test_device_commands_with_only_the_device_packages(extras, fmt, wheel, artifact, rescued, trained, tmp_path):
    """In a device environment: every runtime module imports, and predict, verify, inspect (a rescued
    artifact too), bench and serve run on artifacts from convert."""
    root = device_root(tmp_path / "site", wheel, extras)
    model, image = artifact[fmt], trained.val[0][0]
    data = tmp_path / "data"
    for path, label in trained.val[:12]:
        (data / trained.labels[label]).mkdir(parents=True, exist_ok=True)
        (data / trained.labels[label] / path.name).symlink_to(path)
    runs = [["verify", model], ["predict", model, image, "--top-k", "1"], ["inspect", model],
            ["bench", model, "--data", data, "--quick", "--runs", "3", "--warmup", "1"]]
    if fmt.startswith("tflite"):
        runs.append(["inspect", rescued.path])
    done = device_python(root, f"""
        import contextlib, importlib, io, json, pkgutil
        for blocked in {BLOCKED!r}:
            try:
                __import__(blocked)
            except ImportError:
                continue
            raise SystemExit(f"{{blocked}} is importable: not a device environment")
        import edgelite
        for module in pkgutil.iter_modules(edgelite.__path__):
            if not module.ispkg:
                importlib.import_module(f"edgelite.{{module.name}}")
        from edgelite.cli import main
        results = []
        for argv in {[[str(a) for a in r] for r in runs]!r}:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
            results.append({{"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()}})
        workstation = sorted(m for m in sys.modules if m.startswith(("edgelite.convert", "edgelite.train")))
        print(json.dumps({{"results": results, "workstation": workstation,
                           "tensorflow": [m for m in sys.modules if m.startswith("tensorflow")]}}))
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["workstation"] == [] and found["tensorflow"] == []
    results = {r["argv"][0] + ("-rescued" if str(rescued.path) in r["argv"] else ""): r for r in found["results"]}
    for name, r in results.items():
        assert r["code"] == 0, (name, r["err"][-2000:])
    assert "agreement with Keras" in results["verify"]["out"] and "-> ok" in results["verify"]["out"]
    predicted = results["predict"]["out"]
    assert str(image) in predicted and f"({trained.val[0][1]})" in predicted.splitlines()[1]
    assert f"{fmt}" in results["inspect"]["out"] and "parity at export" in results["inspect"]["out"]
    assert "top-1" in results["bench"]["out"] or "top1" in results["bench"]["out"]
    if fmt.startswith("tflite"):
        rescued_out = results["inspect-rescued"]["out"]
        assert "rescue:" in rescued_out and "rmse_scale" in rescued_out  # the report, read on the device


def test_serve_with_only_the_device_packages(wheel, artifact, trained, tmp_path):
    import http.client
    import signal

    root = device_root(tmp_path / "site", wheel, ("tflite",))
    process = device_python(root, f"""
        from edgelite.cli import main
        sys.exit(main(["serve", {str(artifact["tflite-int8"])!r}, "--port", "0"]))
    """, popen=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("edgelite serve: http://127.0.0.1:"), (line, process.stderr.read())
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/classify", trained.val[0][0].read_bytes())
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and answer["predictions"][0]["index"] == trained.val[0][1]
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_device_environment_holds_exactly_the_extras(wheel, tmp_path):
    """What the environment holds is what pip resolves for the extras: the backend and what it needs."""
    litert = device_root(tmp_path / "litert", wheel, ("tflite",))
    onnx = device_root(tmp_path / "onnx", wheel, ("onnx",))
    names = lambda root: {p.name.split("-")[0].lower() for p in root.glob("*.dist-info")}
    assert {"ai_edge_litert", "flatbuffers", "numpy", "pillow", "tqdm", "edgelite"} <= names(litert)
    assert not names(litert) & {"onnxruntime", "onnx", "tensorflow", "matplotlib"}
    assert {"onnxruntime", "numpy", "pillow", "tqdm", "edgelite"} <= names(onnx)
    assert not names(onnx) & {"ai_edge_litert", "onnx", "tensorflow", "matplotlib"}  # int8 re-encoding needs no onnx
