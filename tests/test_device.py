"""The device side on its own: a Python that can import numpy, Pillow and one backend only."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PACKAGES = {
    "litert": ["numpy", "numpy.libs", "PIL", "pillow.libs", "ai_edge_litert", "flatbuffers"],
    "onnxruntime": ["numpy", "numpy.libs", "PIL", "pillow.libs", "onnxruntime"],
}


def device_python(tmp_path: Path, backend: str) -> Path:
    """A folder that holds only the device's packages and edgelite's runtime (as `edgelite`)."""
    import numpy

    site = Path(numpy.__file__).resolve().parents[1]
    root = tmp_path / f"device-{backend}"
    root.mkdir()
    for name in DEVICE_PACKAGES[backend]:
        if (site / name).exists():
            (root / name).symlink_to(site / name)
    for dist_info in site.glob("*.dist-info"):  # let packages find their own metadata
        if dist_info.name.split("-")[0].lower().replace("_", "") in {"numpy", "pillow", "aiedgelitert", "onnxruntime", "flatbuffers"}:
            (root / dist_info.name).symlink_to(dist_info)
    (root / "edgelite").symlink_to(ROOT / "runtime")
    return root


@pytest.mark.parametrize("backend,fmt", [("litert", "tflite-int8"), ("onnxruntime", "onnx-int8")])
def test_classifies_with_only_the_device_packages(backend, fmt, artifact, trained, tmp_path):
    root = device_python(tmp_path, backend)
    image, label = trained.val[0]
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(root)!r}]
        for blocked in ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "sklearn", "matplotlib", "tqdm"):
            try:
                __import__(blocked)
            except ImportError:
                continue
            raise SystemExit(f"{{blocked}} is importable: not a device environment")
        from edgelite.cli import main
        if main(["verify", {str(artifact[fmt])!r}]):  # the check set it carries, on this machine's kernels
            raise SystemExit("verify failed")
        sys.exit(main(["predict", {str(artifact[fmt])!r}, {str(image)!r}, "--top-k", "1"]))
    """)
    # -S: no site-packages at all, -I: no user site, no PYTHONPATH
    done = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{trained.labels[label]} ({label})" in done.stdout
    assert "agreement with Keras" in done.stdout and "-> ok" in done.stdout
