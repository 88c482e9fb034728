import io

import numpy as np
import pytest
from PIL import Image

from edgelite import EdgeliteError, PreprocessSpec, load_image, to_input
from edgelite.preprocess import quantize, resize, to_float


def png_bytes(image: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_presets_map_pixels_as_documented():
    image = Image.new("RGB", (4, 4), (0, 255, 51))
    cases = {
        "mobilenet": [-1.0, 1.0, 51 / 127.5 - 1],
        "unit": [0.0, 1.0, 0.2],
        "raw": [0.0, 255.0, 51.0],
        "caffe": [51 - 103.939, 255 - 116.779, 0 - 123.68],  # BGR order
    }
    for preset, expected in cases.items():
        spec = PreprocessSpec(size=(4, 4), preset=preset)
        np.testing.assert_allclose(to_float(image, spec)[0, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preset", ["mobilenet", "unit", "caffe", "torch"])
def test_float_input_is_the_formula_to_the_bit(preset):
    """(pixel - mean) / std in float32, every value of 0..255 in every channel: what Keras' own preprocessing
    computes and what calibration saw, whatever way the runtime gets there."""
    from edgelite.preprocess import from_pixels, pixels

    ramp = np.stack([np.roll(np.arange(256, dtype=np.uint8), 85 * c) for c in range(3)], -1).reshape(16, 16, 3)
    spec = PreprocessSpec(size=(16, 16), preset=preset, resize="stretch")
    px = pixels(Image.fromarray(ramp), spec)
    expected = (px.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)
    np.testing.assert_array_equal(from_pixels(px, spec)[0], expected)
    np.testing.assert_array_equal(to_float(Image.fromarray(ramp), spec), expected)


def test_nchw_layout_and_batch_dim():
    spec = PreprocessSpec(size=(8, 6), preset="unit", layout="NCHW")
    x = to_input(Image.new("RGB", (30, 20), (255, 0, 0)), spec)
    assert x.shape == (1, 3, 8, 6) and x.dtype == np.float32
    assert np.allclose(x[0, 0], 1.0) and np.allclose(x[0, 1:], 0.0)


def test_center_crop_keeps_the_middle():
    # a wide image: left and right thirds black, middle white; the crop sees only white
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, 100:200] = 255
    spec = PreprocessSpec(size=(10, 10), preset="raw", crop_fraction=0.875)
    out = np.asarray(resize(Image.fromarray(pixels), spec))
    assert out.shape == (10, 10, 3)
    assert out.min() == 255
    stretched = np.asarray(resize(Image.fromarray(pixels), PreprocessSpec(size=(10, 10), preset="raw", resize="stretch")))
    assert stretched[:, 0].max() == 0 and stretched[:, 5].min() == 255


def test_quantized_input_uses_model_scale_and_zero_point():
    spec = PreprocessSpec(size=(2, 2), preset="mobilenet")
    x = to_input(Image.new("RGB", (2, 2), (0, 128, 255)), spec, np.uint8, (1 / 128, 128))
    assert x.dtype == np.uint8
    assert x[0, 0, 0].tolist() == [0, 129, 255]  # 128/127.5 - 1 = 0.0039 -> 0.502 steps -> 129
    identity = PreprocessSpec(size=(2, 2), preset="custom", channel_order="RGB", mean=(128,) * 3, std=(128,) * 3)
    x = to_input(Image.new("RGB", (2, 2), (0, 128, 255)), identity, np.uint8, (1 / 128, 128))
    assert x[0, 0, 0].tolist() == [0, 128, 255]
    assert quantize(np.array([-2.0, 0.0, 2.0]), np.dtype(np.int8), 0.01, 0).tolist() == [-128, 0, 127]


GRAY = round(200 * 0.299 + 100 * 0.587 + 50 * 0.114)  # ITU-R 601 luma of (200, 100, 50): 124


@pytest.mark.parametrize("mode, want", [
    ("L", (GRAY,) * 3), ("LA", (GRAY,) * 3), ("I;16", (GRAY,) * 3), ("I", (GRAY,) * 3),  # 16/32-bit gray: not rescaled
    ("RGBA", (200, 100, 50)), ("CMYK", (200, 100, 50)),  # opaque alpha and CMYK give the colour back
    ("P", (204, 102, 51)),  # Pillow's web palette: the nearest entry
])
def test_every_mode_becomes_rgb_with_its_colours(mode, want):
    image = Image.new("RGB", (5, 4), (200, 100, 50)).convert(mode)
    out = load_image(png_bytes(image, "TIFF") if mode in ("CMYK", "I;16", "I") else png_bytes(image))
    assert out.mode == "RGB" and out.size == (5, 4)
    assert (np.asarray(out) == want).all()


def test_a_bilevel_image_becomes_black_and_white_rgb():
    image = Image.new("RGB", (6, 6), (200, 100, 50)).convert("1")  # dithered: half the dots white
    pixels = np.asarray(load_image(png_bytes(image)))
    assert set(np.unique(pixels)) == {0, 255} and (pixels[..., 0] == pixels[..., 2]).all()
    assert abs(pixels.mean() - GRAY) < 16


def test_transparent_pixels_go_on_white():
    image = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert load_image(png_bytes(image)).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    out = load_image(png_bytes(image, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_first_frame_of_animation():
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert load_image(buf.getvalue()).getpixel((0, 0))[0] > 200


def test_jpeg_draft_gives_the_same_shape():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), np.uint8))
    spec = PreprocessSpec(size=(224, 224), preset="mobilenet")
    assert to_float(png_bytes(big, "JPEG"), spec).shape == (224, 224, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", png_bytes(Image.new("RGB", (50, 50)), "JPEG")[:200]])
def test_bad_bytes_raise_one_clear_error(data):
    with pytest.raises(EdgeliteError, match="not a readable image"):
        to_float(data, PreprocessSpec(size=(8, 8)))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeliteError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr("edgelite.preprocess.MAX_PIXELS", 100)
    with pytest.raises(EdgeliteError, match="20x20 is over the 100 pixel limit"):
        load_image(png_bytes(Image.new("RGB", (20, 20))))


def test_spec_round_trips_through_json_dict():
    spec = PreprocessSpec(size=(96, 128), preset="torch", resize="stretch", layout="NCHW")
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    custom = PreprocessSpec(size=(3, 3), preset="custom", channel_order="RGB", mean=(1, 2, 3), std=(4, 5, 6))
    assert PreprocessSpec.from_dict(custom.to_dict()) == custom


def test_unknown_preset_is_refused():
    with pytest.raises(EdgeliteError, match="unknown preprocessing preset"):
        PreprocessSpec(preset="imagenet-ish")


@pytest.mark.parametrize("preset,dtype,quantization", [
    ("mobilenet", np.int8, (2 / 255, -1)),
    ("mobilenet", np.uint8, (1 / 128, 128)),
    ("unit", np.int8, (1 / 255, -128)),
    ("caffe", np.int8, (0.9, 3)),
    ("torch", np.uint8, (0.02, 120)),
])
def test_quantized_input_straight_from_pixels_equals_the_float_path(preset, dtype, quantization):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8))
    for layout in ("NHWC", "NCHW"):
        spec = PreprocessSpec(size=(16, 16), preset=preset, layout=layout)
        direct = to_input(image, spec, dtype, quantization)
        via_float = quantize(to_float(image, spec)[None], np.dtype(dtype), *quantization)
        assert direct.dtype == dtype and direct.shape == via_float.shape
        np.testing.assert_array_equal(direct, via_float)


