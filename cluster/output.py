"""Results files, one row per input, by suffix: .parquet, .csv (lists as JSON text), .jsonl.

Written to a hidden `.NAME.part` beside the target as rows arrive and renamed into place when the run ends,
interrupted or not, so the target is always a whole, readable file. `--resume` reads the paths already in
the target, copies its rows into the new file first and skips those paths.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pyarrow as pa

from edgelite.errors import EdgeliteError, one_line

from .workers import ROWS

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
LISTS = ("indices", "labels", "scores")


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise EdgeliteError(f"{path}: the results file must end in .parquet, .csv or .jsonl")
    return FORMATS[suffix]


def read_results(path: str | Path) -> pa.Table:
    """A results file (any of the formats) as a table with the ROWS schema."""
    path = Path(path)
    kind = output_format(path)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).select(ROWS.names).cast(ROWS)
        text = path.read_text(encoding="utf-8")
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
        raise EdgeliteError(f"cannot read results file {path}: {one_line(exc)}") from None
    try:
        if kind == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = [{key: _from_cell(key, value) for key, value in row.items()}
                    for row in csv.DictReader(io.StringIO(text, newline=""))]
        return pa.Table.from_pylist([{name: row.get(name) for name in ROWS.names} for row in rows], schema=ROWS)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise EdgeliteError(f"cannot read results file {path}: {one_line(exc)}") from None


def _from_cell(key: str, value: str | None):
    if value in (None, ""):
        return None
    return json.loads(value) if key in LISTS else value


def _to_cell(key: str, value) -> str:
    if value is None:
        return ""
    return json.dumps(value) if key in LISTS else str(value)


class ResultsWriter:
    """Rows into `path`, atomically. An existing file is refused unless `force` (replaced) or `resume`
    (kept: its rows first, then the new ones; `done` holds its paths). Use as a context manager: leaving
    the block, normally or by an exception (Ctrl-C included), puts what was written in place."""

    def __init__(self, path: str | Path, force: bool = False, resume: bool = False, sha256: str | None = None,
                 row_group: int = 1024):
        self.path = Path(path)
        self.kind = output_format(self.path)
        if force and resume:
            raise EdgeliteError("--resume and --force exclude each other")
        self.previous = None
        if self.path.exists():
            if self.path.is_dir():
                raise EdgeliteError(f"{self.path} is a folder")
            if resume:
                self.previous = read_results(self.path)
                others = set(self.previous.column("sha256").to_pylist()) - {sha256, None}
                if sha256 and others:
                    raise EdgeliteError(f"{self.path} holds results of another artifact (sha256 "
                                        f"{sorted(others)[0][:12]}...): use another --out, or --force")
            elif not force:
                raise EdgeliteError(f"{self.path} already exists (--resume to add what is missing, --force to "
                                    "overwrite)")
        self.done = set(self.previous.column("path").to_pylist()) if self.previous is not None else set()
        self.part = self.path.with_name(f".{self.path.name}.part")
        self.row_group = row_group
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            raise EdgeliteError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if self.previous is not None and self.previous.num_rows:
            self.write(self.previous)

    def _open(self) -> None:
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            self._file = pq.ParquetWriter(self.part, ROWS)
        else:
            self._file = open(self.part, "w", encoding="utf-8", newline="")
            if self.kind == "csv":
                self._csv = csv.DictWriter(self._file, ROWS.names)
                self._csv.writeheader()

    def write(self, table: pa.Table) -> None:
        """Add rows (a table with at least the ROWS columns; others are left out)."""
        table = table.select(ROWS.names).cast(ROWS)
        self.rows += table.num_rows
        if self.kind == "parquet":  # row groups of about row_group rows, not one per small batch
            self._pending.append(table)
            self._pending_rows += table.num_rows
            if self._pending_rows >= self.row_group:
                self._flush()
            return
        for row in table.to_pylist():
            if self.kind == "jsonl":
                self._file.write(json.dumps(row) + "\n")
            else:
                self._csv.writerow({key: _to_cell(key, value) for key, value in row.items()})
        self._file.flush()

    def _flush(self) -> None:
        if self._pending:
            self._file.write_table(pa.concat_tables(self._pending))
            self._pending, self._pending_rows = [], 0

    def close(self) -> Path:
        """Finish the file and rename it into place."""
        try:
            if self.kind == "parquet":
                self._flush()
            self._file.close()
            os.replace(self.part, self.path)
        except OSError as exc:
            raise EdgeliteError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return self.path

    def abort(self) -> None:
        """Leave the target as it was: the temporary file removed."""
        try:
            self._file.close()
        finally:
            self.part.unlink(missing_ok=True)

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        """Put what was written in place, interrupted or not; a run that failed before any new row leaves the
        target untouched (a cluster that could not be reached does not empty it, --force or not)."""
        previous = self.previous.num_rows if self.previous is not None else 0
        if kind is not None and self.rows == previous:
            self.abort()
        else:
            self.close()
