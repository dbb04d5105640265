"""CLEVR-like scenes under GIRAFFE's own prior, rendered with pytorch3d: an ``images`` dataset with truth.

Backend of ``dl3d data make clevr``. Each scene: a flat grey ground (z = 0) under a light grey sky, and
2-5 primitives (cubes, spheres, cylinders) of random saturated colours, resting on the ground at uniform
positions in ``[-extent, extent]^2`` without overlapping, cubes and cylinders turned about z at random.
The number of objects follows the official CLEVR2345 probabilities (0.195, 0.244, 0.253, 0.309 for
2, 3, 4, 5), renormalised over ``[min_objects, max_objects]``. Objects have half-size ``object_size``
(0.17, the CLEVR presets' box scale), so their centres sit at z = 0.17 (the presets' plane: 0.1665).

The camera is the model's: at ``radius`` from the origin, elevation ``v`` (GIRAFFE's units:
``phi = arccos(1 - 2v)``), azimuth 0, looking at the origin, z up, field of view ``fov`` across the
pixel-centre span (see ``dl3d.giraffe.camera``). Shading: ambient plus Lambertian diffuse from one
point light above the camera, no specular term. Images are rendered at 2x and averaged down (anti-aliased).

Truth columns: ``object_count``, ``object_positions`` (K, 3) world centres, ``object_colors`` (K, 3)
RGB in [0, 1], ``object_shapes`` (names), ``object_masks`` (one grey PNG per object, 255 where that
object is the visible surface at the pixel's centre: the ray GIRAFFE's camera casts through that pixel,
so a mask's area is an unbiased estimate of the object's projected area; the earlier rule "at least half
of the 2 x 2 sub-pixels" counted the ties and made 32-px masks about 10 % too large). Scene ``i``
depends only on ``(seed, i)`` and the options, not on the number of scenes or shards.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dl3d.config import opt
from dl3d.data import DatasetWriter, to_table
from dl3d.data.images import encode_png
from dl3d.data.view_tables import IMAGES

COUNT_PROBS = {2: 0.19456788355146545395, 3: 0.24355003312266127155, 4: 0.25269546846185522711,
               5: 0.30918661486401804737}
"""Official CLEVR2345 probabilities of 2, 3, 4, 5 objects."""
SHAPES = ("cube", "sphere", "cylinder")
GROUND_RGB = (0.5, 0.5, 0.5)
SKY_RGB = (0.8, 0.8, 0.82)


@dataclass
class ClevrSpec:
    """What ``dl3d data make clevr`` renders."""

    scenes: int = opt(512, "number of images")
    image_size: int = opt(64, "image side, pixels")
    shards: int = opt(4, "Parquet shards (contiguous groups of scenes)")
    min_objects: int = opt(2, "fewest objects per scene (2-5)")
    max_objects: int = opt(5, "most objects per scene (2-5)")
    object_size: float = opt(0.17, "object half-size (cube half-edge, sphere and cylinder radius)")
    extent: float = opt(0.713, "object centres are uniform in [-extent, extent]^2 (the presets' translation range)")
    radius: float = opt(2.732, "camera distance from the origin (the presets' radius)")
    elevation_v: float = opt(0.33333, "camera elevation in GIRAFFE's units (phi = arccos(1 - 2v)); CLEVR presets")
    fov: float = opt(49.13, "field of view, degrees, across the pixel-centre span")
    seed: int = opt(0, "random seed")

    def __post_init__(self):
        if self.scenes < 1 or self.shards < 1 or self.image_size < 8:
            raise ValueError(f"need scenes >= 1, shards >= 1, image_size >= 8; got {self.scenes}, {self.shards}, "
                             f"{self.image_size}")
        if self.shards > self.scenes:
            raise ValueError(f"shards ({self.shards}) must be <= scenes ({self.scenes})")
        if not 2 <= self.min_objects <= self.max_objects <= 5:
            raise ValueError(f"need 2 <= min_objects <= max_objects <= 5, got {self.min_objects}, {self.max_objects}")
        if not 0 < self.object_size < self.extent:
            raise ValueError(f"need 0 < object_size < extent, got {self.object_size}, {self.extent}")


@dataclass
class ClevrScene:
    """One scene's objects (world frame, z up)."""

    shapes: list[str]
    positions: np.ndarray
    """(K, 3) centres."""
    colors: np.ndarray
    """(K, 3) RGB in [0, 1]."""
    angles: np.ndarray
    """(K,) rotations about z, radians."""


