"""Dataset kind ``object_images``: images of objects with their class, box, mask, mesh and occupancy.

What Mesh R-CNN trains and is evaluated on (``dl3d data make shapes``, ``dl3d ingest r2n2|pix3d``).
One row per image; per-object columns are lists with one entry per object, in the same order.
Frames: OpenCV camera (x right, y down, z forward), metres; K in pixels of the stored image, the pixel
(row r, column c) covering ``[c, c + 1) x [r, r + 1)``. Class names are listed in ``_dataset.json``
(``categories``: id 1 is the first name; 0 is the background).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from dl3d.data.errors import DataError
from dl3d.data.schema import Column, TableSchema, tensor_type

OBJECT_IMAGES = TableSchema(
    kind="object_images",
    version=1,
    doc="Images of objects with class, box, mask, camera-frame mesh and solid occupancy per object.",
    columns=(
        Column("id", pa.string(), doc="image id"),
        Column("image", pa.binary(), doc="PNG (or JPEG) bytes, RGB"),
        Column("width", pa.int64(), doc="pixels"),
        Column("height", pa.int64(), doc="pixels"),
        Column("intrinsics", tensor_type((3, 3)), shape=(3, 3), doc="(3, 3) K in pixels"),
        Column("labels", pa.list_(pa.int64()), shape=(None,), doc="(M,) class ids in 1..C"),
        Column("boxes", pa.list_(tensor_type((4,))), shape=(None, 4), doc="(M, 4) x1 y1 x2 y2, pixels, visible extent"),
        Column("masks", pa.list_(pa.binary()), doc="M PNGs (greyscale, 255 = visible object pixel)"),
        Column("verts", pa.list_(pa.list_(tensor_type((3,)))), shape=(None, None, 3),
               doc="M x (V, 3) mesh vertices, camera frame, metres"),
        Column("faces", pa.list_(pa.list_(tensor_type((3,), pa.int32()))), shape=(None, None, 3),
               doc="M x (F, 3) triangle vertex indices (outward, counter-clockwise seen from outside)"),
        Column("occupancy", pa.list_(pa.binary()), required=False,
               doc="M x R^3 solid-occupancy bits (numpy packbits of a C-order [z, y, x] grid)"),
        Column("occupancy_size", pa.int64(), required=False, doc="R, the occupancy grids' side"),
        Column("occupancy_to_camera", pa.list_(tensor_type((4, 4))), shape=(None, 4, 4), required=False,
               doc="M x (4, 4): the grid's [-1, 1]^3 frame (cell i spans [-1 + 2i/R, -1 + 2(i+1)/R]) -> camera"),
    ),
)


def encode_mask(mask: np.ndarray) -> bytes:
    """(H, W) bool -> greyscale PNG bytes (255 = object)."""
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def decode_mask(data: bytes, source: str) -> np.ndarray:
    """Greyscale (or any) PNG bytes -> (H, W) bool (pixel > 127 in its first channel)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("L"))
    except Exception as exc:  # noqa: BLE001 - any unreadable mask is a data problem
        raise DataError(source, f"not a readable mask image ({type(exc).__name__})") from None
    return arr > 127


def pack_occupancy(occ: np.ndarray) -> bytes:
    """(R, R, R) bool -> packed bits."""
    return np.packbits(np.asarray(occ, bool).reshape(-1)).tobytes()


def unpack_occupancy(data: bytes, size: int, source: str) -> np.ndarray:
    """Packed bits -> (R, R, R) bool; DataError when the byte count does not fit R."""
    need = (size ** 3 + 7) // 8
    if len(data) != need:
        raise DataError(source, f"occupancy of {len(data)} bytes does not hold a {size}^3 grid ({need} bytes)")
    return np.unpackbits(np.frombuffer(data, np.uint8))[: size ** 3].reshape(size, size, size).astype(bool)


def _nested(value, inner: int, dtype, name: str, source: str) -> list[np.ndarray]:
    out = []
    for j, obj in enumerate(value.values if value.is_valid else []):
        arr = np.array(obj.values.flatten().to_numpy(zero_copy_only=False), dtype)
        if arr.size % inner:
            raise DataError(source, f"column {name!r}: object {j} does not hold rows of {inner} numbers")
        out.append(arr.reshape(-1, inner))
    return out


