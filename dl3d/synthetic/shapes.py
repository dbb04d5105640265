"""Primitive solids for Mesh R-CNN data: closed meshes with analytic occupancy.

Five kinds (class ids 1..5): cube, ellipsoid, cylinder, cone and torus (genus 1, so a reconstruction's
topology is tested). Each solid lives in its own frame inside [-1, 1]^3 (longest half-extent 1);
:func:`primitive_mesh` gives a closed, consistently outward-oriented triangle mesh of it and
:func:`primitive_occupancy` its solid occupancy on an R^3 grid whose cell i spans
[-1 + 2i/R, -1 + 2(i+1)/R] (indexed [z, y, x]), which is what ``dl3d.meshrcnn.unit_box.voxel_targets``
reads with an ``occupancy_to_camera`` equal to the object's 4x4 pose (scale included).

Images (``dl3d data make shapes``): one or several solids with a random pose, size and colour in
front of an OpenCV pinhole camera, under a random point light over a random background colour,
rendered with pytorch3d (Phong). Per visible object: class, box and mask of its visible pixels,
its mesh in the camera frame and its occupancy grid with the grid-to-camera transform.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from pytorch3d.utils import ico_sphere

from dl3d.config import opt

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


# ------------------------------------------------------------------------------------- rendered images

@dataclass
class ShapesSpec:
    """What ``dl3d data make shapes`` generates."""

    images: int = opt(64, "number of images")
    image_size: int = opt(64, "side of the square images, pixels")
    shards: int = opt(2, "number of Parquet shards")
    seed: int = opt(0, "random seed; image i depends only on (seed, i) and the options")
    min_objects: int = opt(1, "fewest objects per image")
    max_objects: int = opt(1, "most objects per image")
    fov_deg: float = opt(50.0, "field of view, degrees (square pixels, centred principal point)")
    min_depth: float = opt(2.5, "nearest object centre, metres (a depth range with a size range makes the "
                                "depth of a single image ambiguous; ShapeNet renders sit at a near-fixed distance)")
    max_depth: float = opt(2.5, "farthest object centre, metres")
    min_size: float = opt(0.5, "smallest half-extent of an object's longest axis, metres")
    max_size: float = opt(0.5, "largest half-extent of an object's longest axis, metres")
    occupancy_size: int = opt(32, "side R of each object's stored occupancy grid")
    kinds: tuple[str, ...] = opt(KINDS, "solids to draw from (class id = position in KINDS + 1)")

    def __post_init__(self):
        self.kinds = tuple(self.kinds)
        for name in ("images", "image_size", "shards", "min_objects", "max_objects", "occupancy_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_objects > self.max_objects or self.shards > self.images:
            raise ValueError(f"need min_objects <= max_objects and shards <= images, got {self.min_objects}, "
                             f"{self.max_objects}, {self.shards}, {self.images}")
        if not 0 < self.min_depth <= self.max_depth or not 0 < self.min_size <= self.max_size:
            raise ValueError("need 0 < min_depth <= max_depth and 0 < min_size <= max_size")
        if not 5 < self.fov_deg < 150:
            raise ValueError(f"fov_deg must be in (5, 150), got {self.fov_deg}")
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")


def intrinsics(size: int, fov_deg: float) -> np.ndarray:
    """(3, 3) K of a square pinhole image, principal point at the centre (size / 2)."""
    f = size / 2 / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], np.float64)


def _sample_objects(rng: np.random.Generator, spec: ShapesSpec, K: np.ndarray) -> list[dict]:
    objs = []
    half_fov = math.atan(spec.image_size / 2 / K[0, 0])
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        aspect = tuple(rng.uniform(0.6, 1.0, 3)) if kind in ("cube", "ellipsoid") else \
            (1.0, float(rng.uniform(0.6, 1.0)), 1.0) if kind != "torus" else (1.0, 1.0, 1.0)
        scale = float(rng.uniform(spec.min_size, spec.max_size))
        depth = float(rng.uniform(spec.min_depth, spec.max_depth))
        room = max(0.0, math.tan(half_fov) * depth - scale * 1.1)  # keep the object inside the view
        xy = rng.uniform(-room, room, 2) * (0.5 if spec.max_objects == 1 else 1.0)
        T = object_pose(random_rotation(rng), scale, np.array([xy[0], xy[1], depth]))
        v, f = primitive_mesh(kind, aspect)
        objs.append({"kind": kind, "label": KINDS.index(kind) + 1, "verts": transform_points(T, v), "faces": f,
                     "occupancy": primitive_occupancy(kind, aspect, spec.occupancy_size), "T": T,
                     "colour": rng.uniform(0.2, 1.0, 3)})
    return objs


def render_objects(objs: list[dict], K: np.ndarray, size: int, light: np.ndarray, background: np.ndarray):
    """Render camera-frame objects: (H, W, 3) float image in [0, 1] and (H, W) int64 object index (-1 = none)."""
    from pytorch3d.renderer import (BlendParams, HardPhongShader, MeshRasterizer, PointLights,
                                    RasterizationSettings, TexturesVertex)
    from pytorch3d.structures import Meshes, join_meshes_as_scene
    from pytorch3d.utils import cameras_from_opencv_projection

    t = lambda x, dt=torch.float32: torch.as_tensor(np.asarray(x), dtype=dt)  # noqa: E731
    meshes = [Meshes([t(o["verts"])], [t(o["faces"], torch.int64)],
                     textures=TexturesVertex([t(np.tile(o["colour"], (len(o["verts"]), 1)))])) for o in objs]
    scene = join_meshes_as_scene(meshes)
    cams = cameras_from_opencv_projection(R=torch.eye(3)[None], tvec=torch.zeros(1, 3), camera_matrix=t(K)[None],
                                          image_size=torch.tensor([[size, size]]))
    raster = MeshRasterizer(cameras=cams, raster_settings=RasterizationSettings(image_size=size, faces_per_pixel=1))
    lights = PointLights(location=t(light)[None], ambient_color=((0.45, 0.45, 0.45),),
                         diffuse_color=((0.6, 0.6, 0.6),), specular_color=((0.1, 0.1, 0.1),))
    shader = HardPhongShader(cameras=cams, lights=lights,
                             blend_params=BlendParams(background_color=tuple(float(c) for c in background)))
    with torch.no_grad():
        frags = raster(scene)
        img = shader(frags, scene)[0, ..., :3].clamp(0, 1).numpy()
    face = frags.pix_to_face[0, ..., 0].numpy()
    bounds = np.cumsum([0] + [len(o["faces"]) for o in objs])
    index = np.where(face >= 0, np.searchsorted(bounds, face, side="right") - 1, -1)
    return img, index


def render_shapes_image(index: int, spec: ShapesSpec) -> dict:
    """Image ``index`` of ``spec``: ``image`` (H, W, 3) float, ``K``, and per visible object ``label``,
    ``box`` (visible extent), ``mask``, camera-frame ``verts``/``faces``, ``occupancy``, ``T``.
    Deterministic: the random stream is ``np.random.default_rng([spec.seed, index])``."""
    rng = np.random.default_rng([spec.seed, index])
    K = intrinsics(spec.image_size, spec.fov_deg)
    objs = _sample_objects(rng, spec, K)
    light = np.array([rng.uniform(-2, 2), rng.uniform(-2, 0), rng.uniform(-0.5, 1.0)])
    background = rng.uniform(0.0, 0.5, 3)
    img, idx = render_objects(objs, K, spec.image_size, light, background)
    kept = []
    for j, o in enumerate(objs):
        mask = idx == j
        if mask.sum() < 4:
            continue
        ys, xs = np.nonzero(mask)
        kept.append({**o, "mask": mask, "box": np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)})
    return {"image": img, "K": K, "objects": kept}


def shapes_table(indices: list[int], spec: ShapesSpec) -> pa.Table:
    """The ``object_images`` rows of the given image indices."""
    from dl3d.data import to_table
    from dl3d.data.images import encode_png
    from dl3d.data.mesh_tables import OBJECT_IMAGES, encode_mask, pack_occupancy

    rows = [render_shapes_image(int(i), spec) for i in indices]
    s = spec.image_size

    def per_object(key, fn=lambda v: v) -> list[list]:
        return [[fn(o[key]) for o in r["objects"]] for r in rows]

    return to_table(OBJECT_IMAGES, {
        "id": [f"shapes-{i:06d}" for i in indices], "image": [encode_png(r["image"]) for r in rows],
        "width": [s] * len(rows), "height": [s] * len(rows), "intrinsics": [r["K"] for r in rows],
        "labels": per_object("label"), "boxes": per_object("box"), "masks": per_object("mask", encode_mask),
        "verts": per_object("verts"), "faces": per_object("faces"), "occupancy": per_object("occupancy", pack_occupancy),
        "occupancy_size": [spec.occupancy_size] * len(rows), "occupancy_to_camera": per_object("T"),
    })


def write_shapes_dataset(url: str, spec: ShapesSpec, *, storage_options: dict | None = None,
                         processes: int = 1) -> dict:
    """Render ``spec`` as an ``object_images`` dataset at ``url``; returns its ``_dataset.json`` content.

    ``processes`` > 1 renders the shards in that many worker processes (the same rows: each image has
    its own random stream); they are written here, in shard order. The workers are spawned, not forked:
    a child forked after this process has run torch's threads can hang on a lock copied mid-use."""
    from dl3d.data import DatasetWriter
    from dl3d.data.mesh_tables import OBJECT_IMAGES

    writer = DatasetWriter(url, OBJECT_IMAGES, storage_options=storage_options, produced_by={
        "generator": "dl3d data make shapes", "spec": dataclasses.asdict(spec), "synthetic": True})
    chunks = [idx.tolist() for idx in np.array_split(np.arange(spec.images), spec.shards)]
    if processes > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            for shard, table in enumerate(pool.map(shapes_table, chunks, [spec] * len(chunks))):
                writer.write_shard(shard, table)
    else:
        for shard, idx in enumerate(chunks):
            writer.write_shard(shard, shapes_table(idx, spec))
    return writer.close(categories=list(KINDS), image_size=spec.image_size)
