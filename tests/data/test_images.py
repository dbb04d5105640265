"""Image codecs: PNG round trips, JPEG/grey/RGBA input, header-only sizes, named errors for bad bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dl3d.data import DataError
from dl3d.data.images import decode_image, encode_png, image_size, resize_image, to_uint8


def _noise(h: int = 5, w: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_png_round_trip_uint8_is_lossless():
    img = _noise(13, 17)
    data = encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out = decode_image(data, "mem")
    assert out.dtype == np.uint8 and out.shape == (13, 17, 3)
    np.testing.assert_array_equal(out, img)
    assert image_size(data) == (17, 13)  # (width, height)
    np.testing.assert_array_equal(decode_image(encode_png(img, compress_level=0), "mem"), img)


def test_float_images_round_to_nearest_level_and_clip():
    img = np.array([[[0.0, 0.5, 1.0], [1.0 / 255, 0.2, -0.01], [1.02, 0.998, 0.0019]]], dtype=np.float32)
    out = decode_image(encode_png(img), "mem")
    np.testing.assert_array_equal(out[0], [[0, 128, 255], [1, 51, 0], [255, 254, 0]])
    # torch tensors too, float64 as well as float32
    t = torch.tensor(img, dtype=torch.float64)
    np.testing.assert_array_equal(decode_image(encode_png(t), "mem"), out)


def test_jpeg_grey_and_rgba_decode_to_rgb():
    img = np.full((16, 24, 3), (200, 40, 90), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    out = decode_image(buf.getvalue(), "a.jpg")
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - img).max() <= 3  # JPEG is lossy, a flat colour nearly survives
    assert image_size(buf.getvalue()) == (24, 16)

    grey = io.BytesIO()
    Image.fromarray(np.full((4, 6), 77, np.uint8)).save(grey, format="PNG")
    np.testing.assert_array_equal(decode_image(grey.getvalue(), "g.png"), np.full((4, 6, 3), 77, np.uint8))

    rgba = io.BytesIO()
    Image.fromarray(np.full((3, 2, 4), (10, 20, 30, 0), np.uint8)).save(rgba, format="PNG")
    np.testing.assert_array_equal(decode_image(rgba.getvalue(), "a.png"), np.full((3, 2, 3), (10, 20, 30)))


def test_image_size_reads_only_the_header():
    data = encode_png(_noise(300, 200))
    assert image_size(data[:64]) == (200, 300)  # the IHDR chunk is enough
    with pytest.raises(DataError, match=r"frames/x/12\.png: not a readable image \(OSError: image file is truncated"):
        decode_image(data[: len(data) // 2], "frames/x/12.png")


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_bytes_raise_data_error_naming_the_source(data):
    with pytest.raises(DataError) as err:
        decode_image(data, "s3://bucket/seq1/1000.jpg")
    assert str(err.value) == "s3://bucket/seq1/1000.jpg: not a readable image (unknown format or corrupt header)"
    assert err.value.source == "s3://bucket/seq1/1000.jpg"
    with pytest.raises(DataError, match=r"^row 3: not a readable image"):
        image_size(data, "row 3")


def test_bad_arrays_raise_value_errors():
    with pytest.raises(ValueError, match=r"expected an RGB image of shape \(H, W, 3\), got \(4, 4\)"):
        encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"got \(4, 4, 4\)"):
        encode_png(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="NaN or infinite"):
        encode_png(np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="got dtype int64"):
        to_uint8(np.zeros((2, 2, 3), np.int64))
    with pytest.raises(ValueError, match=r"compress_level must be in \[0, 9\], got 12"):
        encode_png(_noise(), compress_level=12)


def test_resize_keeps_flat_colours_and_returns_height_width():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (255, 0, 0)
    img[:, 30:] = (0, 0, 255)
    out = resize_image(img, (30, 10))  # (width, height)
    assert out.shape == (10, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :13], np.broadcast_to([255, 0, 0], (10, 13, 3)))
    np.testing.assert_array_equal(out[:, 17:], np.broadcast_to([0, 0, 255], (10, 13, 3)))
    np.testing.assert_array_equal(resize_image(img, (60, 40)), img)  # same size: unchanged
    with pytest.raises(ValueError, match=r"expected a positive \(width, height\), got \(0, 5\)"):
        resize_image(img, (0, 5))
