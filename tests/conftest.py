"""Shared fixtures: a tiny model trained and exported once per session, and ../shared."""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgelite.benchmarks.shared_data import shared_dir  # $EDGELITE_SHARED, else ../shared

ROOT = Path(__file__).resolve().parents[1]


SHARED_ABSENT = "shared data not available: "
# What a test may need that edgelite's extras do not install: with EDGELITE_REQUIRE_ALL=1 (.ci/run) a skip for any
# other reason fails the run, and one for missing shared data too when the shared folder exists.
EXTERNAL = "outside edgelite's extras: "


def shared(relative: str) -> Path:
    path = shared_dir() / relative
    if not path.exists():
        pytest.skip(f"{SHARED_ABSENT}{path}")
    return path


def skip_external(what: str):
    """Skip for something no extra of edgelite installs (a system tool, a browser)."""
    pytest.skip(EXTERNAL + what)


def allowed_skip(reason: str) -> bool:
    """Whether a skip is one CI accepts: something outside edgelite's extras, or shared data when there is none."""
    return reason.startswith(EXTERNAL) or (reason.startswith(SHARED_ABSENT) and not shared_dir().is_dir())


_unexpected_skips: list[str] = []


def _note_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if not allowed_skip(reason):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report):
    _note_skip(report)  # a module skipped whole (importorskip at its top)


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_sessionfinish(session):
    if os.environ.get("EDGELITE_REQUIRE_ALL") == "1" and _unexpected_skips and session.exitstatus in (0, 5):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("EDGELITE_REQUIRE_ALL") == "1" and _unexpected_skips:
        terminalreporter.section("skips that EDGELITE_REQUIRE_ALL=1 does not allow", red=True)
        terminalreporter.line("these need only the shared data and edgelite's own extras (pip install -e '.[dev]'):")
        for line in _unexpected_skips:
            terminalreporter.line(f"  {line}")


# Every child process a test starts runs under this prefix: EDGELITE_TEST_EMULATOR="qemu-x86_64-static -cpu
# Haswell" runs the children on the AVX2-without-VNNI code paths too (qemu-user does not follow execve).
EMULATOR = shlex.split(os.environ.get("EDGELITE_TEST_EMULATOR", ""))


def python_command(*args) -> list[str]:
    """A command line that starts this Python (under the test emulator, if one is set)."""
    return [*EMULATOR, sys.executable, *map(str, args)]


def run_python(*args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run this Python in a child process (under the test emulator, if one is set), output captured as text."""
    done = subprocess.run(python_command(*args), capture_output=True, text=True, timeout=timeout, **kwargs)
    done.stderr = without_emulator_warnings(done.stderr)
    return done


def without_emulator_warnings(text: str) -> str:
    """Output less the emulator's own lines (qemu: "... warning: TCG doesn't support requested feature")."""
    if not EMULATOR:
        return text
    prefix = f"{Path(EMULATOR[0]).name}: warning:"
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(prefix))


def run_cli(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the `edgelite` command in this process (`edgelite.cli.main`), its stdout and stderr captured:
    the code runs on the same CPU paths as the test itself."""
    from edgelite.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help, --version, a bad flag
        code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["edgelite", *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    from edgelite.train.datasets import write_digits

    return write_digits(tmp_path_factory.mktemp("digits") / "data", size=24)


@pytest.fixture(scope="session")
def trained(digits, tmp_path_factory):
    from edgelite.train.recipes import train_cnn

    return train_cnn(digits, tmp_path_factory.mktemp("trained"), size=24, epochs=3, augment=False, verbose=0)


@pytest.fixture(scope="session")
def converted(trained, tmp_path_factory):
    """The tiny CNN exported to every format, verified on its validation images."""
    from edgelite.convert import convert

    out = tmp_path_factory.mktemp("artifacts")
    calibration = [p for p, _ in trained.train][:100]
    check = [p for p, _ in trained.val][:120]
    return convert(trained.model_path, out, calibration, check, verbose=False)


@pytest.fixture(scope="session")
def rescued(trained, tmp_path_factory):
    """A tflite-int8 export below a gate no export can reach (101 %): rescued on every CPU, its per-layer
    report written beside it, still below the gate."""
    from edgelite.convert import convert

    calibration = [p for p, _ in trained.train][:20]
    check = [p for p, _ in trained.val][:60]
    result = convert(trained.model_path, tmp_path_factory.mktemp("rescued"), calibration, check,
                     formats=["tflite-int8"], thresholds={"int8": 1.01}, verbose=False)
    return result.artifacts[0]


@pytest.fixture
def first_measure_fails(monkeypatch) -> list:
    """The converter's first parity measurement (the plain export's) reads agreement 0, on every CPU alike, so
    the rescue runs; the later ones are real. Returns the list of measurements made."""
    from edgelite.convert import exporter

    real, calls = exporter.parity, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        measured = real(*args, **kwargs)
        return {**measured, "agreement": 0.0} if len(calls) == 1 else measured

    monkeypatch.setattr(exporter, "parity", first_fails)
    return calls


@pytest.fixture(scope="session")
def artifact(converted):
    """format name -> artifact path."""
    return {a.format: a.path for a in converted.artifacts}
