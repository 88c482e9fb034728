"""`train --export`: a trained model straight into every format, scored on its own validation split."""
from __future__ import annotations

from typing import NamedTuple


class Exported(NamedTuple):
    ok: bool  # every artifact passed its gate
    top1: dict  # "Keras" and each artifact's format -> validation top-1
    conversion: object  # edgelite.convert.Conversion


def export(trained, force: bool = False) -> Exported:
    """Convert `trained` (recipes.Trained) into OUT/artifacts: calibrated on 200 of its training images,
    checked on its validation images, each artifact's validation top-1 beside Keras's."""
    from edgelite.labeled import accuracy
    from edgelite.convert import FORMATS, convert

    from edgelite.convert.samples import choose

    result = convert(trained.model_path, trained.model_path.parent / "artifacts",
                     choose([p for p, _ in trained.train], 200), [p for p, _ in trained.val],
                     formats=FORMATS, force=force)
    truth = [y for _, y in trained.val]
    top1 = {"Keras": accuracy(result.reference, truth)["top1"]}
    top1.update({a.format: accuracy(a.scores, truth)["top1"] for a in result.artifacts if a.scores is not None})
    return Exported(result.ok, top1, result)
