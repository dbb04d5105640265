"""The rooms of ``dl3d data make multiview``: a box-shaped room with coloured objects as one textured mesh.

A room (floor, ceiling, four walls) carries a procedural tile texture per surface (a checker of
per-tile colour variations on a random base colour, with per-texel noise) and holds boxes (checkered
faces) and spheres (striped); everything is one mesh with one texture atlas (``TexturesUV``), so it
has few faces and renders fast on a CPU. World frame: metres, z up; the room spans
``[0, X] x [0, Y] x [0, Z]`` with the floor at z = 0.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pytorch3d.utils import ico_sphere

from dl3d.synthetic.cameras import rotation_about_z

__all__ = ["SPHERE_BANDS", "TEXELS_PER_TILE", "Scene", "SceneObject", "build_scene"]

TEXELS_PER_TILE = 4
"""Texels along each side of a room texture tile."""
SPHERE_BANDS = 6
"""Horizontal colour bands on a sphere."""


@dataclass
class SceneObject:
    """One object in a room (world frame, metres)."""

    kind: Literal["box", "sphere"]
    centre: np.ndarray
    """(3,) world position of the object's centre, metres."""
    size: np.ndarray
    """(3,) box: full extents along its own x, y, z; sphere: (2r, 2r, 2r). Metres."""
    colour: np.ndarray
    """(3,) RGB in [0, 1] before shading (sphere stripes darken it to 70 %)."""
    yaw: float = 0.0
    """Box rotation about the world z axis, radians."""

    @property
    def radius(self) -> float:
        """Radius of the bounding sphere, metres."""
        return float(np.linalg.norm(self.size) / 2 if self.kind == "box" else self.size[0] / 2)


@dataclass
class Scene:
    """A room and its objects as one vertex-coloured triangle mesh (world frame, metres, z up)."""

    room: np.ndarray
    """(3,) room extents (X, Y, Z): the room spans [0, X] x [0, Y] x [0, Z], floor at z = 0."""
    objects: list[SceneObject]
    light: np.ndarray
    """(3,) world position of the point light, metres."""
    verts: np.ndarray = field(repr=False)
    """(V, 3) float32 vertices, world frame, metres."""
    faces: np.ndarray = field(repr=False)
    """(F, 3) int64 vertex indices; every face's normal points into the room / out of its object."""
    verts_uvs: np.ndarray = field(repr=False)
    """(V, 2) float32 texture coordinates of the vertices (pytorch3d: u right, v up, texel centres 0..1)."""
    texture: np.ndarray = field(repr=False)
    """(Ht, Wt, 3) float32 texture atlas, RGB in [0, 1]."""


class _Atlas:
    """Packs small RGB images into one texture map (rows of patches, each padded by one edge texel)."""

    def __init__(self):
        self.patches: list[np.ndarray] = []

    def add(self, img: np.ndarray) -> int:
        self.patches.append(np.pad(np.asarray(img, dtype=np.float32), ((1, 1), (1, 1), (0, 0)), mode="edge"))
        return len(self.patches) - 1

    def pack(self) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Returns the (Ht, Wt, 3) map and each patch's (row, column) of its first inner texel."""
        width = max(256, max(p.shape[1] for p in self.patches))
        offsets, rows, row, col, shelf = [], 0, 0, 0, 0
        for p in self.patches:
            if col + p.shape[1] > width:
                row, col, shelf = row + shelf, 0, 0
            offsets.append((row + 1, col + 1))
            col += p.shape[1]
            shelf = max(shelf, p.shape[0])
            rows = max(rows, row + shelf)
        texture = np.zeros((rows, width, 3), np.float32)
        for p, (r, c) in zip(self.patches, offsets):
            texture[r - 1:r - 1 + p.shape[0], c - 1:c - 1 + p.shape[1]] = p
        return texture, offsets