def decode_objects(table: pa.Table, i: int, source: str) -> dict:
    """Row ``i``'s objects: ``labels`` (M,), ``boxes`` (M, 4), ``masks`` (M PNG bytes), ``verts``/``faces``
    (lists of (V, 3) float32 / (F, 3) int64), and when present ``occupancy`` (M, R, R, R) bool and
    ``occupancy_to_camera`` (M, 4, 4). Raises DataError for inconsistent object counts."""
    labels = np.asarray(table.column("labels")[i].as_py() or [], np.int64)
    m = len(labels)
    boxes = np.asarray(table.column("boxes")[i].as_py() or [], np.float32).reshape(-1, 4)
    masks = table.column("masks")[i].as_py() or []
    verts = _nested(table.column("verts")[i], 3, np.float32, "verts", source)
    faces = _nested(table.column("faces")[i], 3, np.int64, "faces", source)
    counts = {"boxes": len(boxes), "masks": len(masks), "verts": len(verts), "faces": len(faces)}
    wrong = {k: v for k, v in counts.items() if v != m}
    if wrong:
        raise DataError(source, f"{m} labels but {wrong} entries in the other object columns")
    for j, (v, f) in enumerate(zip(verts, faces)):
        if len(f) and (f.min() < 0 or f.max() >= len(v)):
            raise DataError(source, f"object {j}: face indices outside its {len(v)} vertices")
    out = {"labels": labels, "boxes": boxes, "masks": masks, "verts": verts, "faces": faces}
    if "occupancy" in table.column_names and table.column("occupancy")[i].is_valid:
        size = int(table.column("occupancy_size")[i].as_py())
        occ = [unpack_occupancy(b, size, source) for b in table.column("occupancy")[i].as_py()]
        T = np.asarray(table.column("occupancy_to_camera")[i].as_py(), np.float32).reshape(-1, 4, 4)
        if len(occ) != m or len(T) != m:
            raise DataError(source, f"{m} labels but {len(occ)} occupancy grids and {len(T)} transforms")
        out["occupancy"] = np.stack(occ) if occ else np.zeros((0, size, size, size), bool)
        out["occupancy_to_camera"] = T
    return out


MESHRCNN_RECONSTRUCT = TableSchema(
    kind="meshrcnn_reconstruct",
    version=1,
    doc="The index of `dl3d meshrcnn reconstruct`: one row per detection; an image without any gets one row.",
    columns=(
        Column("id", pa.string(), doc="'{image_id}/{detection:03d}', or '{image_id}/none' without a detection"),
        Column("image_id", pa.string(), doc="id of the input image"),
        Column("detection", pa.int64(), doc="detection index in descending score order; -1 when none"),
        Column("label", pa.int64(), required=False, doc="class id (1..C); null when none"),
        Column("class_name", pa.string(), required=False, doc="class name from the checkpoint's categories"),
        Column("score", pa.float32(), required=False, doc="detection score in [0, 1]"),
        Column("box", tensor_type((4,)), shape=(4,), required=False, doc="x1 y1 x2 y2, pixels of the input image"),
        Column("mask", pa.binary(), required=False, doc="greyscale PNG at the input image's size (255 = object)"),
        Column("dz", pa.float32(), required=False, doc="predicted depth extent, pixels (f * depth extent / centre depth)"),
        Column("focal_length", pa.float32(), required=False, doc="focal length assumed for the placement, pixels"),
        Column("object_distance", pa.float32(), required=False,
               doc="centre depth the mesh was placed at, metres (depth is predicted only up to scale)"),
        Column("mesh_path", pa.string(), required=False, doc="PLY/OBJ relative to the output prefix, camera frame, metres"),
        Column("num_verts", pa.int64(), required=False),
        Column("num_faces", pa.int64(), required=False),
        Column("status", pa.string(), doc="'ok', 'no_detection' or 'bad_image'"),
        Column("error", pa.string(), required=False, doc="the error text for 'bad_image'"),
    ),
)
