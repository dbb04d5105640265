"""Synthetic ``view_pairs`` datasets: textured rooms holding coloured objects, rendered with pytorch3d.

Backend of ``dl3d data make multiview``. Each scene is a box-shaped room (floor, ceiling, four walls)
whose surfaces carry a procedural tile texture (a checker of per-tile colour variations on a random
base colour, with per-texel noise), holding a few boxes (checkered faces) and spheres (striped) of
saturated colours, standing on the floor or floating. The whole scene is one mesh with one texture
atlas (``TexturesUV``), so it has few faces and renders fast on a CPU. Each pair is a source camera at
a random place inside the room, looking mostly towards an object, and a target camera moved from it
by a random rotation about the camera centre (at most ``max_rotation_deg``) and a random displacement
(at most ``max_translation`` metres): SynSin-like small baselines.

World frame: metres, z up; the room spans ``[0, X] x [0, Y] x [0, Z]`` with the floor at z = 0.
Cameras are OpenCV pinholes (x right, y down, z forward) with 4x4 world-to-camera poses and K in
pixels under the convention of ``dl3d.synsin.point_renderer``: pixel (row y, column x) covers
``[x, x + 1) x [y, y + 1)``, so the image centre is ``(W / 2, H / 2)``. Images are rendered from
exactly the stored K and poses (``pytorch3d.utils.cameras_from_opencv_projection``). Lighting is
ambient plus Lambertian diffuse from one point light, with no specular term, so a surface point has
the same colour in every view (photometric consistency holds up to resampling and occlusion).

Everything is deterministic: scene ``i`` depends only on ``(spec.seed, i)`` and the scene options,
not on the number of scenes or shards.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from pytorch3d.renderer import (
    BlendParams,
    HardPhongShader,
    Materials,
    MeshRasterizer,
    PointLights,
    RasterizationSettings,
    TexturesUV,
)
from pytorch3d.structures import Meshes
from pytorch3d.utils import cameras_from_opencv_projection, ico_sphere

from dl3d.config import opt
from dl3d.data import DatasetWriter, to_table
from dl3d.data.images import encode_png
from dl3d.data.view_tables import VIEW_PAIRS

__all__ = [
    "MultiviewSpec", "RenderedScene", "RenderedViews", "Scene", "SceneObject", "build_scene", "camera_pose",
    "make_scene", "multiview_table", "pinhole_intrinsics", "relative_motion", "render_scene", "render_views",
    "sample_view_pair", "write_multiview_dataset",
]

CAMERA_CLEARANCE = 0.45
"""Smallest distance, metres, from a source camera centre to an object's bounding sphere."""
WALL_MARGIN = 0.6
"""Smallest distance, metres, from a source camera centre to a wall, the floor or the ceiling."""
TEXELS_PER_TILE = 4
"""Texels along each side of a room texture tile."""
SPHERE_BANDS = 6
"""Horizontal colour bands on a sphere."""


