"""`edgelite bundle`: one folder to copy to the device, with the artifacts that passed and what installs them."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from . import __version__
from .classifier import Classifier, sidecar_path
from .errors import EdgeliteError
from .files import find_artifacts, prepare_out_dir, read_json, sha256, write_atomic, write_json

# Versions checked to publish cp311 linux/aarch64 wheels (manylinux_2_27/2_28, which 64-bit
# Raspberry Pi OS bookworm's glibc 2.36 accepts) and to classify correctly under emulation
# (benchmarks/aarch64.py). Newer aarch64 wheels crashed there (qemu 7.2, any -cpu):
# ai-edge-litert 2.3.0 in allocate_tensors, onnxruntime 1.28-1.31 on creating a session; the
# newest that worked were ai-edge-litert 1.4.0 and onnxruntime 1.27.0. Whether the newer ones
# fail on real hardware too is not known here: the device gets what was proven.
DEVICE_PINS = {"numpy": "2.4.6", "pillow": "13.0.0", "tqdm": "4.70.1"}
BACKEND_PINS = {"litert": {"ai-edge-litert": "1.4.0", "flatbuffers": "25.12.19"},  # flatbuffers: pure Python
                "onnxruntime": {"onnxruntime": "1.27.0"}}  # int8 re-encoding needs no onnx (runtime/int8.py)


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


MANIFEST = "bundle.json"


def bundle(artifacts: str | Path | Sequence[str | Path], out: str | Path, labels=None, preprocess=None,
           wheel: bool = True, force: bool = False) -> dict:
    """Write every artifact that passed its gate (files, or the .tflite/.onnx files in folders such as a
    convert output), each with its metadata, and bundle.json, requirements.txt covering every backend they
    need, README.md and, by default, an edgelite wheel. The gate is the one recorded at export (parity
    agreement against min_agreement); a model with no recorded parity (a third-party one) is kept as given.
    Returns {kind: path or [paths]} of what was written, and what was left out under "excluded"."""
    paths = find_artifacts([artifacts] if isinstance(artifacts, (str, Path)) else artifacts)
    kept, excluded = [], []
    for path in paths:
        clf = Classifier(path, labels=labels, preprocess=preprocess)  # proves it loads and is configured
        reason = _below_gate(clf.metadata.get("parity", {}))
        if reason:
            excluded.append({"artifact": str(path), "reason": reason})
        else:
            kept.append((path, clf))
    if not kept:
        raise EdgeliteError("no artifact passed its gate: " + "; ".join(f"{Path(e['artifact']).name} {e['reason']}"
                                                                      for e in excluded))
    names = [path.name for path, _ in kept]
    if len(set(names)) < len(names):
        raise EdgeliteError(f"two artifacts share a file name: {', '.join(sorted(n for n in names if names.count(n) > 1))}")
    out = prepare_out_dir(out, force)
    files: dict = {"models": [], "metadata": []}
    entries = []
    for path, clf in kept:
        target = out / path.name
        shutil.copyfile(path, target)
        files["models"].append(target)
        if labels is not None or preprocess is not None or not clf.metadata:
            # a model that carries nothing: its flags travel as a sidecar, so the device needs none
            document = {**clf.metadata, "labels": clf.labels, "preprocess": clf.spec.to_dict()}
            files["metadata"].append(write_json(sidecar_path(target), document, force))
        elif sidecar_path(path).is_file():
            files["metadata"].append(out / sidecar_path(path).name)
            shutil.copyfile(sidecar_path(path), files["metadata"][-1])
        entries.append(_entry(target, clf))
    requirement = f"edgelite=={__version__}"
    if wheel:
        files["wheel"] = build_wheel(out)
        requirement = f"./{files['wheel'].name}"
    backends = sorted({clf.backend.name for _, clf in kept})
    pins = {**DEVICE_PINS, **{k: v for name in backends for k, v in BACKEND_PINS[name].items()}}
    requirements = [f"# edgelite on the device, for {names[0] if len(names) == 1 else f'{len(names)} artifacts'} ({', '.join(backends)}); "
                    "run pip from this folder", requirement, *(f"{name}=={version}" for name, version in pins.items())]
    files["requirements"] = write_atomic(out / "requirements.txt", "\n".join(requirements) + "\n", force)
    files["readme"] = write_atomic(out / "README.md", _readme(entries, kept[0][1]), force)
    bundled = [p for v in files.values() for p in (v if isinstance(v, list) else [v])]
    manifest = {"schema": 1, "edgelite": __version__, "artifacts": entries, "excluded": excluded,
                "backends": backends, "requirements": requirements[1:],
                "sha256": {path.name: sha256(path) for path in sorted(bundled)}}
    files["manifest"] = write_json(out / MANIFEST, manifest, force)
    written = {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in files.items() if v}
    return {**written, "excluded": excluded}


def read_manifest(bundle_dir: str | Path) -> dict:
    """A bundle's bundle.json."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise EdgeliteError(f"{bundle_dir} is not a bundle (no {MANIFEST}): make one with edgelite bundle")
    return read_json(path)


