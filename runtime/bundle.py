"""`edgelite bundle`: one folder to copy to the device, with the model and what installs it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__
from .classifier import Classifier, sidecar_path
from .errors import EdgeliteError
from .files import prepare_out_dir, write_atomic, write_json

# Versions checked to publish cp311 linux/aarch64 wheels (manylinux_2_27/2_28, which 64-bit
# Raspberry Pi OS bookworm's glibc 2.36 accepts) and to classify correctly under emulation
# (benchmarks/aarch64.py). Newer aarch64 wheels crashed there (qemu 7.2, any -cpu):
# ai-edge-litert 2.3.0 in allocate_tensors, onnxruntime 1.28-1.31 on creating a session; the
# newest that worked were ai-edge-litert 1.4.0 and onnxruntime 1.27.0. Whether the newer ones
# fail on real hardware too is not known here: the device gets what was proven.
DEVICE_PINS = {"numpy": "2.4.6", "pillow": "13.0.0", "tqdm": "4.70.1"}
BACKEND_PINS = {"litert": {"ai-edge-litert": "1.4.0"}, "onnxruntime": {"onnxruntime": "1.27.0", "onnx": "1.23.2"}}


def build_wheel(out_dir: Path) -> Path:
    """A wheel of edgelite, built from a clean copy of the source checkout it runs from (so the
    checkout gets no build/ folder and the wheel no stale files)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise EdgeliteError("edgelite is not running from a source checkout, so no wheel can be built: "
                            "use --no-wheel and install edgelite on the device from your package index")
    with tempfile.TemporaryDirectory() as tmp:
        source, built = Path(tmp) / "source", Path(tmp) / "wheel"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("pyproject.toml", "README.md"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, source / name)
        for package in _package_folders(root / "pyproject.toml"):
            shutil.copytree(root / package, source / package, ignore=ignore)
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(built), str(source)],
                              capture_output=True, text=True)
        wheels = list(built.glob("edgelite-*.whl"))
        if done.returncode or not wheels:
            raise EdgeliteError(f"building the edgelite wheel failed: {done.stderr.strip()[-300:]}")
        target = out_dir / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def _package_folders(pyproject: Path) -> list[str]:
    """The source folders of edgelite's packages, as pyproject.toml's package-dir maps them."""
    import tomllib

    return sorted(set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"].values()))


def bundle(model: str | Path, out: str | Path, labels=None, preprocess=None, wheel: bool = True,
           force: bool = False) -> dict:
    """Write model (+ metadata), requirements.txt, README.md and, by default, an edgelite wheel."""
    model = Path(model)
    clf = Classifier(model, labels=labels, preprocess=preprocess)  # proves it loads and is configured
    out = prepare_out_dir(out, force)
    files = {"model": out / model.name}
    shutil.copyfile(model, files["model"])
    if labels is not None or preprocess is not None or not clf.metadata:
        # a model that carries nothing: its flags travel as a sidecar, so the device needs none
        document = {**clf.metadata, "labels": clf.labels, "preprocess": clf.spec.to_dict()}
        files["metadata"] = write_json(sidecar_path(files["model"]), document, force)
    elif sidecar_path(model).is_file():
        files["metadata"] = out / sidecar_path(model).name
        shutil.copyfile(sidecar_path(model), files["metadata"])
    requirement = f"edgelite=={__version__}"
    if wheel:
        files["wheel"] = build_wheel(out)
        requirement = f"./{files['wheel'].name}"
    pins = {**DEVICE_PINS, **BACKEND_PINS[clf.backend.name]}
    requirements = [f"# edgelite on the device, for {model.name} ({clf.backend.name}); "
                    "run pip from this folder", requirement, *(f"{name}=={version}" for name, version in pins.items())]
    files["requirements"] = write_atomic(out / "requirements.txt", "\n".join(requirements) + "\n", force)
    files["readme"] = write_atomic(out / "README.md", _readme(model.name, clf), force)
    return {k: str(v) for k, v in files.items()}


def _readme(name: str, clf: Classifier) -> str:
    parity = clf.metadata.get("parity", {})
    checked = (f"At export it agreed with its Keras model on {parity['top1_agreement']:.1%} of "
               f"{parity['images']} held-back images (top-1).\n" if "top1_agreement" in parity else "")
    return f"""# {name}

{clf.output.shape[-1]} classes, input {clf.spec.size[0]}x{clf.spec.size[1]} ({clf.spec.preset} preprocessing),
run by {clf.backend.name}. {checked}
On the device (64-bit Raspberry Pi OS or any linux/aarch64 or x86-64 with Python 3.11+), in this folder:

```bash
python3 -m venv ~/edgelite && ~/edgelite/bin/pip install -r requirements.txt
~/edgelite/bin/edgelite predict {name} photo.jpg            # files, folders, globs; --json, --annotate DIR
~/edgelite/bin/edgelite bench {name} --data photos/ --quick  # latency, size, accuracy on labeled photos
```

No TensorFlow is installed or needed: numpy, Pillow and one inference backend.
"""