@dataclass
class MultiviewSpec:
    """What ``dl3d data make multiview`` generates."""

    scenes: int = opt(8, "number of scenes (rooms); a scene never straddles two shards")
    pairs_per_scene: int = opt(8, "source/target view pairs rendered per scene")
    image_size: int = opt(64, "side of the square images, pixels")
    shards: int = opt(2, "number of Parquet shards (at most the number of scenes)")
    seed: int = opt(0, "random seed; scene i depends only on (seed, i)")
    fov_deg: float = opt(60.0, "field of view of the pinhole camera, degrees (square pixels, centred principal point)")
    max_rotation_deg: float = opt(15.0, "largest source-to-target rotation, degrees (random axis)")
    max_translation: float = opt(0.3, "largest source-to-target camera displacement, metres (random direction)")
    min_objects: int = opt(3, "fewest objects per room")
    max_objects: int = opt(6, "most objects per room")
    room_min: float = opt(4.0, "smallest room width and depth, metres")
    room_max: float = opt(7.0, "largest room width and depth, metres")
    tile_size: float = opt(0.25, "side of the texture tiles on floor, walls and ceiling, metres")

    def __post_init__(self):
        for name in ("scenes", "pairs_per_scene", "shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {self.image_size}")
        if self.shards > self.scenes:
            raise ValueError(f"shards must be <= scenes (a scene never straddles two shards), "
                             f"got {self.shards} shards for {self.scenes} scenes")
        if not 10.0 <= self.fov_deg <= 120.0:
            raise ValueError(f"fov_deg must be in [10, 120], got {self.fov_deg}")
        if not 0.0 <= self.max_rotation_deg <= 90.0:
            raise ValueError(f"max_rotation_deg must be in [0, 90], got {self.max_rotation_deg}")
        if not 0.0 <= self.max_translation <= WALL_MARGIN - 0.1:
            raise ValueError(f"max_translation must be in [0, {WALL_MARGIN - 0.1:g}] metres (cameras stay inside "
                             f"the room), got {self.max_translation}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"expected 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 3.0 <= self.room_min <= self.room_max:
            raise ValueError(f"expected 3 <= room_min <= room_max metres, got {self.room_min}, {self.room_max}")
        if not 0.05 <= self.tile_size <= 2.0:
            raise ValueError(f"tile_size must be in [0.05, 2] metres, got {self.tile_size}")


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


@dataclass
class RenderedViews:
    """Output of :func:`render_views` for N cameras."""

    images: torch.Tensor
    """(N, H, W, 3) float32 RGB in [0, 1]; pixels that see nothing are black."""
    depth: torch.Tensor
    """(N, H, W) float32 camera-frame z of the visible surface, metres; 0 where nothing is seen."""


# ---------------------------------------------------------------------------------------------- geometry

def pinhole_intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """(3, 3) K in pixels: horizontal field of view ``fov_deg``, square pixels, principal point (W/2, H/2)."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def camera_pose(eye: np.ndarray, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """(4, 4) world-to-camera pose (OpenCV axes) of a camera at ``eye`` (world, metres, z up).

    yaw: heading of the optical axis about world z, radians (0 = looking along +x, pi/2 = along +y).
    pitch: elevation of the optical axis, radians (positive = looking up). roll: rotation about the
    optical axis, radians (positive turns the image clockwise as seen by the viewer).
    """
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])  # rows: camera axes in world coordinates
    c, s = math.cos(roll), math.sin(roll)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.asarray(eye, dtype=np.float64)
    return T


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def relative_motion(rng: np.random.Generator, max_rotation_deg: float, max_translation: float) -> np.ndarray:
    """(4, 4) source-camera-to-target-camera transform ``D`` (``T_tgt = D @ T_src``).

    The camera turns about its own centre by an angle uniform in [0, max_rotation_deg] about a uniformly
    random axis, and its centre moves by a uniformly random direction times a length uniform in
    [0, max_translation] metres (in source-camera axes): ``D = [R | -R d]``.
    """
    R = _rotation(_unit(rng), math.radians(rng.uniform(0.0, max_rotation_deg)))
    d = _unit(rng) * rng.uniform(0.0, max_translation)
    D = np.eye(4)
    D[:3, :3] = R
    D[:3, 3] = -R @ d
    return D


# ------------------------------------------------------------------------------------------------ meshes

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
_SPHERE = ico_sphere(2)
_SPHERE_VERTS = _SPHERE.verts_packed().double().numpy()
_SPHERE_FACES = _SPHERE.faces_packed().numpy().astype(np.int64)
_QUAD = np.array([[0, 1, 2], [0, 2, 3]])


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
            c, s = math.cos(obj.yaw), math.sin(obj.yaw)
            rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
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
    for obj, patch in spheres:
        h = atlas.patches[patch].shape[0] - 2
        verts.append(_SPHERE_VERTS * obj.size[0] / 2 + obj.centre)
        faces.append(_SPHERE_FACES + n)
        xy = np.stack([np.full(len(_SPHERE_VERTS), 2.0), (1.0 - _SPHERE_VERTS[:, 2]) / 2 * h], axis=1)
        uvs.append(_patch_uv(xy, offsets[patch], texture.shape[:2]))
        n += len(_SPHERE_VERTS)
    return Scene(room=room, objects=list(objects), light=light, verts=np.concatenate(verts).astype(np.float32),
                 faces=np.concatenate(faces).astype(np.int64), verts_uvs=np.concatenate(uvs).astype(np.float32),
                 texture=texture)


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    """A random saturated RGB colour (HSV with S in [0.6, 1], V in [0.6, 1])."""
    h, s, v = rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def make_scene(rng: np.random.Generator, spec: MultiviewSpec) -> Scene:
    """A random room (width and depth in [room_min, room_max], height in [2.5, 3.2] m) with
    ``min_objects..max_objects`` boxes (0.3-1.0 m sides, on the floor) and spheres (radius 0.15-0.45 m,
    on the floor or floating up to 1.8 m), at least 0.3 m from the walls."""
    room = np.array([rng.uniform(spec.room_min, spec.room_max), rng.uniform(spec.room_min, spec.room_max),
                     rng.uniform(2.5, 3.2)])
    objects = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        if rng.random() < 0.5:
            size = rng.uniform(0.3, 1.0, size=3)
            r = np.linalg.norm(size[:2]) / 2
            xy = rng.uniform(0.3 + r, room[:2] - 0.3 - r)
            objects.append(SceneObject("box", np.array([*xy, size[2] / 2]), size, _saturated_colour(rng),
                                       yaw=float(rng.uniform(0, np.pi))))
        else:
            r = rng.uniform(0.15, 0.45)
            xy = rng.uniform(0.3 + r, room[:2] - 0.3 - r)
            z = r if rng.random() < 0.5 else rng.uniform(r + 0.2, 1.8)
            objects.append(SceneObject("sphere", np.array([*xy, z]), np.full(3, 2 * r), _saturated_colour(rng)))
    return build_scene(room, objects, rng=rng, tile_size=spec.tile_size)


def sample_view_pair(rng: np.random.Generator, scene: Scene, spec: MultiviewSpec) -> tuple[np.ndarray, np.ndarray]:
    """(src_pose, tgt_pose), each (4, 4) world-to-camera (OpenCV axes), ``tgt = relative_motion @ src``.

    The source camera is at least ``WALL_MARGIN`` from the room's surfaces and ``CAMERA_CLEARANCE``
    from every object's bounding sphere, at height 0.8-2.0 m. Seven times in ten it faces a random
    object (+-20 degrees of heading); otherwise a random heading. Pitch is clipped to [-30, 15] degrees,
    roll is within +-5 degrees.
    """
    room = scene.room
    lo = np.array([WALL_MARGIN, WALL_MARGIN, 0.8])
    hi = np.array([room[0] - WALL_MARGIN, room[1] - WALL_MARGIN, min(2.0, room[2] - WALL_MARGIN)])
    for _ in range(200):
        eye = rng.uniform(lo, hi)
        if all(np.linalg.norm(eye - o.centre) > o.radius + CAMERA_CLEARANCE for o in scene.objects):
            break
    if scene.objects and rng.random() < 0.7:
        look = scene.objects[int(rng.integers(len(scene.objects)))].centre - eye
        yaw = math.atan2(look[1], look[0]) + math.radians(rng.uniform(-20, 20))
        pitch = math.atan2(look[2], np.linalg.norm(look[:2])) + math.radians(rng.uniform(-10, 10))
    else:
        yaw, pitch = rng.uniform(-np.pi, np.pi), math.radians(rng.uniform(-20, 10))
    pitch = float(np.clip(pitch, math.radians(-30), math.radians(15)))
    src = camera_pose(eye, yaw, pitch, math.radians(rng.uniform(-5, 5)))
    return src, relative_motion(rng, spec.max_rotation_deg, spec.max_translation) @ src


# --------------------------------------------------------------------------------------------- rendering

def render_views(scene: Scene, K: np.ndarray, poses: np.ndarray, height: int, width: int,
                 device: str | torch.device = "cpu") -> RenderedViews:
    """Render ``scene`` from N OpenCV cameras with pytorch3d (MeshRasterizer + HardPhongShader).

    K: (3, 3) or (N, 3, 3) intrinsics in pixels (pixel (y, x) covers [x, x+1) x [y, y+1)).
    poses: (N, 4, 4) world-to-camera, OpenCV axes, metres. height, width: image size in pixels.
    device: where to render; the results are returned on the CPU. Hard rasterisation (one face per
    pixel), faces clipped at z = 1 cm in front of the camera.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"expected poses of shape (N, 4, 4), got {poses.shape}")
    n = poses.shape[0]
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (n, 3, 3))
    if K.shape != (n, 3, 3):
        raise ValueError(f"expected K of shape (3, 3) or ({n}, 3, 3), got {K.shape}")

    def t(x, dtype=torch.float32):
        return torch.tensor(np.asarray(x), dtype=dtype, device=device)

    cameras = cameras_from_opencv_projection(R=t(poses[:, :3, :3]), tvec=t(poses[:, :3, 3]), camera_matrix=t(K),
                                             image_size=t([[height, width]] * n))
    faces = t(scene.faces, torch.int64)
    textures = TexturesUV(maps=[t(scene.texture)], faces_uvs=[faces], verts_uvs=[t(scene.verts_uvs)])
    mesh = Meshes(verts=[t(scene.verts)], faces=[faces], textures=textures).extend(n)
    raster = RasterizationSettings(image_size=(height, width), blur_radius=0.0, faces_per_pixel=1,
                                   z_clip_value=0.01)
    rasterizer = MeshRasterizer(cameras=cameras, raster_settings=raster)
    lights = PointLights(device=device, location=[scene.light.tolist()], ambient_color=((0.5, 0.5, 0.5),),
                         diffuse_color=((0.5, 0.5, 0.5),), specular_color=((0.0, 0.0, 0.0),))
    materials = Materials(device=device, ambient_color=((1.0, 1.0, 1.0),), diffuse_color=((1.0, 1.0, 1.0),),
                          specular_color=((0.0, 0.0, 0.0),))
    shader = HardPhongShader(device=device, cameras=cameras, lights=lights, materials=materials,
                             blend_params=BlendParams(background_color=(0.0, 0.0, 0.0)))
    with torch.no_grad():
        fragments = rasterizer(mesh)
        images = shader(fragments, mesh)[..., :3].clamp(0.0, 1.0)
    depth = fragments.zbuf[..., 0]
    depth = torch.where(depth > 0, depth, torch.zeros_like(depth))
    return RenderedViews(images=images.contiguous().cpu(), depth=depth.cpu())


