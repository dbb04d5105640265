"""Encode meshes to file bytes with pytorch3d.io, so any fsspec writer can store them whole."""

from __future__ import annotations

import io
import os
import tempfile
from typing import Literal

import torch

MESH_FORMATS = ("ply", "obj")
MeshFormat = Literal["ply", "obj"]


def encode_mesh(verts: torch.Tensor, faces: torch.Tensor, fmt: MeshFormat = "ply") -> bytes:
    """Mesh file bytes.

    Args:
        verts: (V, 3) float vertex positions, metres.
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside.
        fmt: ``"ply"`` (binary little-endian) or ``"obj"``.
    """
    from pytorch3d.io import save_obj, save_ply

    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"expected verts of shape (V, 3), got {tuple(verts.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"expected faces of shape (F, 3), got {tuple(faces.shape)}")
    verts = verts.detach().to("cpu", torch.float32)
    faces = faces.detach().to("cpu", torch.int64)
    if fmt == "ply":
        buf = io.BytesIO()
        save_ply(buf, verts, faces, ascii=False)
        return buf.getvalue()
    if fmt == "obj":
        fd, path = tempfile.mkstemp(suffix=".obj")
        os.close(fd)
        try:
            save_obj(path, verts, faces)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)
    raise ValueError(f"expected mesh format one of {MESH_FORMATS}, got {fmt!r}")
