"""What the ingests that write ``object_images`` share (``dl3d ingest pix3d``, ``dl3d ingest r2n2``):
reading an OBJ model, max-pooling an occupancy grid, and writing accumulated rows as one shard."""

from __future__ import annotations

import io

import numpy as np

from dl3d.data import fs as fsx
from dl3d.data.mesh_tables import OBJECT_IMAGES


def new_rows() -> dict[str, list]:
    """Empty per-column row lists of ``object_images`` (fill them, then :func:`flush_rows`)."""
    return {c.name: [] for c in OBJECT_IMAGES.columns}


def flush_rows(writer, rows: dict[str, list], report) -> None:
    """Write ``rows`` as shard number ``report.shards`` of ``writer``, count it, and empty the lists.

    ``rows`` holds one entry per image in every column; ``intrinsics`` (3, 3) arrays; per-object columns
    lists (one item per object); the three occupancy columns may be None for an image without voxels.
    """
    import pyarrow as pa

    from dl3d.data import to_table

    columns = dict(rows)
    columns["intrinsics"] = np.stack(rows["intrinsics"]).astype(np.float32)
    columns["occupancy_to_camera"] = pa.array(  # nullable per row: built as nested lists
        [None if T is None else np.asarray(T, np.float32).reshape(-1, 4, 4).tolist()
         for T in rows["occupancy_to_camera"]], type=OBJECT_IMAGES.by_name["occupancy_to_camera"].type)
    writer.write_shard(report.shards, to_table(OBJECT_IMAGES, columns))
    report.shards += 1
    for v in rows.values():
        v.clear()


def load_obj_mesh(fs, path: str) -> tuple[np.ndarray, np.ndarray]:
    """An OBJ file on ``fs`` -> ((V, 3) float32 vertices in the file's frame and units, (F, 3) int64
    triangles; polygons are fanned by pytorch3d's reader, materials and textures are not read).

    Raises:
        ValueError: the file has no triangle (or pytorch3d cannot parse it).
    """
    from pytorch3d.io import load_obj

    verts, faces, _ = load_obj(io.BytesIO(fsx.get_bytes(fs, path)), load_textures=False)
    faces = faces.verts_idx.numpy()
    if len(faces) == 0:
        raise ValueError(f"{path}: the model has no faces")
    return verts.numpy(), faces


def pool_occupancy(occ: np.ndarray, size: int) -> np.ndarray:
    """(D, D, D) bool -> (size, size, size) bool, each cell set when any of its (D / size)^3 cells is
    (the pooled grid spans the same cube, so its grid-to-camera map is unchanged).

    Raises:
        ValueError: ``size`` does not divide D.
    """
    d = occ.shape[0]
    if occ.shape != (d, d, d) or size < 1 or d % size:
        raise ValueError(f"expected a cubic grid whose side {size} divides, got {occ.shape}")
    f = d // size
    return np.asarray(occ, bool).reshape(size, f, size, f, size, f).any(axis=(1, 3, 5))