def test_an_input_half_way_between_levels_rounds_one_way():
    """MobileNet's [-1, 1] at the int8 scale the converter writes for it (2/255 as float32, zero point -1) puts every
    pixel half-way between two levels: all round up, so the int8 input is the pixels - 128 (no table), and the
    dequantized image is the float one shifted by half a level everywhere, not a pattern of +-half levels."""
    from edgelite.preprocess import pixel_table

    spec = PreprocessSpec(size=(8, 8), preset="mobilenet")
    scale = float(np.float32(2 / 255))
    assert pixel_table(spec, np.dtype(np.int8), scale, -1) is None
    values = np.arange(256, dtype=np.uint8)[None, None, :, None].repeat(3, axis=3)
    exact = (values.astype(np.float64) - 127.5) / 127.5
    q = quantize(exact, np.dtype(np.int8), scale, -1)
    assert q.astype(int).ravel()[::3].tolist() == list(range(-128, 128))
    shift = ((q.astype(np.float64) + 1) * scale - exact) * 127.5
    assert np.allclose(shift, 0.5, atol=1e-4)


def test_identity_quantization_feeds_the_pixels_themselves():
    from edgelite.preprocess import pixel_table, pixels

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 20, 3), np.uint8))
    raw = PreprocessSpec(size=(20, 20), preset="raw", resize="stretch")
    assert pixel_table(raw, np.dtype(np.uint8), 1.0, 0) is None
    assert pixel_table(raw, np.dtype(np.int8), 1.0, -128) is None
    np.testing.assert_array_equal(to_input(image, raw, np.uint8, (1.0, 0))[0], pixels(image, raw))
    np.testing.assert_array_equal(to_input(image, raw, np.int8, (1.0, -128))[0].astype(int),
                                  pixels(image, raw).astype(int) - 128)
