"""Image codecs for the image columns of datasets (``view_pairs``, ``images``): PNG out, PNG/JPEG in.

Images in memory are ``(H, W, 3)`` RGB arrays, rows top to bottom, columns left to right (pixel
``(row y, column x)``), either ``uint8`` in [0, 255] or float in [0, 1].
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dl3d.data.errors import DataError

__all__ = ["decode_image", "encode_png", "image_size", "resize_image", "to_uint8"]

# PIL raises many exception types for a bad file (truncated data, bad chunks, huge dimensions).
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def to_uint8(img: Any) -> np.ndarray:
    """``img: (H, W, 3)`` uint8, or float in [0, 1] (numpy array or torch tensor) -> ``(H, W, 3)`` uint8.

    Floats are rounded to the nearest of 256 levels; values slightly outside [0, 1] (renderer
    overshoot) are clipped. Raises ValueError for another shape, another dtype or non-finite values.
    """
    if hasattr(img, "detach"):  # a torch tensor
        img = img.detach().cpu().numpy()
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a uint8 image or a float image in [0, 1], got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError("expected a float image in [0, 1], got NaN or infinite values")
    return np.ascontiguousarray(np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8))


def encode_png(img: Any, compress_level: int = 6) -> bytes:
    """PNG bytes (8-bit RGB) of ``img: (H, W, 3)`` uint8 or float in [0, 1] (see :func:`to_uint8`).

    compress_level: zlib level 0 (fastest, largest) to 9; the pixels are lossless at every level.
    """
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be in [0, 9], got {compress_level}")
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode PNG or JPEG (any format PIL reads) bytes into ``(H, W, 3)`` uint8 RGB.

    Grey, palette and RGBA images are converted to RGB (alpha is dropped). ``source`` names the
    image (path, or dataset/row) in errors. Raises DataError when the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = im.convert("RGB")
    except _IMAGE_ERRORS as exc:
        raise DataError(source, _problem(exc)) from None
    return np.asarray(rgb, dtype=np.uint8)


def image_size(data: bytes, source: str = "") -> tuple[int, int]:
    """``(width, height)`` in pixels of PNG/JPEG bytes, from the header only (the pixels are not decoded).

    Raises DataError naming ``source`` when the bytes are not an image PIL recognises.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except _IMAGE_ERRORS as exc:
        raise DataError(source, _problem(exc)) from None
    return int(w), int(h)


def _problem(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):  # its message names a BytesIO object, not the file
        return "not a readable image (unknown format or corrupt header)"
    return f"not a readable image ({type(exc).__name__}: {exc})"


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``img: (H, W, 3)`` uint8 to ``size = (width, height)`` pixels (bicubic, antialiased).

    Scales each axis independently (the aspect ratio may change); pinhole intrinsics in pixels scale
    by ``width / W`` along x and ``height / H`` along y. Returns ``(height, width, 3)`` uint8.
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"expected a positive (width, height), got {size}")
    arr = to_uint8(img)
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)
