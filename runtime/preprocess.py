"""The one preprocessing implementation: image loading and image -> model input.

Everything that feeds a model (the device runtime, the converter's calibration and
parity checks, the benchmarks, the demo) goes through `load_image` and `to_input`.
"""
from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EdgeliteError

# Pixels above this are refused before decoding (a decompression-bomb guard).
MAX_PIXELS = 100_000_000

# name -> (channel order, mean, std), mean/std in 0..255 pixel units: x = (pixel - mean) / std
PRESETS = {
    "mobilenet": ("RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),  # [-1, 1]
    "unit": ("RGB", (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),  # [0, 1]
    "raw": ("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # [0, 255]
    "caffe": ("BGR", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    "torch": ("RGB", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}

ImageLike = Union[str, Path, bytes, Image.Image]


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels become a model input. Travels with every artifact as JSON."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    preset: str = "mobilenet"
    resize: str = "crop"  # "crop": shorter side to size/crop_fraction, then center crop; "stretch"
    crop_fraction: float = 0.875
    layout: str = "NHWC"
    channel_order: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self):
        if self.preset not in PRESETS and self.preset != "custom":
            raise EdgeliteError(
                f"unknown preprocessing preset {self.preset!r} (known: {', '.join(PRESETS)})"
            )
        if self.resize not in ("crop", "stretch"):
            raise EdgeliteError(f"unknown resize rule {self.resize!r} (use 'crop' or 'stretch')")
        if self.layout not in ("NHWC", "NCHW"):
            raise EdgeliteError(f"unknown layout {self.layout!r} (use NHWC or NCHW)")
        if not 0 < self.crop_fraction <= 1:
            raise EdgeliteError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if self.preset != "custom":
            order, mean, std = PRESETS[self.preset]
            object.__setattr__(self, "channel_order", order)
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        elif len(self.mean) != 3 or len(self.std) != 3 or self.channel_order not in ("RGB", "BGR"):
            raise EdgeliteError("a custom preprocessing spec needs channel_order RGB|BGR and 3 mean and 3 std values")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("size", "mean", "std"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def load_image(source: ImageLike, spec: PreprocessSpec | None = None) -> Image.Image:
    """Open any image Pillow reads as an RGB image, upright (EXIF), first frame only.

    With a spec, JPEG decoding uses `draft` to decode at a reduced scale when that is
    still at least as large as what the resize needs (free speed, same result shape).
    """
    if isinstance(source, Image.Image):
        image = ImageOps.exif_transpose(source)
    else:
        image = _open(source, spec)
        ImageOps.exif_transpose(image, in_place=True)  # ours to change: no copy
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _open(source: str | Path | bytes, spec: PreprocessSpec | None) -> Image.Image:
    """Decode the first frame, refusing oversized images before any pixel is decoded."""
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    except OSError as exc:
        raise EdgeliteError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        with fp:
            image = Image.open(fp)
            if image.width * image.height > MAX_PIXELS:
                raise EdgeliteError(f"{name}: {image.width}x{image.height} is over the {MAX_PIXELS:,} pixel limit")
            if spec is not None and image.format == "JPEG":
                image.draft("RGB", _resize_target(image.size, spec))
            image.load()
            return image
    except EdgeliteError:
        raise
    except Image.DecompressionBombError as exc:
        raise EdgeliteError(f"{name}: over the pixel limit ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise EdgeliteError(f"{name}: not a readable image ({exc})") from None


def _resize_target(image_size: tuple[int, int], spec: PreprocessSpec) -> tuple[int, int]:
    """(width, height) the image must at least have before the final resize."""
    height, width = spec.size
    if spec.resize == "stretch":
        return width, height
    w, h = image_size
    scale = max(width / w, height / h) / spec.crop_fraction
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize to spec.size: center crop of crop_fraction of the shorter side, or stretch."""
    height, width = spec.size
    if spec.resize == "stretch":
        return image.resize((width, height), Image.BILINEAR)
    w, h = image.size
    # the region of the source that the center crop covers, resized in one step
    scale = max(width / w, height / h) / spec.crop_fraction
    box_w, box_h = width / scale, height / scale
    left, top = (w - box_w) / 2, (h - box_h) / 2
    return image.resize((width, height), Image.BILINEAR, box=(left, top, left + box_w, top + box_h))


def pixels(image: ImageLike, spec: PreprocessSpec) -> np.ndarray:
    """Image -> uint8 array [H, W, 3] at the model's size, in the spec's channel order."""
    array = np.asarray(resize(load_image(image, spec), spec))
    return array[..., ::-1] if spec.channel_order == "BGR" else array


def _normalise(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    return (array.astype(np.float32) - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)


def _layout(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(2, 0, 1) if spec.layout == "NCHW" else array)


def to_float(image: ImageLike, spec: PreprocessSpec) -> np.ndarray:
    """Image -> float32 array [H, W, 3] (or [3, H, W] for NCHW), normalised per spec."""
    return _layout(_normalise(pixels(image, spec), spec), spec)


def quantize(array: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Float -> integer tensor with the model's own scale and zero point."""
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale + zero_point), info.min, info.max).astype(dtype)


@functools.lru_cache(maxsize=32)
def pixel_table(spec: PreprocessSpec, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray | None:
    """[256, 3] table: pixel value -> quantized input, per channel, by the float formula.

    None when the table is the identity (uint8) or a plain shift by 128 (int8): such models
    take the pixels themselves. Either way no image goes through floats.
    """
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    table = quantize(_normalise(values, spec), dtype, scale, zero_point)
    shift = 0 if dtype == np.uint8 else 128
    if np.array_equal(table.astype(np.int16), values.astype(np.int16) - shift):
        return None
    return table


def to_input(image: ImageLike, spec: PreprocessSpec, dtype=np.float32, quantization=(0.0, 0)) -> np.ndarray:
    """Image -> the exact batch-of-one array a backend wants (quantized if its input is)."""
    return from_pixels(pixels(image, spec), spec, dtype, quantization)


def from_pixels(array: np.ndarray, spec: PreprocessSpec, dtype=np.float32, quantization=(0.0, 0)) -> np.ndarray:
    """uint8 pixels [H, W, 3] already at the model's size and channel order -> the backend's batch of one."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = quantization
        if not scale:
            raise EdgeliteError("the model has an integer input without quantization parameters")
        if dtype not in (np.uint8, np.int8):
            raise EdgeliteError(f"unsupported quantized input type {dtype}")
        table = pixel_table(spec, dtype, float(scale), int(zero_point))
        if table is not None:
            array = table[array, np.arange(3)]
        elif dtype == np.int8:
            array = (array ^ 0x80).view(np.int8)  # p - 128 without arithmetic
        return _layout(array, spec)[None]
    return _layout(_normalise(array, spec), spec)[None].astype(dtype, copy=False)


def batch(images: Sequence[ImageLike], spec: PreprocessSpec) -> np.ndarray:
    """Float batch [N, ...] for Keras or calibration."""
    return np.stack([to_float(image, spec) for image in images])
