"""`edgelite bench --ray`: top-1/top-5 and the agreement between artifacts over a whole labeled set, on a Ray
cluster. The labeled folder is read and scored as local `bench` does (runtime/labeled.py: class folders,
or ImageNet-style `<wnid>_*.JPEG` with wnids.txt; the same `accuracy`), on every class's probability as
`Classifier.scores` gives it for one file, so the figures are local bench's. Latency stays a local,
per-device measurement: `edgelite bench` without --ray, on the device."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from edgelite.errors import EdgeliteError
from edgelite.files import find_artifacts
from edgelite.labeled import accuracy, labeled_images
from edgelite.parity import parity
from edgelite.result_rows import SELF_AGREEMENT, agreement_fields, artifact_fields

from .shipped_model import ShippedModel
from .batch_inference import classify
from .session import connect, import_ray

log = logging.getLogger(__name__)


def evaluate(artifacts: Sequence[str | Path], data: str | Path, *, address: str | None = "local",
             actors: int | None = None, limit: int | None = None, preprocess=None, batch_size: int | None = None,
             options: dict | None = None, verbose: bool = True) -> dict:
    """Accuracy of each artifact (files, or folders holding .tflite/.onnx files) on the labeled folder `data`,
    and its agreement with the first artifact, computed on the cluster at `address`.

    Returns {"settings", "cluster", "rows"}: rows like `bench`'s accuracy figures (name, format, path, size_mb,
    top1, top5, labeled) plus images, errors (files that could not be read, left out of the figures, with
    the first few in `error_examples`), and agreement, top5_overlap and max_abs_diff against the first
    artifact (parity.py's measures; the first artifact's own row says 1.0). `options`: an artifact's backend
    options by its path (a bundle's tuned choice), as local bench takes them."""
    if data is None:
        raise EdgeliteError("bench --ray needs --data (a labeled folder)")
    if limit is not None and limit < 1:
        raise EdgeliteError("--limit must be at least 1")
    import_ray()
    paths = find_artifacts(artifacts)
    options = {Path(p): o for p, o in (options or {}).items()}
    models = [ShippedModel.read(path, preprocess=preprocess, options=options.get(path)) for path in paths]
    first = models[0][1]
    items = labeled_images(data, first.labels, first.output.shape[-1])
    if limit:
        items = items[:limit]
    files = [str(p) for p, _ in items]
    truth = [t for _, t in items]
    position = {path: i for i, path in enumerate(files)}
    rows, reference, reference_ok = [], None, None
    with connect(address, verbose=verbose) as cluster:
        for path, (model, classifier) in zip(paths, models):
            scores = np.zeros((len(files), classifier.classes or 1), np.float32)
            ok = np.zeros(len(files), bool)
            errors: list[str] = []
            for table in classify(files, model, cluster, actors=actors, probabilities=True, batch_size=batch_size,
                                  verbose=verbose, desc=path.name):
                columns = table.select(["path", "error", "probabilities"]).to_pydict()
                for name, error, probabilities in zip(columns["path"], columns["error"], columns["probabilities"]):
                    if error is not None:
                        errors.append(error)
                        continue
                    scores[position[name]] = probabilities
                    ok[position[name]] = True
            known = [t for t, good in zip(truth, ok) if good]
            figures = accuracy(scores[ok], known)
            row = {**artifact_fields(path, classifier.metadata), "sha256": model.sha256, "top1": figures["top1"],
                   "top5": figures["top5"], "labeled": figures["labeled"], "images": int(ok.sum()),
                   "errors": len(errors), "error_examples": errors[:5]}
            if reference is None:
                reference, reference_ok = scores, ok
                row.update(SELF_AGREEMENT)
            elif reference.shape == scores.shape and (both := reference_ok & ok).any():
                row.update(agreement_fields(parity(reference[both], scores[both])))
            row["agreement_with"] = rows[0]["name"] if rows else None
            rows.append(row)
            if verbose and errors:
                log.info(f"{path.name}: {len(errors)} file(s) could not be read, e.g. {errors[0]}")
    return {"settings": {"data": str(data), "images": len(files), "limit": limit, "artifacts": [str(p) for p in paths]},
            "cluster": {"address": cluster.address, "nodes": cluster.nodes, "cpus": cluster.cpus}, "rows": rows}