def _patch_uv(xy: np.ndarray, offset: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(P, 2) texture coordinates of points ``xy`` (P, 2) = (column, row) in texel-edge units inside a
    patch placed at ``offset`` in a map of ``shape = (Ht, Wt)`` (pytorch3d: u = 0..1 over column centres
    0..Wt-1, v = 1..0 over row centres 0..Ht-1)."""
    col = offset[1] + xy[:, 0] - 0.5
    row = offset[0] + xy[:, 1] - 0.5
    return np.stack([col / (shape[1] - 1), 1.0 - row / (shape[0] - 1)], axis=1)


def _surface_texture(size_u: float, size_v: float, tile: float, base: np.ndarray, rng: np.random.Generator):
    """Texels of one room surface: tiles about ``tile`` metres (TEXELS_PER_TILE texels a side) coloured
    ``base`` x checker (1.0 / 0.72) x per-tile noise in [0.85, 1.15] x per-texel noise in [0.95, 1.05]."""
    nu, nv = max(1, math.ceil(size_u / tile)), max(1, math.ceil(size_v / tile))
    jj, ii = np.meshgrid(np.arange(nv), np.arange(nu), indexing="ij")  # (nv, nu): rows along v
    tiles = base * np.where((ii + jj) % 2 == 0, 1.0, 0.72)[..., None] * rng.uniform(0.85, 1.15, size=(nv, nu, 3))
    t = TEXELS_PER_TILE
    texels = np.repeat(np.repeat(tiles, t, axis=0), t, axis=1) * rng.uniform(0.95, 1.05, size=(nv * t, nu * t, 1))
    return np.clip(texels, 0.0, 1.0)


_BOX_FACES = ((0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1))  # (axis, sign) of each box face
_QUAD = np.array([[0, 1, 2], [0, 2, 3]])


@functools.lru_cache(maxsize=1)
def _unit_sphere() -> tuple[np.ndarray, np.ndarray]:
    """pytorch3d's level-2 ico-sphere: (642, 3) float64 unit vertices and (1280, 3) int64 faces (built once)."""
    sphere = ico_sphere(2)
    return sphere.verts_packed().double().numpy(), sphere.faces_packed().numpy().astype(np.int64)


def _quad_faces(corners: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """The two faces of quad ``corners`` (4, 3), wound so the normal points along ``towards`` (3,)."""
    normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    return _QUAD if np.dot(normal, towards) > 0 else _QUAD[:, [0, 2, 1]]


def build_scene(room, objects: list[SceneObject], light=None, *, rng: np.random.Generator | None = None,
                tile_size: float = 0.25) -> Scene:
    """Assemble a room with ``objects`` into one textured mesh.

    room: (3,) extents (X, Y, Z), metres. light: (3,) world position, metres (default: centre of the
    ceiling, 0.2 m below it). rng draws the base colours and the noise of the six room surfaces'
    tile textures (default: ``np.random.default_rng(0)``); base colours are light pastels (every
    channel >= 0.35). Box faces carry a 2 x 2 checker of their colour (x 1.0 / 0.85, each face a
    little darker than the last); spheres six horizontal bands (x 1.0 / 0.7).
    """
    room = np.asarray(room, dtype=np.float64)
    if room.shape != (3,) or not (room > 0).all():
        raise ValueError(f"expected room extents of shape (3,), all positive, got {room}")
    rng = np.random.default_rng(0) if rng is None else rng
    light = np.array([room[0] / 2, room[1] / 2, room[2] - 0.2]) if light is None else np.asarray(light, float)
    X, Y, Z = room
    atlas = _Atlas()
    quads = []  # (corners (4, 3), normal direction (3,), patch index)
    for o, u, v in (((0, 0, 0), (X, 0, 0), (0, Y, 0)),  # floor
                    ((0, 0, Z), (X, 0, 0), (0, Y, 0)),  # ceiling
                    ((0, 0, 0), (X, 0, 0), (0, 0, Z)),  # wall y = 0
                    ((0, Y, 0), (X, 0, 0), (0, 0, Z)),  # wall y = Y
                    ((0, 0, 0), (0, Y, 0), (0, 0, Z)),  # wall x = 0
                    ((X, 0, 0), (0, Y, 0), (0, 0, Z))):  # wall x = X
        o, u, v = (np.asarray(a, dtype=np.float64) for a in (o, u, v))
        tex = _surface_texture(np.linalg.norm(u), np.linalg.norm(v), tile_size, 0.35 + 0.55 * rng.random(3), rng)
        quads.append((np.stack([o, o + u, o + u + v, o + v]), room / 2 - o, atlas.add(tex)))
    spheres = []
    for obj in objects:
        if obj.kind == "box":
            rot = rotation_about_z(obj.yaw)
            for k, (axis, sign) in enumerate(_BOX_FACES):
                a1, a2 = [ax for ax in range(3) if ax != axis]
                box = np.zeros((4, 3))
                box[:, axis], box[:, a1], box[:, a2] = sign, [-1, 1, 1, -1], [-1, -1, 1, 1]
                checker = np.kron([[1.0, 0.85], [0.85, 1.0]], np.ones((4, 4)))[..., None]
                tex = np.clip(obj.colour * (1.0 - 0.04 * k) * checker, 0.0, 1.0)
                quads.append((box * obj.size / 2 @ rot.T + obj.centre, rot[:, axis] * sign, atlas.add(tex)))
        elif obj.kind == "sphere":
            bands = np.where(np.arange(SPHERE_BANDS * 4) // 4 % 2 == 0, 1.0, 0.7)
            tex = np.clip(np.broadcast_to(obj.colour * bands[:, None, None], (SPHERE_BANDS * 4, 4, 3)), 0.0, 1.0)
            spheres.append((obj, atlas.add(tex)))
        else:
            raise ValueError(f"object kind must be 'box' or 'sphere', got {obj.kind!r}")
    texture, offsets = atlas.pack()
    verts, faces, uvs, n = [], [], [], 0
    for corners, towards, patch in quads:
        h, w = atlas.patches[patch].shape[0] - 2, atlas.patches[patch].shape[1] - 2
        verts.append(corners)
        faces.append(_quad_faces(corners, towards) + n)
        uvs.append(_patch_uv(np.array([[0, 0], [w, 0], [w, h], [0, h]], float), offsets[patch], texture.shape[:2]))
        n += 4
    sphere_verts, sphere_faces = _unit_sphere()
    for obj, patch in spheres:
        h = atlas.patches[patch].shape[0] - 2
        verts.append(sphere_verts * obj.size[0] / 2 + obj.centre)
        faces.append(sphere_faces + n)
        xy = np.stack([np.full(len(sphere_verts), 2.0), (1.0 - sphere_verts[:, 2]) / 2 * h], axis=1)
        uvs.append(_patch_uv(xy, offsets[patch], texture.shape[:2]))
        n += len(sphere_verts)
    return Scene(room=room, objects=list(objects), light=light, verts=np.concatenate(verts).astype(np.float32),
                 faces=np.concatenate(faces).astype(np.int64), verts_uvs=np.concatenate(uvs).astype(np.float32),
                 texture=texture)
