"""Shared fixtures: a tiny model trained and exported once per session, and ../shared."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's shared data: $EDGELITE_SHARED, else ../shared beside the repository."""
    return Path(os.environ.get("EDGELITE_SHARED", ROOT.parent / "shared"))


def shared(relative: str) -> Path:
    path = shared_dir() / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `edgelite` command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "edgelite.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


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
def artifact(converted):
    """format name -> artifact path."""
    return {a.format: a.path for a in converted.artifacts}
