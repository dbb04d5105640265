"""Pix3D (Sun et al., CVPR 2018) on disk -> ``object_images`` (``dl3d ingest pix3d``).

The layout Pix3D ships: ``ROOT/pix3d.json`` (a list of annotations) with, per annotation, ``img``
(``img/<category>/<name>.jpg|png``), ``mask`` (``mask/...png``), ``model`` (``model/.../model.obj``),
``voxel`` (``model/.../voxel.mat``, MATLAB, key ``voxel``, 128^3), ``category``, ``img_size`` ([w, h]),
``bbox`` ([x1, y1, x2, y2] pixels), ``rot_mat`` (3x3), ``trans_mat`` (3), ``focal_length`` (mm, on a
32 mm wide sensor). As Mesh R-CNN reads it (``meshrcnn_transforms.py``, ``utils/shape.py``):

- K = [[f, 0, w/2], [0, f, h/2], [0, 0, 1]] with f = focal_length * w / 32 pixels;
- the model goes to the camera by ``R v + t``; that camera has x left, y up, z forward, so dl3d's
  OpenCV frame is ``diag(-1, -1, 1)`` of it (a rotation: faces keep their orientation);
- the voxel grid is turned by ``rot90(k=3, axes=(1, 2))``, its occupied cells centred on their
  bounding box and scaled by twice their largest distance to the centre (``read_voxel``), then posed
  like the model. That map is stored as ``occupancy_to_camera`` with the grid max-pooled to
  ``occupancy_size``.

Images ``img/table/1749.jpg`` and ``img/table/0045.png`` (whose masks do not match, per the official
evaluation) and annotations whose files are missing or unreadable are skipped and listed.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

import numpy as np

from dl3d.config import opt
from dl3d.data import DatasetWriter
from dl3d.data import fs as fsx
from dl3d.data.dataset import write_json
from dl3d.data.images import image_size
from dl3d.data.mesh_tables import OBJECT_IMAGES, encode_mask, pack_occupancy
from dl3d.ingest.object_rows import flush_rows, load_obj_mesh, new_rows, pool_occupancy
from dl3d.ingest.report import INGEST_ERRORS, BaseIngestReport, SkippedInput

PIX3D_CATEGORIES = ("bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe")
"""Class ids 1..9 in this order (Mesh R-CNN's 9 Pix3D classes)."""
KNOWN_BAD = ("img/table/1749.jpg", "img/table/0045.png")
SENSOR_WIDTH_MM = 32.0
PIX3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])


@dataclass
class IngestPix3DConfig:
    """Options of ``dl3d ingest pix3d``."""

    images_per_shard: int = opt(256, "images per output shard")
    occupancy_size: int = opt(32, "side of the stored occupancy grids (the 128^3 voxels max-pooled)")
    split: str | None = opt(None, "a Mesh R-CNN split file (pix3d_s1_train.json etc.): keep the images it lists")

    def __post_init__(self):
        if self.images_per_shard < 1:
            raise ValueError(f"images_per_shard must be >= 1, got {self.images_per_shard}")
        if self.occupancy_size < 1 or 128 % self.occupancy_size:
            raise ValueError(f"occupancy_size must divide 128, got {self.occupancy_size}")


@dataclass
class Pix3DIngestReport(BaseIngestReport):
    images: int = 0
    per_category: dict[str, int] = field(default_factory=dict)

    def _counts(self) -> list[str]:
        return [f"{len(self.per_category)} categories"]

    def _written(self) -> str:
        return f"{self.images} object_images rows"


def pix3d_intrinsics(focal_length_mm: float, width: int, height: int) -> np.ndarray:
    """(3, 3) K in pixels: f = focal_length * width / 32 mm, principal point at the image centre."""
    f = focal_length_mm * width / SENSOR_WIDTH_MM
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


