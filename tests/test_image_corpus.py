"""Every odd or broken image a camera or a user can produce: a result or one clear line each."""
import io
import struct
import zlib

import numpy as np
from PIL import Image

from conftest import run_cli


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims huge dimensions (a decompression bomb)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def corpus(folder):
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 8
    jpeg = encode(photo, "JPEG")
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    frames = [photo.quantize(16), Image.new("P", (80, 60))]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    good = {
        "cmyk.jpg": encode(photo.convert("CMYK"), "JPEG"),
        "gray16.png": encode(Image.fromarray((np.arange(4800).reshape(60, 80) * 13).astype(np.uint16)), "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "palette.png": encode(photo.quantize(8), "PNG", transparency=0),
        "animated.gif": animated.getvalue(),
        "rotated.jpg": encode(photo, "JPEG", exif=exif.tobytes()),
        "one-pixel.png": encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"),
        "gray.webp": encode(photo.convert("L"), "WEBP"),
    }
    bad = {
        "zero-bytes.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "text.jpg": b"this is a text file with a .jpg name\n",
        "bomb.png": png_claiming(60000, 60000),
    }
    for name, data in {**good, **bad}.items():
        (folder / name).write_bytes(data)
    return sorted(good), sorted(bad)


def test_corpus_through_the_cli(artifact, tmp_path):
    good, bad = corpus(tmp_path)
    done = run_cli("predict", artifact["tflite-int8"], tmp_path, "--top-k", "1", "--annotate", tmp_path / "ann")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgelite: error:")]
    assert sorted(e.split(":")[2].strip().rsplit("/", 1)[-1] for e in errors) == bad
    assert "bomb.png: over the pixel limit" in done.stderr
    for name in good:
        assert f"{name}\n  1. " in done.stdout, name
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == sorted(n.rsplit(".", 1)[0] + ".png" for n in good)
    assert f"{len(bad)} of {len(good) + len(bad)} images failed" in done.stderr


def test_exif_rotated_photo_is_classified_upright(tmp_path):
    from edgelite.preprocess import load_image

    good, _ = corpus(tmp_path)
    assert load_image(tmp_path / "rotated.jpg").size == (60, 80)


def test_annotate_refuses_to_overwrite_without_force(artifact, trained, tmp_path):
    image = trained.val[0][0]
    args = ["predict", artifact["onnx-fp32"], image, "--annotate", tmp_path / "ann"]
    assert run_cli(*args).returncode == 0
    png = tmp_path / "ann" / f"{image.stem}.png"
    assert Image.open(png).width == 480
    again = run_cli(*args)
    assert again.returncode == 1 and "--force" in again.stderr
    assert run_cli(*args, "--force").returncode == 0
