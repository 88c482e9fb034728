"""How the artifact reaches the workers: the driver reads the model file (and its `.json` sidecar) once, and
the bytes travel through Ray's object store (inside the actors' constructor arguments, fetched once per node);
each actor writes them into a folder of its node's temporary folder named for the digest (once per node) and
opens one single-threaded Classifier there. No shared filesystem is needed for the model, and every worker
runs exactly the bytes the driver hashed."""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgelite import Classifier, PreprocessSpec
from edgelite.classifier import given_labels, sidecar_path
from edgelite.errors import EdgeliteError
from edgelite.resolve import user_fields


@dataclass(frozen=True)
class ShippedModel:
    """An artifact as bytes, with what the user said about it (labels, preprocessing, output, backend) and the
    backend's speed options (a bundle's tuned choice: `edgelite tune`)."""

    name: str
    data: bytes = field(repr=False)
    sidecar: bytes | None = field(repr=False)
    sha256: str
    spec: PreprocessSpec  # what the driver resolved: every worker must resolve the same
    labels: tuple[str, ...] | None = None
    preprocess: dict | None = None
    output: int | str | None = None
    backend: str | None = None
    options: dict | None = None

    @classmethod
    def read(cls, path: str | Path, labels=None, preprocess=None, output=None, backend: str | None = None,
             options: dict | None = None) -> tuple["ShippedModel", Classifier]:
        """Read and check an artifact on the driver: the Classifier opened here (it validates the file, the
        labels and the preprocessing now, before any cluster work) and the bytes to ship."""
        path = Path(path)
        if path.is_dir():
            raise EdgeliteError(f"{path} is a folder: give a .tflite or .onnx file (or, to `predict --ray`, a bundle)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EdgeliteError(f"cannot read {path}: {exc.strerror or exc}") from None
        labels = given_labels(labels)
        fields = user_fields(preprocess) or None  # a spec .json is read here, not on every worker
        classifier = Classifier(path, backend=backend, threads=1, labels=labels, preprocess=fields, output=output,
                                options=options)
        sidecar = sidecar_path(path)
        model = cls(path.name, data, sidecar.read_bytes() if sidecar.is_file() else None,
                    hashlib.sha256(data).hexdigest(), classifier.spec,
                    tuple(labels) if labels is not None else None, fields, output, backend, options)
        return model, classifier

    def open(self) -> Classifier:
        """On a worker: the model written once per node (a folder named for its digest in the temporary
        folder, shared by the node's actors, kept for later runs), opened single-threaded."""
        path = self.place(Path(tempfile.gettempdir()) / f"edgelite-model-{self.sha256[:16]}")
        classifier = Classifier(path, backend=self.backend, threads=1,
                                labels=list(self.labels) if self.labels is not None else None,
                                preprocess=self.preprocess, output=self.output, options=self.options)
        if classifier.spec != self.spec:
            raise EdgeliteError(f"{self.name}: the worker resolved other preprocessing than the driver "
                                f"({classifier.spec} vs {self.spec})")
        return classifier

    def place(self, folder: Path) -> Path:
        """The model file (and sidecar) in `folder`, each written atomically unless already there."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.name
        for target, data in ((path, self.data), (sidecar_path(path), self.sidecar)):
            if data is None or (target.is_file() and target.stat().st_size == len(data)
                                and target.read_bytes() == data):
                continue
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{target.name}.", delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, target)
        return path
