"""Primitive solids for Mesh R-CNN data: closed meshes with analytic occupancy.

Five kinds (class ids 1..5): cube, ellipsoid, cylinder, cone and torus (genus 1, so a reconstruction's
topology is tested). Each solid lives in its own frame inside [-1, 1]^3 (longest half-extent 1);
:func:`primitive_mesh` gives a closed, consistently outward-oriented triangle mesh of it and
:func:`primitive_occupancy` its solid occupancy on an R^3 grid whose cell i spans
[-1 + 2i/R, -1 + 2(i+1)/R] (indexed [z, y, x]), which is what ``dl3d.meshrcnn.unit_box.voxel_targets``
reads with an ``occupancy_to_camera`` equal to the object's 4x4 pose (scale included).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch3d.utils import ico_sphere

KINDS = ("cube", "ellipsoid", "cylinder", "cone", "torus")
"""Class names; class id = index + 1 (0 is the background in detection)."""

SEGMENTS = 24
"""Segments around the axis of the cylinder, cone and torus meshes."""
TORUS_TUBE = 0.35
"""Tube radius of the torus over its outer radius (ring radius 1 - TORUS_TUBE)."""


def _ring(radius: float, y: float, n: int) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), np.full(n, y), radius * np.sin(a)], axis=1)


def _orient_outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip faces whose normal points towards the solid's axis (all solids here are star-shaped about
    the y axis or the origin, except the torus, which is built outward already)."""
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    c = tri.mean(1)
    flip = (n * c).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def primitive_mesh(kind: str, aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """A closed triangle mesh of solid ``kind`` in its frame: (V, 3) float32 verts, (F, 3) int64 faces.

    aspect: half-extents along x, y, z before normalisation (the largest becomes 1); the torus's axis
    is y and its hole is along y.
    """
    a = np.asarray(aspect, np.float64)
    if kind not in KINDS:
        raise ValueError(f"unknown solid {kind!r}; expected one of {', '.join(KINDS)}")
    if a.shape != (3,) or not (a > 0).all():
        raise ValueError(f"aspect must be 3 positive half-extents, got {aspect}")
    n = SEGMENTS
    if kind == "cube":
        v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        f = np.array([t for q in quads for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))], np.int64)
    elif kind == "ellipsoid":
        s = ico_sphere(3)
        v, f = s.verts_packed().double().numpy(), s.faces_packed().numpy()
    elif kind in ("cylinder", "cone"):
        top = _ring(1.0 if kind == "cylinder" else 1e-9, 1.0, n)
        if kind == "cone":
            top = np.array([[0.0, 1.0, 0.0]])
        v = np.concatenate([_ring(1.0, -1.0, n), top, [[0, -1.0, 0], [0, 1.0, 0]]])
        bc, tc = len(v) - 2, len(v) - 1
        faces = []
        for i in range(n):
            j = (i + 1) % n
            faces.append((i, j, bc))
            if kind == "cylinder":
                faces += [(i, n + i, n + j), (i, n + j, j), (n + i, tc, n + j)]
            else:
                faces.append((i, n, j))
        if kind == "cone":  # the apex is vertex n; the top centre is unused
            v = v[:-1]
        f = np.array(faces, np.int64)
    else:  # torus: ring radius R in the xz plane, tube radius r
        r = TORUS_TUBE
        R = 1.0 - r
        m = n // 2
        u = 2 * np.pi * np.arange(n) / n
        w = 2 * np.pi * np.arange(m) / m
        uu, ww = np.meshgrid(u, w, indexing="ij")
        v = np.stack([(R + r * np.cos(ww)) * np.cos(uu), r * np.sin(ww), (R + r * np.cos(ww)) * np.sin(uu)], -1)
        v = v.reshape(-1, 3)
        idx = np.arange(n * m).reshape(n, m)
        faces = []
        for i in range(n):
            for j in range(m):
                p, q = idx[i, j], idx[(i + 1) % n, j]
                s_, t = idx[i, (j + 1) % m], idx[(i + 1) % n, (j + 1) % m]
                faces += [(p, s_, t), (p, t, q)]
        f = np.array(faces, np.int64)
        tri = v[f]
        nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        c = tri.mean(1)
        ring = c * np.array([1, 0, 1])
        ring = ring / np.linalg.norm(ring, axis=1, keepdims=True) * R
        if ((nrm * (c - ring)).sum(1) < 0).mean() > 0.5:
            f = f[:, [0, 2, 1]]
    if kind not in ("torus",):
        f = _orient_outward(v, f)
    v = v * (a / a.max())
    return v.astype(np.float32), f


def primitive_occupancy(kind: str, aspect: tuple[float, float, float] = (1.0, 1.0, 1.0), resolution: int = 32) -> np.ndarray:
    """(R, R, R) bool solid occupancy of ``kind`` (same frame and aspect as :func:`primitive_mesh`)
    at the cell centres of the grid over [-1, 1]^3, indexed [z, y, x]."""
    if kind not in KINDS:
        raise ValueError(f"unknown solid {kind!r}; expected one of {', '.join(KINDS)}")
    a = np.asarray(aspect, np.float64)
    a = a / a.max()
    c = -1 + (2 * np.arange(resolution) + 1) / resolution
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    x, y, z = x / a[0], y / a[1], z / a[2]
    if kind == "cube":
        return (np.abs(x) <= 1) & (np.abs(y) <= 1) & (np.abs(z) <= 1)
    if kind == "ellipsoid":  # the level-3 ico-sphere is inscribed in the unit sphere; within 0.3 % of it
        return x * x + y * y + z * z <= 1
    rho = np.sqrt(x * x + z * z)
    if kind == "cylinder":
        return (np.abs(y) <= 1) & (rho <= math.cos(math.pi / SEGMENTS))
    if kind == "cone":
        return (np.abs(y) <= 1) & (rho <= (1 - y) / 2 * math.cos(math.pi / SEGMENTS))
    r = TORUS_TUBE
    return (rho - (1 - r)) ** 2 + y * y <= r * r


def object_pose(rotation: np.ndarray, scale: float, translation: np.ndarray) -> np.ndarray:
    """(4, 4) object-to-camera transform: x_cam = scale * rotation @ x_obj + translation."""
    T = np.eye(4)
    T[:3, :3] = scale * np.asarray(rotation, np.float64)
    T[:3, 3] = translation
    return T


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, 3) points through a (4, 4) transform."""
    return points @ T[:3, :3].T + T[:3, 3]


def to_torch(verts: np.ndarray, faces: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(verts, np.float32)), torch.from_numpy(np.ascontiguousarray(faces))