def voxel_grid_to_camera(voxel: np.ndarray, R: np.ndarray, t: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A Pix3D (D, D, D) voxel array -> ((size,)^3 occupancy indexed [z, y, x], (4, 4) grid-to-OpenCV-camera).

    Reproduces ``read_voxel`` (rot90, centring, scaling) and the pose, as one affine map of the grid frame.
    """
    vox = np.rot90(np.asarray(voxel) > 0, k=3, axes=(1, 2))
    D = vox.shape[0]
    if vox.shape != (D, D, D) or D % size:
        raise ValueError(f"expected a cubic voxel grid whose side {size} divides, got {vox.shape}")
    idx = np.argwhere(vox).astype(np.float64)
    if len(idx) == 0:
        raise ValueError("the voxel grid is empty")
    center = (idx.max(0) + idx.min(0)) / 2
    scale = np.sqrt(((idx - center) ** 2).sum(1).max()) * 2
    # grid frame g in [-1, 1] along (a0, a1, a2) -> original index a = (g + 1) D / 2 - 0.5 -> model p = (a - c) / s
    A = np.eye(3) * (D / 2) / scale
    b = (D / 2 - 0.5 - center) / scale
    T = np.eye(4)
    T[:3, :3] = PIX3D_TO_OPENCV @ np.asarray(R, np.float64) @ A
    T[:3, 3] = PIX3D_TO_OPENCV @ (np.asarray(R, np.float64) @ b + np.asarray(t, np.float64))
    pooled = pool_occupancy(vox, size)
    return np.ascontiguousarray(pooled.transpose(2, 1, 0)), T  # our grids are indexed [z, y, x] = [a2, a1, a0]


def ingest_pix3d(root: str, output: str, cfg: IngestPix3DConfig) -> Pix3DIngestReport:
    """Read ``root/pix3d.json`` and its files; write an ``object_images`` dataset at ``output``."""
    from dl3d.data.images import decode_image
    from dl3d.data.mesh_tables import decode_mask

    fs, base = fsx.resolve(root)
    ann_path = fsx.join(base, "pix3d.json")
    if not fsx.exists(fs, ann_path):
        raise FileNotFoundError(f"{root}: no pix3d.json (expected Pix3D's layout: pix3d.json, img/, mask/, model/)")
    annotations = json.loads(fsx.get_bytes(fs, ann_path))
    keep = None
    if cfg.split:
        sfs, spath = fsx.resolve(cfg.split)
        keep = {im["file_name"] for im in json.loads(fsx.get_bytes(sfs, spath))["images"]}
    report = Pix3DIngestReport(output_url=output)
    writer = DatasetWriter(output, OBJECT_IMAGES, produced_by={"ingest": "pix3d", "root": root})
    rows = new_rows()
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for n, ann in enumerate(annotations):
        name = ann.get("img", f"annotation {n}")
        if keep is not None and name not in keep:
            continue
        if name in KNOWN_BAD:
            report.skipped.append(SkippedInput(name, "its mask does not match the image (official evaluation)"))
            continue
        try:
            img_bytes = fsx.get_bytes(fs, fsx.join(base, ann["img"]))
            decode_image(img_bytes, name)
            w, h = image_size(img_bytes, name)
            mask = decode_mask(fsx.get_bytes(fs, fsx.join(base, ann["mask"])), ann["mask"])
            if mask.shape != (h, w):
                raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image {w}x{h}")
            R, t = np.asarray(ann["rot_mat"], np.float64), np.asarray(ann["trans_mat"], np.float64)
            if ann["model"] not in meshes:
                meshes[ann["model"]] = load_obj_mesh(fs, fsx.join(base, ann["model"]))
            v, f = meshes[ann["model"]]
            verts = (v.astype(np.float64) @ R.T + t) @ PIX3D_TO_OPENCV.T
            occ, T = voxel_grid_to_camera(_load_voxel(fs, fsx.join(base, ann["voxel"])), R, t, cfg.occupancy_size)
            label = PIX3D_CATEGORIES.index(ann["category"]) + 1
        except (KeyError, ValueError, OSError) as exc:
            report.skipped.append(SkippedInput(name, f"{type(exc).__name__}: {exc}"))
            continue
        rows["id"].append(posixpath.splitext(name)[0])
        rows["image"].append(img_bytes)
        rows["width"].append(w)
        rows["height"].append(h)
        rows["intrinsics"].append(pix3d_intrinsics(float(ann["focal_length"]), w, h).astype(np.float32))
        rows["labels"].append([label])
        rows["boxes"].append([[float(x) for x in ann["bbox"]]])
        rows["masks"].append([encode_mask(mask)])
        rows["verts"].append([verts.astype(np.float32).tolist()])
        rows["faces"].append([f.astype(np.int32).tolist()])
        rows["occupancy"].append([pack_occupancy(occ)])
        rows["occupancy_size"].append(cfg.occupancy_size)
        rows["occupancy_to_camera"].append([T.astype(np.float32).tolist()])
        report.per_category[ann["category"]] = report.per_category.get(ann["category"], 0) + 1
        report.images += 1
        if len(rows["id"]) == cfg.images_per_shard:
            flush_rows(writer, rows, report)
    if rows["id"]:
        flush_rows(writer, rows, report)
    out_fs, out_root = fsx.resolve(output)
    write_json(out_fs, fsx.join(out_root, INGEST_ERRORS), [s.__dict__ for s in report.skipped])
    writer.close(categories=list(PIX3D_CATEGORIES))
    return report


def _load_voxel(fs, path: str) -> np.ndarray:
    import io

    from scipy.io import loadmat

    return loadmat(io.BytesIO(fsx.get_bytes(fs, path)))["voxel"]