# --------------------------------------------------------------------------------------------- datasets

@dataclass
class RenderedScene:
    """One scene of a multiview dataset and its rendered pairs (what :func:`render_scene` returns)."""

    name: str
    """Scene id, ``room-{index:05d}``."""
    scene: Scene
    intrinsics: np.ndarray
    """(3, 3) K in pixels, shared by every view."""
    poses: np.ndarray
    """(2P, 4, 4) world-to-camera poses, OpenCV axes: source 0, target 0, source 1, target 1, ..."""
    views: RenderedViews
    """Images and depth of the 2P views, in the order of ``poses``."""


def render_scene(index: int, spec: MultiviewSpec) -> RenderedScene:
    """Scene ``index`` of the dataset ``spec`` describes, with its ``spec.pairs_per_scene`` pairs rendered.

    Deterministic: the random stream is ``np.random.default_rng([spec.seed, index])``.
    """
    rng = np.random.default_rng([spec.seed, index])
    scene = make_scene(rng, spec)
    pairs = [sample_view_pair(rng, scene, spec) for _ in range(spec.pairs_per_scene)]
    poses = np.stack([p for pair in pairs for p in pair])
    size = spec.image_size
    K = pinhole_intrinsics(size, size, spec.fov_deg)
    return RenderedScene(f"room-{index:05d}", scene, K, poses, render_views(scene, K, poses, size, size))


