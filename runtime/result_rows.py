"""The rows of the results table that `edgelite bench` and `bench --ray` give each artifact: which artifact it is
(name, format, path, size), and how it agrees with a reference, parity.py's figures under the table's names."""
from __future__ import annotations

from pathlib import Path

# parity.py's figure -> the results table's column
AGREEMENT_COLUMNS = {"top1_agreement": "agreement", "top5_overlap": "top5_overlap", "max_abs_diff": "max_abs_diff"}
SELF_AGREEMENT = {"agreement": 1.0, "top5_overlap": 1.0, "max_abs_diff": 0.0}  # the reference's own row


def artifact_fields(path: Path, metadata: dict) -> dict:
    """Name, format, path and size of an artifact, by what its metadata says it is (else its file name)."""
    path = Path(path)
    return {"name": metadata.get("format") or path.name, "format": metadata.get("format", path.suffix[1:]),
            "path": str(path), "size_mb": size_mb(path)}


def agreement_fields(figures: dict) -> dict:
    """Agreement, top-5 overlap and max |dp| from parity figures (measured now, or stored at export), each where
    the figures have it."""
    return {column: figures[key] for key, column in AGREEMENT_COLUMNS.items() if key in figures}


def size_mb(path: Path) -> float:
    """The size of a file, or of everything in a folder (a SavedModel), in MB."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6
