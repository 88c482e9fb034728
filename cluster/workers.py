"""The actor of the pool: one single-threaded Classifier, loaded once, over batches of file paths.

Each file is read, decoded and preprocessed inside the actor through the runtime's own path
(`Classifier.prepare`, then `scores` and `top_k`: what `edgelite predict` does for a file), so the answers
are the local ones and no decoded pixels travel between processes. Measured on 2 cores against a separate
decoding stage of Ray tasks: see benchmarks/RESULTS.md. A file that cannot be read becomes a row with its
one-line error; the batch goes on.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from edgelite.errors import EdgeliteError, one_line

ROWS = pa.schema([
    ("path", pa.string()),
    ("indices", pa.list_(pa.int32())),
    ("labels", pa.list_(pa.string())),
    ("scores", pa.list_(pa.float32())),
    ("error", pa.string()),
    ("artifact", pa.string()),
    ("sha256", pa.string()),
])


class ClassifyFiles:
    """`ds.map_batches(ClassifyFiles, fn_constructor_kwargs=..., compute=ActorPoolStrategy(size=n))`.

    model: the ShippedModel. probabilities: also return every class's probability
    (a `probabilities` column, for evaluation)."""

    def __init__(self, model, top_k: int = 5, probabilities: bool = False):
        self.model = model
        self.classifier = model.open()
        self.top_k = top_k
        self.probabilities = probabilities

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        clf = self.classifier
        columns = {name: [] for name in ROWS.names}
        everything = []
        for path in batch["path"]:
            path = str(path)
            try:
                probabilities = clf.scores(clf.prepare(path))[0]
            except EdgeliteError as exc:
                probabilities, error = None, str(exc)
            except Exception as exc:  # noqa: BLE001  a file the decoder or backend chokes on: its row, not the job
                probabilities, error = None, f"{path}: {type(exc).__name__}: {one_line(exc)}"
            else:
                error = None
            predictions = clf.top_k(probabilities, self.top_k) if probabilities is not None else None
            columns["path"].append(path)
            columns["indices"].append(None if predictions is None else [p.index for p in predictions])
            columns["labels"].append(None if predictions is None else [p.label for p in predictions])
            columns["scores"].append(None if predictions is None else [p.score for p in predictions])
            columns["error"].append(error)
            everything.append(probabilities)
        n = len(columns["path"])
        columns["artifact"] = [self.model.name] * n
        columns["sha256"] = [self.model.sha256] * n
        table = pa.Table.from_pydict(columns, schema=ROWS)
        if self.probabilities:
            table = table.append_column("probabilities", pa.array(
                [None if p is None else p.astype(np.float32) for p in everything], pa.list_(pa.float32())))
        return table
