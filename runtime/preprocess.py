"""The one preprocessing implementation: image loading and image -> model input.

Everything that feeds a model (the device runtime, the converter's calibration and
parity checks, training, the benchmarks, the demo) goes through `pixels` (decode with `load_image`,
resize, crop: uint8 at the model's size) and then `from_pixels` (normalise, quantize, lay out):
`to_input` is the two in one call; training's pixel cache and the check sets keep the pixels in
between; `to_float` and `batch` give the float arrays Keras takes, by the same steps (never quantized).
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
    """How pixels become a model input. Travels with every artifact as JSON.

    resize: "crop" (shorter side to size / crop_fraction, centre crop: the ImageNet evaluation
    convention) or "stretch" (the whole frame to size: what the TFLite Task Library, MediaPipe,
    Coral and Keras' image_dataset_from_directory do). antialias: Pillow's bilinear, which
    antialiases when it shrinks; False samples like TFLite's RESIZE_BILINEAR and tf.image.resize
    (half-pixel centres, four neighbours). channels: 3, or 1 for a grayscale model, whose layout
    may be "NHW" (no channel axis).
    """

    size: tuple[int, int] = (224, 224)  # (height, width)
    preset: str = "mobilenet"
    resize: str = "crop"
    crop_fraction: float = 0.875
    layout: str = "NHWC"
    channel_order: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    antialias: bool = True
    channels: int = 3

    def __post_init__(self):
        if self.preset not in PRESETS and self.preset != "custom":
            raise EdgeliteError(
                f"unknown preprocessing preset {self.preset!r} (known: {', '.join(PRESETS)})"
            )
        if self.resize not in ("crop", "stretch"):
            raise EdgeliteError(f"unknown resize rule {self.resize!r} (use 'crop' or 'stretch')")
        if self.layout not in ("NHWC", "NCHW", "NHW"):
            raise EdgeliteError(f"unknown layout {self.layout!r} (use NHWC, NCHW or NHW)")
        if self.channels not in (1, 3) or (self.layout == "NHW" and self.channels != 1):
            raise EdgeliteError(f"{self.channels} channels in layout {self.layout}: use 3, or 1 (grayscale)")
        if not 0 < self.crop_fraction <= 1:
            raise EdgeliteError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "antialias", bool(self.antialias))
        if self.preset != "custom":
            order, mean, std = PRESETS[self.preset]
            if self.channels == 1:  # one gray value stands for all three channels
                mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
            object.__setattr__(self, "channel_order", order)
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for key in ("mean", "std"):  # one value stands for every channel; a gray model keeps one of three equal
            values = getattr(self, key)
            if len(values) == 1 and self.channels == 3:
                object.__setattr__(self, key, values * 3)
            elif len(values) == 3 and self.channels == 1 and len(set(values)) == 1:
                object.__setattr__(self, key, values[:1])
        if (len(self.mean) != self.channels or len(self.std) != self.channels
                or self.channel_order not in ("RGB", "BGR") or not all(self.std)):
            raise EdgeliteError(f"a custom preprocessing spec needs channel_order RGB|BGR and {self.channels} mean "
                                f"and {self.channels} non-zero std values")

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


def describe(spec: PreprocessSpec) -> str:
    """One line: what a model's pixels go through."""
    resize = f"centre crop {spec.crop_fraction:g}" if spec.resize == "crop" else "whole frame"
    norm = spec.preset if spec.preset != "custom" else f"mean {list(spec.mean)} std {list(spec.std)}"
    return (f"{spec.size[0]}x{spec.size[1]} {'gray' if spec.channels == 1 else spec.channel_order}, {resize}, "
            f"bilinear {'with' if spec.antialias else 'without'} antialias, {norm}, {spec.layout}")


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
            if spec is not None and spec.antialias and image.format == "JPEG":  # DCT scaling averages too
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
    """Resize to spec.size: the whole frame (stretch) or a centre crop of crop_fraction of the
    shorter side, with Pillow's antialiasing bilinear or TFLite's plain one (spec.antialias)."""
    height, width = spec.size
    w, h = image.size
    if spec.resize == "stretch":
        box = (0.0, 0.0, float(w), float(h))
    else:  # the region of the source that the centre crop covers, resized in one step
        scale = max(width / w, height / h) / spec.crop_fraction
        box_w, box_h = width / scale, height / scale
        left, top = (w - box_w) / 2, (h - box_h) / 2
        box = (left, top, left + box_w, top + box_h)
    if spec.antialias:
        return image.resize((width, height), Image.BILINEAR, box=None if spec.resize == "stretch" else box)
    # output pixel centre (x + 0.5) samples the source at left + (x + 0.5) * box_w / width, between its
    # four neighbours: RESIZE_BILINEAR with half_pixel_centers (measured: within 1 level of tf.image.resize)
    # (sampled in float, then rounded as TFLite's uint8 kernel rounds: Pillow's own uint8 sampling truncates)
    left, top, right, bottom = box
    matrix = ((right - left) / width, 0, left, 0, (bottom - top) / height, top)
    bands = [np.asarray(band.convert("F").transform((width, height), Image.AFFINE, matrix, resample=Image.BILINEAR))
             for band in image.split()]
    return Image.fromarray(np.clip(np.rint(np.stack(bands, axis=-1)), 0, 255).astype(np.uint8).squeeze(-1)
                           if len(bands) == 1 else np.clip(np.rint(np.stack(bands, axis=-1)), 0, 255).astype(np.uint8))


def pixels(image: ImageLike, spec: PreprocessSpec) -> np.ndarray:
    """Image -> uint8 array [H, W, C] at the model's size, in the spec's channel order (C = 1: gray)."""
    image = resize(load_image(image, spec), spec)
    if spec.channels == 1:
        return np.asarray(image.convert("L"))[..., None]
    array = np.asarray(image)
    return array[..., ::-1] if spec.channel_order == "BGR" else array


def _normalise(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    x = array.astype(np.float32)  # in place: the same float32 values, a third of the time of fresh arrays
    x -= np.asarray(spec.mean, np.float32)
    x /= np.asarray(spec.std, np.float32)
    return x


def _layout(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    if spec.layout == "NHW":
        return np.ascontiguousarray(array[..., 0])
    return np.ascontiguousarray(array.transpose(2, 0, 1) if spec.layout == "NCHW" else array)


def to_float(image: ImageLike, spec: PreprocessSpec) -> np.ndarray:
    """Image -> float32 array [H, W, C] (or [C, H, W] for NCHW, [H, W] for NHW), normalised per spec."""
    return _layout(_normalise(pixels(image, spec), spec), spec)


TIE = 1e-3  # levels: a value this close below a half rounds up too (float error of the scale and the formula)


def quantize(array: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Float -> integer tensor with the model's own scale and zero point; halves round up, one way for every value.

    A [-1, 1] normalisation, (p - 127.5) / 127.5, at an int8 input scale of 2/255 puts every pixel value half-way
    between two levels. Rounding half to even (or by the float error of each value) then moves odd and even
    pixel values opposite ways, a pattern over the whole image: the shared MobileNetV2's fp32 export fed those
    values changes 6 of 750 answers (big-cats and imagenet-sample), as many as +-0.5 level of random noise, and
    it is the int8 file's input. Rounding every half up shifts the whole image by half a level instead (the int8
    input is then the pixel - 128, the TFLite Task Library's way), which changes 1 of 750."""
    info = np.iinfo(dtype)
    levels = np.floor(np.asarray(array, np.float64) / scale + zero_point + 0.5 + TIE)
    return np.clip(levels, info.min, info.max).astype(dtype)


@functools.lru_cache(maxsize=32)
def pixel_table(spec: PreprocessSpec, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray | None:
    """[256, C] table: pixel value -> quantized input, per channel, by the float formula; [256] when every
    channel has the same one (a plain lookup, 2-6x faster than one per channel).

    None when the table is the identity (uint8) or a plain shift by 128 (int8): such models
    take the pixels themselves. Either way no image goes through floats.
    """
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], spec.channels, axis=1)
    table = quantize(_normalise(values, spec), dtype, scale, zero_point)
    shift = 0 if dtype == np.uint8 else 128
    if np.array_equal(table.astype(np.int16), values.astype(np.int16) - shift):
        return None
    return table[:, 0].copy() if (table == table[:, :1]).all() else table


def to_input(image: ImageLike, spec: PreprocessSpec, dtype=np.float32, quantization=(0.0, 0)) -> np.ndarray:
    """Image -> the exact batch-of-one array a backend wants (quantized if its input is)."""
    return from_pixels(pixels(image, spec), spec, dtype, quantization)


def from_pixels(array: np.ndarray, spec: PreprocessSpec, dtype=np.float32, quantization=(0.0, 0)) -> np.ndarray:
    """uint8 pixels [H, W, C] ([H, W]: gray) already at the model's size and channel order -> the backend's
    batch of one."""
    dtype = np.dtype(dtype)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] != spec.channels:
        raise EdgeliteError(f"pixels with {array.shape[-1]} channels for a model that takes {spec.channels}")
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = quantization
        if not scale:
            raise EdgeliteError("the model has an integer input without quantization parameters")
        if dtype not in (np.uint8, np.int8):
            raise EdgeliteError(f"unsupported quantized input type {dtype}")
        table = pixel_table(spec, dtype, float(scale), int(zero_point))
        if table is not None:
            array = np.take(table, array) if table.ndim == 1 else table[array, np.arange(spec.channels)]
        elif dtype == np.int8:
            array = (array ^ 0x80).view(np.int8)  # p - 128 without arithmetic
        return _layout(array, spec)[None]
    return _layout(_normalise(array, spec), spec)[None].astype(dtype, copy=False)


def batch(images: Sequence[ImageLike], spec: PreprocessSpec) -> np.ndarray:
    """Float batch [N, ...] for Keras or calibration."""
    return np.stack([to_float(image, spec) for image in images])
