"""The one preprocessing resolver: what a model's world does, what the model carries, what the user says.

Every command and the converter go through `resolve_spec`. Each layer is merged field by field
over the one before, so a preset given on the command line changes the normalisation and keeps a
carried resize, and `--no-antialias` alone changes only that:

1. the conventions of the model's world (`WORLDS`): a third-party TFLite model is fed the whole
   frame, resized bilinearly without antialiasing, as the TFLite Task Library, MediaPipe and Coral
   do; a keras.applications family uses the ImageNet centre crop;
2. what the model carries: edgelite's metadata or sidecar (a whole spec), standard TFLite Metadata
   (NormalizationOptions, gray or colour), a quantized input's own scale, Keras layers that
   normalise inside the model;
3. the model's input shape (size, layout, channels), unless the user sets them;
4. what the user says: a preset name, a spec .json, single fields (`--resize`, `--mean`...).

Nothing is guessed: a float model that carries no normalisation needs the user to say.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import EdgeliteError
from .preprocess import PRESETS, PreprocessSpec

WORLDS = {
    "tflite": {"resize": "stretch", "antialias": False},  # Task Library, MediaPipe, Coral: whole frame, RESIZE_BILINEAR
    "keras": {"resize": "stretch", "antialias": False},  # image_dataset_from_directory: whole frame, tf.image.resize
    "imagenet": {"resize": "crop", "crop_fraction": 0.875, "antialias": True},  # keras.applications evaluation
    # torchvision's evaluation transforms: shorter side to 256, centre 224 (0.875), bilinear with antialias
    "torch": {"resize": "crop", "crop_fraction": 0.875, "antialias": True},
}
# an ONNX file's producer_name -> (carried fields, world): torch.onnx writes "pytorch" (both exporters);
# tf2onnx ("tf2onnx") and others say nothing of the pixels
PRODUCERS = {"pytorch": ({"preset": "torch"}, "torch")}
NORMALISATION = ("preset", "mean", "std", "channel_order")


def producer_facts(producer_name: str | None) -> tuple[dict | None, str | None]:
    """What an ONNX file's producer tells of its preprocessing: a torch-made model gets torchvision's
    evaluation convention (ImageNet mean/std, the 0.875 centre crop); any other producer nothing."""
    carried, world = PRODUCERS.get((producer_name or "").strip().lower(), (None, None))
    return (dict(carried) if carried else None), world


def user_fields(preprocess) -> dict:
    """What the user said (a preset name, a spec .json path, a dict of fields, a whole spec) as fields."""
    if preprocess is None:
        return {}
    if isinstance(preprocess, PreprocessSpec):
        return preprocess.to_dict()
    if isinstance(preprocess, dict):
        return {k: v for k, v in preprocess.items() if v is not None}
    text = str(preprocess)
    if text.endswith(".json"):
        try:
            document = json.loads(Path(text).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EdgeliteError(f"cannot read preprocessing spec {text}: {exc}") from None
        if not isinstance(document, dict):
            raise EdgeliteError(f"{text}: a preprocessing spec is a JSON object")
        return user_fields(document.get("preprocess", document))  # a whole metadata document works too
    if text not in PRESETS:
        raise EdgeliteError(f"unknown preprocessing preset {text!r} (known: {', '.join(PRESETS)}; or a spec .json)")
    return {"preset": text}


def merge(base: dict, fields: dict) -> dict:
    """`fields` over `base`: a preset replaces the normalisation, a mean/std/order makes it custom."""
    fields = {k: v for k, v in fields.items() if v is not None}
    merged = dict(base)
    if fields.get("preset", "custom") != "custom":
        for key in ("mean", "std", "channel_order"):
            merged.pop(key, None)
    elif any(key in fields for key in ("mean", "std", "channel_order")):
        fields = {**fields, "preset": "custom"}
    merged.update(fields)
    return merged


def resolve_spec(name: str, world: str | None = None, carried: dict | None = None, geometry: dict | None = None,
                 user=None) -> PreprocessSpec:
    """The spec for a model called `name` (for messages): see the module docstring for the order."""
    fields = merge(WORLDS.get(world, {}), carried or {})
    fields = merge(fields, {k: v for k, v in (geometry or {}).items() if v is not None})
    fields = merge(fields, user_fields(user))
    if not any(key in fields for key in NORMALISATION):
        raise EdgeliteError(
            f"cannot tell how {name} expects its pixels (it carries no normalisation): pass --preprocess "
            f"PRESET ({', '.join(PRESETS)}) or a spec .json, or --mean and --std")
    if fields.get("preset") == "custom":
        fields.setdefault("channel_order", "RGB")
    if "size" not in fields:
        raise EdgeliteError(f"{name} has a dynamic input size: give a spec .json with a size")
    return PreprocessSpec.from_dict(fields)


def geometry(shape: tuple, name: str) -> dict:
    """Size, layout and channels read off an input shape: [N,H,W,C], [N,C,H,W] or [N,H,W] (gray), C 1 or 3
    (size None where it is dynamic: the resolver then needs the user's)."""
    if len(shape) == 3:
        layout, channels, (height, width) = "NHW", 1, shape[1:]
    elif len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        layout, channels, (height, width) = "NCHW", shape[1], shape[2:]
    elif len(shape) == 4 and shape[3] in (1, 3, None):
        layout, channels, (height, width) = "NHWC", shape[3] or 3, shape[1:3]
    else:
        raise EdgeliteError(f"cannot infer an image input from {name}'s input shape {shape}: expected [N,H,W,C], "
                            "[N,C,H,W] or [N,H,W] with 1 or 3 channels")
    return {"layout": layout, "channels": channels, "size": (height, width) if height and width else None}


def pixel_fields(dtype_is_int8: bool, scale: float, zero_point: int) -> dict:
    """A quantized input with no normalisation takes pixels (uint8, or pixel - 128 for int8): its own
    scale and zero point say what float range the pixels stand for."""
    mean = zero_point + (128 if dtype_is_int8 else 0)
    return {"preset": "custom", "channel_order": "RGB", "mean": [float(mean)], "std": [1 / scale]}


def normalisation_fields(mean: list[float], std: list[float]) -> dict:
    """Standard metadata's or Keras layers' (pixel - mean) / std as fields (one value: every channel)."""
    return {"preset": "custom", "channel_order": "RGB", "mean": [float(v) for v in mean],
            "std": [float(v) for v in std]}