def sample_scene(spec: ClevrSpec, index: int) -> ClevrScene:
    """Scene ``index`` of ``spec``: counts from the official probabilities, non-overlapping positions."""
    rng = np.random.default_rng([spec.seed, index])
    counts = list(range(spec.min_objects, spec.max_objects + 1))
    p = np.array([COUNT_PROBS[c] for c in counts])
    k = int(rng.choice(counts, p=p / p.sum()))
    gap = 2 * spec.object_size * math.sqrt(2) + 0.02  # bounding circles of turned cubes never touch
    positions: list[np.ndarray] = []
    while len(positions) < k:
        xy = rng.uniform(-spec.extent, spec.extent, 2)
        if all(np.linalg.norm(xy - q[:2]) >= gap for q in positions):
            positions.append(np.array([xy[0], xy[1], spec.object_size]))
    hues = rng.uniform(0, 1, k)
    colors = np.stack([_hsv(h, rng.uniform(0.6, 0.9), rng.uniform(0.55, 0.95)) for h in hues])
    shapes = [SHAPES[i] for i in rng.integers(0, len(SHAPES), k)]
    return ClevrScene(shapes, np.stack(positions), colors, rng.uniform(0, 2 * math.pi, k))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _primitive(shape: str, size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices (V, 3) and faces (F, 3) of a primitive centred at the origin with half-size ``size``."""
    if shape == "cube":
        v = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32)
        f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                          [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
        return v * size, f
    if shape == "sphere":
        from pytorch3d.utils import ico_sphere

        mesh = ico_sphere(2)
        return mesh.verts_packed() * size, mesh.faces_packed()
    n = 24  # cylinder: axis z, radius and half-height = size
    a = torch.arange(n) * 2 * math.pi / n
    ring = torch.stack((a.cos(), a.sin()), -1)
    v = torch.cat((torch.cat((ring, -torch.ones(n, 1)), 1), torch.cat((ring, torch.ones(n, 1)), 1),
                   torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])))
    i, j = torch.arange(n), (torch.arange(n) + 1) % n
    side = torch.cat((torch.stack((i, j, n + j), 1), torch.stack((i, n + j, n + i), 1)))
    caps = torch.cat((torch.stack((torch.full((n,), 2 * n), j, i), 1), torch.stack((torch.full((n,), 2 * n + 1), n + i, n + j), 1)))
    return v * size, torch.cat((side, caps))


def _camera(spec: ClevrSpec, size: int):
    """pytorch3d FoV camera equal to GIRAFFE's (pixel-centre fov -> pixel-edge fov)."""
    from pytorch3d.renderer import FoVPerspectiveCameras

    from dl3d.giraffe.camera import camera_pose

    pose = camera_pose(torch.zeros(1), torch.tensor([spec.elevation_v]), spec.radius)[0]
    rot, eye = pose[:3, :3], pose[:3, 3]
    R = rot @ torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # camera x right, y up, z back -> pytorch3d's view axes
    T = -eye @ R
    edge_fov = 2 * math.degrees(math.atan(math.tan(math.radians(spec.fov) / 2) * size / (size - 1)))
    return FoVPerspectiveCameras(R=R[None], T=T[None], fov=edge_fov, znear=0.1, zfar=50.0), eye


def render_scene(scene: ClevrScene, spec: ClevrSpec) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 image and (K, S, S) bool visible masks of one scene."""
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.transforms import euler_angles_to_matrix

    s = spec.image_size
    hi = 2 * s
    verts, faces, owner, colors = [], [], [], []
    offset = 0
    g = 8.0  # the ground, object id -1
    verts.append(torch.tensor([[-g, -g, 0.0], [g, -g, 0.0], [g, g, 0.0], [-g, g, 0.0]]))
    faces.append(torch.tensor([[0, 1, 2], [0, 2, 3]]))
    owner.append(torch.full((2,), -1))
    colors.append(torch.tensor(GROUND_RGB).expand(2, 3))
    offset = 4
    for k, (shape, pos, col, ang) in enumerate(zip(scene.shapes, scene.positions, scene.colors, scene.angles)):
        v, f = _primitive(shape, spec.object_size)
        rz = euler_angles_to_matrix(torch.tensor([0.0, 0.0, ang], dtype=torch.float64), "XYZ").float()  # about z
        verts.append(v @ rz.T + torch.tensor(pos, dtype=torch.float32))
        faces.append(f + offset)
        owner.append(torch.full((f.shape[0],), k))
        colors.append(torch.tensor(col, dtype=torch.float32).expand(f.shape[0], 3))
        offset += v.shape[0]
    mesh = Meshes([torch.cat(verts)], [torch.cat(faces)])
    owner_t, colors_t = torch.cat(owner), torch.cat(colors)
    cameras, eye = _camera(spec, s)
    # rasterise at 2x; pixel centres of the 2x grid average down to the 1x pixel centres' footprint
    frags = MeshRasterizer(cameras=cameras, raster_settings=RasterizationSettings(image_size=hi, faces_per_pixel=1,
                                                                                  blur_radius=0.0))(mesh)
    # the masks: which object is hit at each pixel centre (a raster at 1x samples exactly the pixel centres)
    centre = MeshRasterizer(cameras=cameras, raster_settings=RasterizationSettings(
        image_size=s, faces_per_pixel=1, blur_radius=0.0))(mesh).pix_to_face[0, ..., 0]
    face = frags.pix_to_face[0, ..., 0]  # (2S, 2S), -1 = sky
    hit = face >= 0
    fidx = face.clamp_min(0)
    # shading: ambient + Lambert from a light above the camera, with the face normal
    normals = mesh.faces_normals_packed()
    pts = _surface_points(frags, mesh)
    light = eye + torch.tensor([0.0, 0.0, 2.0])
    to_light = light - pts
    to_light = to_light / to_light.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    n = normals[fidx]
    n = torch.where(((eye - pts) * n).sum(-1, keepdim=True) < 0, -n, n)  # face towards the camera
    lambert = (n * to_light).sum(-1).clamp_min(0)
    rgb = colors_t[fidx] * (0.45 + 0.55 * lambert[..., None])
    rgb = torch.where(hit[..., None], rgb, torch.tensor(SKY_RGB))
    img = rgb.reshape(s, 2, s, 2, 3).mean((1, 3))
    obj = torch.where(centre >= 0, owner_t[centre.clamp_min(0)], torch.full_like(centre, -1))
    masks = torch.stack([obj == k for k in range(len(scene.shapes))]) if scene.shapes else \
        torch.zeros(0, s, s, dtype=torch.bool)
    return (img.clamp(0, 1).numpy() * 255).round().astype(np.uint8), masks.numpy()


def _surface_points(frags, mesh) -> torch.Tensor:
    """(2S, 2S, 3) world points of the visible surface (barycentric interpolation; zeros for the sky)."""
    face = frags.pix_to_face[0, ..., 0].clamp_min(0)
    tri = mesh.verts_packed()[mesh.faces_packed()[face]]  # (H, W, 3, 3)
    bary = frags.bary_coords[0, ..., 0, :]  # (H, W, 3)
    return (bary[..., None] * tri).sum(-2)


def _mask_png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def clevr_table(indices: list[int], spec: ClevrSpec):
    """The ``images`` rows (with truth columns) of scenes ``indices``."""
    cols: dict[str, list] = {k: [] for k in ("id", "image", "width", "height", "object_count", "object_positions",
                                            "object_colors", "object_shapes", "object_masks")}
    for i in indices:
        scene = sample_scene(spec, i)
        img, masks = render_scene(scene, spec)
        cols["id"].append(f"clevr{i:06d}")
        cols["image"].append(encode_png(img))
        cols["width"].append(spec.image_size)
        cols["height"].append(spec.image_size)
        cols["object_count"].append(len(scene.shapes))
        cols["object_positions"].append(scene.positions.astype(np.float32))
        cols["object_colors"].append(scene.colors.astype(np.float32))
        cols["object_shapes"].append(scene.shapes)
        cols["object_masks"].append([_mask_png(m) for m in masks])
    return to_table(IMAGES, cols)


def write_clevr_dataset(url: str, spec: ClevrSpec, *, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render ``spec`` as an ``images`` dataset at ``url``; returns its ``_dataset.json`` content."""
    writer = DatasetWriter(url, IMAGES, storage_options=storage_options, produced_by={
        "generator": "dl3d data make clevr", "spec": dataclasses.asdict(spec), "synthetic": True})
    for shard, scenes in enumerate(np.array_split(np.arange(spec.scenes), spec.shards)):
        writer.write_shard(shard, clevr_table(scenes.tolist(), spec))
    return writer.close(num_scenes=spec.scenes, image_size=spec.image_size)


__all__ = ["COUNT_PROBS", "ClevrScene", "ClevrSpec", "clevr_table", "render_scene", "sample_scene",
           "write_clevr_dataset"]