def _scene_rows(index: int, spec: MultiviewSpec) -> dict[str, Any]:
    r = render_scene(index, spec)
    images = (r.views.images.numpy() * 255.0).round().astype(np.uint8)
    p, size = spec.pairs_per_scene, spec.image_size
    return {
        "id": [f"{r.name}/{k:03d}" for k in range(p)],
        "scene": [r.name] * p,
        "src_frame": list(range(0, 2 * p, 2)),
        "tgt_frame": list(range(1, 2 * p, 2)),
        "src_image": [encode_png(images[2 * k]) for k in range(p)],
        "tgt_image": [encode_png(images[2 * k + 1]) for k in range(p)],
        "width": [size] * p,
        "height": [size] * p,
        "intrinsics": np.repeat(r.intrinsics[None], p, axis=0),
        "src_pose": r.poses[0::2],
        "tgt_pose": r.poses[1::2],
    }


def multiview_table(scene_indices: list[int], spec: MultiviewSpec) -> pa.Table:
    """The ``view_pairs`` rows of the given scenes: ``spec.pairs_per_scene`` rows each, in order."""
    cols: dict[str, list] = {c.name: [] for c in VIEW_PAIRS.columns}
    for i in scene_indices:
        for k, v in _scene_rows(int(i), spec).items():
            cols[k].extend(v)
    return to_table(VIEW_PAIRS, cols)


def write_multiview_dataset(url: str, spec: MultiviewSpec, *,
                            storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render ``spec`` and write it as a ``view_pairs`` dataset at ``url``; return its ``_dataset.json`` content.

    Scenes are split into ``spec.shards`` contiguous groups (a scene never straddles two shards).
    Writing over an earlier dataset at the same URL replaces it (see ``DatasetWriter``).
    """
    writer = DatasetWriter(url, VIEW_PAIRS, storage_options=storage_options, produced_by={
        "generator": "dl3d data make multiview", "spec": dataclasses.asdict(spec), "synthetic": True})
    groups = np.array_split(np.arange(spec.scenes), spec.shards)
    for shard, scenes in enumerate(groups):
        writer.write_shard(shard, multiview_table(scenes.tolist(), spec))
    return writer.close(num_scenes=spec.scenes, image_size=spec.image_size)
