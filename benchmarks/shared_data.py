"""Where the project's shared data is (the measuring programs' models and photos, the tests'): $EDGELITE_SHARED,
else `shared/` beside the repository."""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    return Path(os.environ.get("EDGELITE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


SHARED = shared_dir()
