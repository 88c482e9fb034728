"""Proof on linux/aarch64, by emulation on an x86-64 machine: bundle an artifact, install the
bundle's requirements as aarch64 wheels, and classify photos with an arm64 Python under
qemu-user; the top-1 must equal the x86 result.

    python -m edgelite.benchmarks.aarch64 MODEL [--labels FILE] [--images PHOTO...] [--work DIR]

Set-up it does (and a user can repeat by hand), all from Debian's and PyPI's registries:
1. `apt-get install qemu-user-static` (it asks you to, if missing);
2. Debian bookworm's arm64 `python3.11-minimal` and the libraries it needs, fetched with
   `apt-get download` against arm64 package lists kept in WORK/lists (the system's apt state is
   untouched) and unpacked with `dpkg -x` into WORK/root;
3. `edgelite bundle MODEL --out WORK/bundle` on this machine;
4. `pip install --target WORK/site --platform manylinux_2_28_aarch64 ... --only-binary=:all:
   --python-version 3.11 -r requirements.txt` from the bundle folder: the same pinned
   requirements a Pi installs, as aarch64 wheels;
5. `PYTHONPATH=WORK/site qemu-aarch64-static -L WORK/root WORK/root/usr/bin/python3.11 -m
   edgelite.cli predict ...` (and `bench`), compared with x86.
Emulated timings mean nothing; correctness and a clean install do.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgelite import Classifier
from edgelite.bundle import bundle
from edgelite.errors import EdgeliteError, guarded
from edgelite.files import write_json

ARM64_PACKAGES = [
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libgcc-s1", "libstdc++6",
    "libexpat1", "zlib1g", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libncursesw6",
    "libtinfo6", "libreadline8", "libuuid1", "libcrypt1", "libnsl2", "libtirpc3", "libgssapi-krb5-2",
    "libkrb5-3", "libk5crypto3", "libkrb5support0", "libcom-err2", "libkeyutils1", "libdb5.3", "libgomp1",
]
PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64"]


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise EdgeliteError(f"{' '.join(map(str, command[:4]))} ... failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done


def arm64_python(work: Path) -> Path:
    """Debian's arm64 Python 3.11 unpacked into work/root (cached)."""
    root = work / "root"
    python = root / "usr/bin/python3.11"
    if python.exists():
        return python
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise EdgeliteError("needs Debian's apt-get and dpkg to fetch an arm64 Python")
    lists, debs = work / "lists", work / "debs"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    debs.mkdir(parents=True, exist_ok=True)
    options = ["-oAPT::Architecture=arm64", "-oAPT::Architectures=arm64", f"-oDir::State::Lists={lists}"]
    run(["apt-get", *options, "update", "-qq"])
    run(["apt-get", *options, "download", *ARM64_PACKAGES], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(root)])
    return python


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a .tflite or .onnx artifact")
    parser.add_argument("--labels", help="labels file, for a model that carries none")
    parser.add_argument("--images", nargs="+", type=Path, help="photos to classify (default: 5 shared samples)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "edgelite-aarch64")
    args = parser.parse_args(argv)
    return guarded(lambda: 0 if prove(args.model, args.work, args.images, args.labels)["same_top1"] else 1)


def prove(model: Path, work: Path, images: list[Path] | None = None, labels=None) -> dict:
    if not Path(model).is_file():
        raise EdgeliteError(f"no such model file: {model}")  # before anything is fetched or emulated
    qemu = shutil.which("qemu-aarch64-static")
    if not qemu:
        raise EdgeliteError("qemu-aarch64-static is missing: apt-get install qemu-user-static")
    if images is None:
        from .shared_data import DEFAULT_IMAGES

        images = sorted(DEFAULT_IMAGES.glob("*.JPEG"))[::50][:5]
    work.mkdir(parents=True, exist_ok=True)
    timings = {}

    started = time.perf_counter()
    python = arm64_python(work)
    timings["arm64_python_s"] = time.perf_counter() - started

    started = time.perf_counter()
    shutil.rmtree(work / "bundle", ignore_errors=True)
    files = bundle(model, work / "bundle", labels=labels)
    timings["bundle_s"] = time.perf_counter() - started

    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    started = time.perf_counter()
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), *platforms, "--only-binary=:all:",
         "--python-version", "3.11", "--implementation", "cp", "-r", "requirements.txt"], cwd=work / "bundle")
    timings["install_s"] = time.perf_counter() - started
    installed = sorted(p.name for p in site.glob("*.dist-info"))

    bundled = Path(files["models"][0])
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site)}
    emulated = [qemu, "-L", str(python.parents[2]), str(python), "-m", "edgelite.cli"]
    started = time.perf_counter()
    done = run([*emulated, "predict", str(bundled), *map(str, images), "--json", "--top-k", "1"], env=env)
    timings["emulated_predict_s"] = time.perf_counter() - started
    arm = {Path(r["image"]).name: r["predictions"][0] for r in map(json.loads, done.stdout.splitlines())}
    verified = subprocess.run([*emulated, "verify", str(bundled), "--json"], capture_output=True, text=True, env=env)
    check = json.loads(verified.stdout) if verified.stdout.strip() else {"error": verified.stderr.strip()[-500:]}
    machine = run([*emulated[:-2], "-c", "import platform; print(platform.machine())"], env=env).stdout.strip()
    no_tensorflow = run([*emulated[:-2], "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None)"],
                        env=env).stdout.strip() == "True"

    started = time.perf_counter()
    bench_done = subprocess.run([*emulated, "bench", str(bundled), "--quick", "--runs", "3", "--warmup", "1",
                                 "--data", str(images[0].parent), "--limit", "3"], capture_output=True, text=True, env=env)
    timings["emulated_bench_s"] = time.perf_counter() - started

    x86 = Classifier(bundled)
    rows, same = [], True
    for image in images:
        ours = x86.predict(image, top_k=1)[0]
        theirs = arm.get(image.name)
        match = theirs is not None and theirs["index"] == ours.index
        same &= match
        rows.append({"image": image.name, "x86": ours.label, "aarch64": theirs and theirs["label"],
                     "x86_score": ours.score, "aarch64_score": theirs and theirs["score"], "same": match})
    if "same_top1_as_export" in check:  # the check set: aarch64 kernels against the exporting machine's
        same &= check["same_top1_as_export"] == 1.0
    report = {"model": str(model), "machine_emulated": machine, "no_tensorflow": no_tensorflow,
              "installed": installed, "timings": timings, "rows": rows, "same_top1": same, "verify": check,
              "bench_exit": bench_done.returncode, "bench_output": bench_done.stdout[-2000:]}
    write_json(work / "aarch64.json", report)
    print(f"emulated {machine} Python 3.11; requirements installed as aarch64 wheels in {timings['install_s']:.0f}s: "
          f"{', '.join(installed)}")
    for r in rows:
        mark = "same" if r["same"] else "DIFFERENT"
        print(f"  {r['image']:40s} x86: {r['x86'][:30]:30s} aarch64: {str(r['aarch64'])[:30]:30s} {mark}")
    if "same_top1_as_export" in check:
        print(f"verify on aarch64: agreement with Keras {check['agreement']:.1%} (top-1 {check['top1_agreement']:.1%}) "
              f"on {check['images']} check "
              f"images; same top-1 as the exporting machine on {check['same_top1_as_export']:.1%}, max |dp| "
              f"{check['max_abs_diff_from_export']:.4f} ({check['kernels']['backend']}); exit {verified.returncode}")
    else:
        print(f"verify on aarch64: {check.get('error', 'no check set')}")
    print(f"TensorFlow importable on the emulated device: {not no_tensorflow}; emulated bench exit {bench_done.returncode}")
    print(bench_done.stdout.strip())
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print("top-1 identical on aarch64 and x86" if same else "top-1 DIFFERS between aarch64 and x86")
    return report


if __name__ == "__main__":
    sys.exit(main())
