"""Encode meshes to file bytes, so any fsspec writer can store them whole.

Binary PLY is built from numpy (:class:`PlyEncoder`: byte for byte what pytorch3d's ``save_ply`` writes,
without its per-face Python loop: 0.24 s per SMPL mesh -> well under a millisecond); OBJ goes through
pytorch3d's ``save_obj``."""

from __future__ import annotations

import os
import tempfile
from typing import Literal

import numpy as np
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
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"expected verts of shape (V, 3), got {tuple(verts.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"expected faces of shape (F, 3), got {tuple(faces.shape)}")
    verts = verts.detach().to("cpu", torch.float32)
    faces = faces.detach().to("cpu", torch.int64)
    if fmt == "ply":
        return PlyEncoder(faces.numpy())(verts.numpy())
    if fmt == "obj":
        from pytorch3d.io import save_obj

        fd, path = tempfile.mkstemp(suffix=".obj")
        os.close(fd)
        try:
            save_obj(path, verts, faces)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)
    raise ValueError(f"expected mesh format one of {MESH_FORMATS}, got {fmt!r}")


class PlyEncoder:
    """Binary little-endian PLY of meshes that share one face list (a body model's, say): header
    ``element vertex V`` (float x, y, z), ``element face F`` (``list uchar int vertex_index``), the face
    block built once. A mesh without vertices gets no face element, as pytorch3d writes it."""

    def __init__(self, faces: np.ndarray):
        """faces: (F, 3) int vertex indices, counter-clockwise seen from outside."""
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"expected faces of shape (F, 3), got {tuple(faces.shape)}")
        block = np.empty(len(faces), np.dtype([("n", "u1"), ("v", "<i4", (3,))]))
        block["n"], block["v"] = 3, faces
        self.face_bytes = block.tobytes()
        self.num_faces = len(faces)

    def __call__(self, verts: np.ndarray) -> bytes:
        """verts: (V, 3) float, metres. Returns the file's bytes."""
        verts = np.asarray(verts)
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise ValueError(f"expected verts of shape (V, 3), got {tuple(verts.shape)}")
        header = ("ply\nformat binary_little_endian 1.0\n"
                  f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n")
        if len(verts) == 0:
            return (header + "end_header\n").encode("ascii")
        header += f"element face {self.num_faces}\nproperty list uchar int vertex_index\nend_header\n"
        return header.encode("ascii") + np.ascontiguousarray(verts, dtype="<f4").tobytes() + self.face_bytes