def check_file(bundle_dir: str | Path, name: str) -> Path:
    """The bundle's file `name`, checked (with its metadata sidecar) against the sha256 bundle.json records:
    a file that changed since the bundle was made (a bad copy, a damaged card) is one clear error naming it,
    before anything runs it. Bundles made before digests were recorded are taken as they are."""
    bundle_dir = Path(bundle_dir)
    recorded = read_manifest(bundle_dir).get("sha256") or {}
    for file in (name, sidecar_path(name).name):
        expected = recorded.get(file)
        if expected is None:
            continue
        path = bundle_dir / file
        try:
            found = sha256(path)
        except OSError as exc:
            raise EdgeliteError(f"{path}: cannot read it ({exc.strerror or exc}): copy the bundle again") from None
        if found != expected:
            raise EdgeliteError(f"{path} changed since the bundle was made (sha256 {found[:12]}..., {MANIFEST} "
                                f"records {expected[:12]}...): copy the bundle again")
    return bundle_dir / name


def _below_gate(parity: dict) -> str | None:
    """Why an artifact failed the gate recorded at its export (None: it passed, or records no gate)."""
    agreement, gate = parity.get("agreement"), parity.get("min_agreement")
    if agreement is None or gate is None or agreement >= gate:
        return None
    return f"below its gate at export (agreement {agreement:.1%} < {gate:.1%})"


def _entry(path: Path, clf: Classifier) -> dict:
    """An artifact's line in bundle.json: what it is, its size, and the agreement recorded at export."""
    parity = clf.metadata.get("parity", {})
    return {"file": path.name, "format": clf.metadata.get("format", path.suffix[1:]), "backend": clf.backend.name,
            "bytes": path.stat().st_size, "check_set": clf.backend.check_set() is not None,
            **{key: parity.get(key) for key in ("agreement", "top1_agreement", "min_agreement", "images")},
            "exported_on": parity.get("kernels")}


def _readme(entries: list[dict], clf: Classifier) -> str:
    name = entries[0]["file"]
    listed = "\n".join(f"- `{e['file']}` ({e['format']}, {e['backend']}, {e['bytes'] / 1e6:.1f} MB"
                       + (f", agreed with Keras on {e['agreement']:.1%} of {e['images']} held-back images at export"
                          if e["agreement"] is not None else ", no recorded agreement") + ")" for e in entries)
    return f"""# {name if len(entries) == 1 else f"{len(entries)} artifacts of one model"}

{clf.output.shape[-1]} classes, input {clf.spec.size[0]}x{clf.spec.size[1]} ({clf.spec.preset} preprocessing).

{listed}

On the device (64-bit Raspberry Pi OS or any linux/aarch64 or x86-64 with Python 3.11+), in this folder:

```bash
python3 -m venv ~/edgelite && ~/edgelite/bin/pip install -r requirements.txt
~/edgelite/bin/edgelite tune .                     # verify each artifact here, time them, record the fastest
~/edgelite/bin/edgelite predict . photo.jpg        # the recorded choice; files, folders, globs; --json
~/edgelite/bin/edgelite predict {name} photo.jpg
~/edgelite/bin/edgelite bench {name} --data photos/ --quick  # latency, size, accuracy on labeled photos
```

`predict`, `serve` and `bench` given this folder run the artifact `tune` chose (tune.json), and tune
first when there is no choice yet or it was made on another CPU or other package versions.
No TensorFlow is installed or needed: numpy, Pillow and the inference backends listed above.
"""
