"""Synthetic ``view_pairs`` datasets: textured rooms holding coloured objects, rendered with pytorch3d.

Backend of ``dl3d data make multiview``. The rooms are built in ``dl3d.synthetic.room``, the cameras in
``dl3d.synthetic.cameras`` (both re-exported here). Each scene is a box-shaped room (floor, ceiling, four walls)
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
from dataclasses import dataclass
from typing import Any

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
from pytorch3d.utils import cameras_from_opencv_projection

from dl3d.config import opt
from dl3d.data import DatasetWriter, to_table
from dl3d.data.images import encode_png
from dl3d.data.view_tables import VIEW_PAIRS
from dl3d.synthetic.cameras import camera_pose, pinhole_intrinsics, relative_motion
from dl3d.synthetic.room import Scene, SceneObject, build_scene

__all__ = [
    "MultiviewSpec", "RenderedScene", "RenderedViews", "Scene", "SceneObject", "build_scene", "camera_pose",
    "make_scene", "multiview_table", "pinhole_intrinsics", "relative_motion", "render_scene", "render_views",
    "sample_view_pair", "write_multiview_dataset",
]

CAMERA_CLEARANCE = 0.45
"""Smallest distance, metres, from a source camera centre to an object's bounding sphere."""
WALL_MARGIN = 0.6
"""Smallest distance, metres, from a source camera centre to a wall, the floor or the ceiling."""


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
class RenderedViews:
    """Output of :func:`render_views` for N cameras."""

    images: torch.Tensor
    """(N, H, W, 3) float32 RGB in [0, 1]; pixels that see nothing are black."""
    depth: torch.Tensor
    """(N, H, W) float32 camera-frame z of the visible surface, metres; 0 where nothing is seen."""


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
