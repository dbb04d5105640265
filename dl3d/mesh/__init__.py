"""Mesh encoding: PLY (binary, default) and OBJ bytes from vertex/face arrays."""

from dl3d.mesh.io import MESH_FORMATS, PlyEncoder, encode_mesh

__all__ = ["MESH_FORMATS", "PlyEncoder", "encode_mesh"]
