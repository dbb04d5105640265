"""ShapeNet as 3D-R2N2 ships it (Choy et al. 2016) -> ``object_images`` (``dl3d ingest r2n2``).

The layout, as pytorch3d's ``R2N2`` loader and Mesh R-CNN's ``preprocess_shapenet.py`` read it:

- ``INPUT/ShapeNetRendering/<synset>/<model>/rendering/00.png .. 23.png``: 137x137 RGBA renderings
  (Blender), and ``rendering_metadata.txt``: one line per view, ``azimuth elevation in-plane-rotation
  distance-ratio fov`` (degrees, degrees, degrees, fraction, degrees);
- ``INPUT/ShapeNetVox32/<synset>/<model>/model.binvox``: 32^3 voxels (``dl3d.ingest.binvox``);
- ``SHAPENET/<synset>/<model>/model.obj``: the ShapeNetCore v1 model the views were rendered from;
- optionally a splits file ``{"train"|"val"|"test": {synset: {model: [view, ...]}}}``.

Per view, one row: the PNG composited over ``background`` (RGB), its alpha (>= 128) as the mask and
the mask's box, class = the synset (ids 1..13 in :data:`R2N2_SYNSETS` order), the model in that view's
camera and K, and the voxels with their grid-to-camera map. The camera, as Mesh R-CNN/pytorch3d build
it (``compute_extrinsic_matrix``): distance = distance-ratio * 1.75; the camera sits at
``distance * (cos(el) cos(az), sin(el), cos(el) sin(az))`` in the model's frame (y up), looking at
the origin with +y up in the image; Blender's camera frame (x right, y up, looking along -z) becomes
dl3d's OpenCV frame by diag(1, -1, -1). K: Blender's default camera (35 mm lens on a 32 mm sensor:
f = 2.1875 * max(W, H) / 2 pixels, half field of view 24.57 deg), as Mesh R-CNN and pytorch3d use;
``intrinsics="metadata"`` reads the fifth number (25 on the shipped files) as the half field of view
instead. The in-plane rotation is 0 on the shipped files and unused by both; a view with another
value is skipped. Lengths are ShapeNet v1's (each model fits a unit-diagonal box), not metres.

Voxels: ``voxel_alignment="bbox"`` maps the occupied voxel centres' index extent onto the mesh's
bounding box per axis (pytorch3d's and Mesh R-CNN's ``align_bbox``); ``"header"`` uses the binvox
``translate``/``scale``. A model without a binvox file gives rows without occupancy (and a warning:
Mesh R-CNN training needs it); a model whose files are missing or unreadable is skipped and listed.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dl3d.config import opt
from dl3d.data import DatasetWriter
from dl3d.data import fs as fsx
from dl3d.data.dataset import write_json
from dl3d.data.images import encode_png
from dl3d.data.mesh_tables import OBJECT_IMAGES, encode_mask, pack_occupancy
from dl3d.ingest.binvox import Binvox, read_binvox
from dl3d.ingest.object_rows import flush_rows, load_obj_mesh, new_rows, pool_occupancy
from dl3d.ingest.report import INGEST_ERRORS, BaseIngestReport, SkippedInput

R2N2_SYNSETS = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car", "03001627": "chair",
    "03211117": "display", "03636649": "lamp", "03691459": "loudspeaker", "04090263": "rifle", "04256520": "sofa",
    "04379243": "table", "04401088": "telephone", "04530566": "watercraft",
}
"""R2N2's 13 ShapeNet synsets (pytorch3d's ``r2n2_synset_dict.json``); class id = position + 1."""
RENDERINGS = "ShapeNetRendering"
MAX_CAMERA_DISTANCE = 1.75
"""R2N2's constant: camera distance = distance ratio * 1.75."""
BLENDER_FOCAL = 2.1875
"""Blender's default camera in normalised device units (35 mm lens / 16 mm half sensor)."""
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
MASK_ALPHA = 128
NUM_VIEWS = 24


@dataclass
class IngestR2N2Config:
    """Options of ``dl3d ingest r2n2``."""

    splits: str | None = opt(None, "an R2N2 splits JSON ({split: {synset: {model: [views]}}}); keep what --split lists")
    split: Literal["train", "val", "test"] = opt("train", "which split of --splits to ingest")
    views: tuple[int, ...] = opt(tuple(range(NUM_VIEWS)), "view numbers (0..23) to ingest per model")
    synsets: tuple[str, ...] | None = opt(None, "only these synsets (ids such as 03001627 or names such as chair)")
    voxels_dir: str = opt("ShapeNetVox32", "folder under --input holding <synset>/<model>/model.binvox")
    images_per_shard: int = opt(256, "views (rows) per output shard")
    occupancy_size: int | None = opt(None, "side of the stored occupancy grids (max-pooled; must divide the "
                                           "binvox side); default: the binvox side (32)")
    background: tuple[int, ...] = opt((255, 255, 255), "RGB (0..255) the RGBA renderings are composited over")
    intrinsics: Literal["blender", "metadata"] = opt(
        "blender", "K: blender = Blender's default camera (f = 2.1875 * max(W, H) / 2, as Mesh R-CNN and "
                   "pytorch3d); metadata = from the metadata's fov read as the half field of view")
    voxel_alignment: Literal["bbox", "header"] = opt(
        "bbox", "voxels to the model: bbox = occupied voxel extent onto the mesh's box (pytorch3d, Mesh R-CNN); "
                "header = the binvox translate/scale")

    def __post_init__(self):
        self.views = tuple(int(v) for v in self.views)
        if not self.views or len(set(self.views)) != len(self.views) or not all(0 <= v < NUM_VIEWS for v in self.views):
            raise ValueError(f"views must be distinct numbers in 0..{NUM_VIEWS - 1}, got {self.views}")
        if self.synsets is not None:
            names = {n: s for s, n in R2N2_SYNSETS.items()}
            bad = [s for s in self.synsets if s not in R2N2_SYNSETS and s not in names]
            if bad or not self.synsets:
                raise ValueError(f"synsets must be R2N2 synset ids or names ({', '.join(R2N2_SYNSETS.values())}), "
                                 f"got {bad or self.synsets}")
            self.synsets = tuple(names.get(s, s) for s in self.synsets)
        if self.images_per_shard < 1:
            raise ValueError(f"images_per_shard must be >= 1, got {self.images_per_shard}")
        if self.occupancy_size is not None and self.occupancy_size < 1:
            raise ValueError(f"occupancy_size must be >= 1 or unset, got {self.occupancy_size}")
        self.background = tuple(int(c) for c in self.background)
        if len(self.background) != 3 or not all(0 <= c <= 255 for c in self.background):
            raise ValueError(f"background must be 3 numbers in 0..255, got {self.background}")


@dataclass
class R2N2IngestReport(BaseIngestReport):
    models: int = 0
    """Models with at least one row written."""
    views: int = 0
    """Rows written (one per view)."""
    models_without_voxels: int = 0
    per_synset: dict[str, int] = field(default_factory=dict)
    """Rows per synset name."""

    def _counts(self) -> list[str]:
        return [f"{self.models} models", f"{len(self.per_synset)} synsets"]

    def _written(self) -> str:
        return f"{self.views} object_images rows"


def r2n2_extrinsics(azimuth: float, elevation: float, distance: float) -> np.ndarray:
    """(4, 4) model frame -> Blender camera frame (x right, y up, looking along -z) of one R2N2 view.

    azimuth, elevation: degrees; distance: model units (distance ratio * 1.75). The camera centre is
    ``distance * (cos(el) cos(az), sin(el), cos(el) sin(az))`` in the model's (y-up) frame; the result
    equals Mesh R-CNN's ``compute_extrinsic_matrix`` (which adds Blender's y-up -> z-up turn of OBJ files).
    """
    a, e = math.radians(azimuth), math.radians(elevation)
    centre = distance * np.array([math.cos(e) * math.cos(a), math.sin(e), math.cos(e) * math.sin(a)])
    back = centre / distance  # the camera's +z (it looks along -z, at the origin)
    right = np.array([math.sin(a), 0.0, -math.cos(a)])  # horizontal, so the model's +y is up in the image
    up = np.cross(back, right)
    R = np.stack([right, up, back])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ centre
    return T


def view_to_camera(azimuth: float, elevation: float, distance_ratio: float) -> np.ndarray:
    """(4, 4) model frame -> dl3d's OpenCV camera frame (x right, y down, z forward) of one R2N2 view."""
    T = r2n2_extrinsics(azimuth, elevation, distance_ratio * MAX_CAMERA_DISTANCE)
    out = np.eye(4)
    out[:3] = BLENDER_TO_OPENCV @ T[:3]
    return out


def r2n2_intrinsics(width: int, height: int, fov_deg: float | None = None) -> np.ndarray:
    """(3, 3) K in pixels, principal point at the image centre; f from Blender's default camera
    (``fov_deg`` None) or from a half field of view in degrees, across the larger image side."""
    half = max(width, height) / 2
    f = BLENDER_FOCAL * half if fov_deg is None else half / math.tan(math.radians(fov_deg))
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


def voxels_to_model(vox: Binvox, verts: np.ndarray, alignment: str) -> np.ndarray:
    """(4, 4) map from the binvox grid's [-1, 1]^3 frame (axes x, y, z; cell i of D centred at
    -1 + (2i + 1) / D) to the model's frame.

    bbox: the occupied centres' index extent onto ``verts``' box per axis (pytorch3d's ``align_bbox``);
    header: ``(index + 0.5) / D * scale + translate``.

    Raises:
        ValueError: an empty grid, a grid one cell thick or a flat mesh (bbox), a header without
            translate/scale (header).
    """
    d = vox.size
    A = np.eye(4)
    if alignment == "header":
        if vox.translate is None or vox.scale is None:
            raise ValueError("the binvox header has no translate/scale (use voxel_alignment='bbox')")
        A[:3, :3] *= vox.scale / 2
        A[:3, 3] = vox.scale / 2 + np.asarray(vox.translate)
        return A
    idx = np.argwhere(vox.occupancy)
    if len(idx) == 0:
        raise ValueError("the voxel grid is empty")
    lo, hi = idx.min(0), idx.max(0)
    vlo, vhi = verts.min(0).astype(np.float64), verts.max(0).astype(np.float64)
    if (hi == lo).any() or (vhi <= vlo).any():
        raise ValueError(f"cannot align voxels spanning {hi - lo} cells to a mesh box of size {vhi - vlo}")
    s = (vhi - vlo) / (hi - lo)  # per index step; index i = (g + 1) D / 2 - 0.5
    A[:3, :3] = np.diag(s * d / 2)
    A[:3, 3] = vlo + s * ((d - 1) / 2 - lo)
    return A


def ingest_r2n2(root: str, shapenet: str, output: str, cfg: IngestR2N2Config) -> R2N2IngestReport:
    """Read an R2N2 tree at ``root`` and ShapeNetCore v1 at ``shapenet``; write ``object_images`` at ``output``.

    Raises:
        FileNotFoundError: ``root`` has no ``ShapeNetRendering`` folder, or ``shapenet`` does not exist.
        ValueError: a splits file without the split, or nothing left to ingest.
    """
    fs, base = fsx.resolve(root)
    sfs, sbase = fsx.resolve(shapenet)
    renders = fsx.join(base, RENDERINGS)
    if not fs.isdir(renders):
        raise FileNotFoundError(f"{root}: no {RENDERINGS}/ folder (expected R2N2's layout: {RENDERINGS}/<synset>/"
                                f"<model>/rendering/NN.png and rendering_metadata.txt, {cfg.voxels_dir}/...)")
    if not sfs.isdir(sbase):
        raise FileNotFoundError(f"{shapenet}: no such folder (expected ShapeNetCore v1: <synset>/<model>/model.obj)")
    report = R2N2IngestReport(output_url=output)
    plan = _plan(fs, renders, cfg, report)
    writer = DatasetWriter(output, OBJECT_IMAGES, produced_by={
        "ingest": "r2n2", "root": root, "shapenet": shapenet, "split": cfg.split if cfg.splits else None,
        "intrinsics": cfg.intrinsics, "voxel_alignment": cfg.voxel_alignment, "background": list(cfg.background)})
    rows = new_rows()
    for synset, model, views in plan:
        name = f"{synset}/{model}"
        try:
            n, has_voxels = _ingest_model(fs, base, sfs, sbase, synset, model, views, cfg, rows, report)
        except (KeyError, ValueError, OSError) as exc:
            report.skipped.append(SkippedInput(name, f"{type(exc).__name__}: {exc}"))
            continue
        if n:
            report.models += 1
            report.models_without_voxels += not has_voxels
            report.per_synset[R2N2_SYNSETS[synset]] = report.per_synset.get(R2N2_SYNSETS[synset], 0) + n
        while len(rows["id"]) >= cfg.images_per_shard:
            _flush_first(writer, rows, cfg.images_per_shard, report)
    if rows["id"]:
        flush_rows(writer, rows, report)
    if report.models_without_voxels:
        report.warnings.append(f"{report.models_without_voxels} models have no {cfg.voxels_dir} voxels: their rows "
                               f"have no occupancy (Mesh R-CNN training needs it)")
    out_fs, out_root = fsx.resolve(output)
    write_json(out_fs, fsx.join(out_root, INGEST_ERRORS), [s.__dict__ for s in report.skipped])
    writer.close(categories=list(R2N2_SYNSETS.values()), warnings=report.warnings)
    return report


def _plan(fs, renders: str, cfg: IngestR2N2Config, report: R2N2IngestReport) -> list[tuple[str, str, list[int]]]:
    """(synset, model, views) to read: from the splits file, else every model folder under ShapeNetRendering."""
    wanted = set(cfg.synsets or R2N2_SYNSETS)
    plan = []
    if cfg.splits:
        sfs, spath = fsx.resolve(cfg.splits)
        splits = json.loads(fsx.get_bytes(sfs, spath))
        if not isinstance(splits, dict) or not isinstance(splits.get(cfg.split), dict):
            found = sorted(splits) if isinstance(splits, dict) else type(splits).__name__
            raise ValueError(f"{cfg.splits}: expected {{{cfg.split!r}: {{synset: {{model: [views]}}}}}}, found {found}")
        for synset, models in sorted(splits[cfg.split].items()):
            if synset not in R2N2_SYNSETS:
                report.skipped.append(SkippedInput(f"{cfg.splits}#{synset}", "not one of R2N2's 13 synsets"))
            elif synset in wanted:
                views = {m: [v for v in vs if v in cfg.views] for m, vs in sorted(models.items())}
                plan += [(synset, m, vs) for m, vs in views.items() if vs]
    else:
        for synset in _folders(fs, renders):
            if synset not in R2N2_SYNSETS:
                report.skipped.append(SkippedInput(f"{RENDERINGS}/{synset}", "not one of R2N2's 13 synsets"))
            elif synset in wanted:
                plan += [(synset, m, list(cfg.views)) for m in _folders(fs, fsx.join(renders, synset))]
    if not plan:
        raise ValueError(f"nothing to ingest: no model of synsets {sorted(wanted)} with views {list(cfg.views)} "
                         f"under {renders}"
                         + (f" in split {cfg.split!r} of {cfg.splits}" if cfg.splits else ""))
    return plan


def _folders(fs, path: str) -> list[str]:
    return sorted(posixpath.basename(e["name"].rstrip("/")) for e in fs.ls(path, detail=True)
                  if e["type"] == "directory")


def _ingest_model(fs, base, sfs, sbase, synset, model, views, cfg, rows, report) -> tuple[int, bool]:
    """Append the rows of one model's views; returns (rows added, whether it had voxels)."""
    rendering = fsx.join(base, RENDERINGS, synset, model, "rendering")
    meta = fsx.get_bytes(fs, fsx.join(rendering, "rendering_metadata.txt")).decode("utf-8", "replace").splitlines()
    verts, faces = load_obj_mesh(sfs, fsx.join(sbase, synset, model, "model.obj"))
    vox_path = fsx.join(base, cfg.voxels_dir, synset, model, "model.binvox")
    occ = grid_to_model = None
    if fsx.exists(fs, vox_path):
        vox = read_binvox(fsx.get_bytes(fs, vox_path), vox_path)
        grid_to_model = voxels_to_model(vox, verts, cfg.voxel_alignment)
        size = cfg.occupancy_size or vox.size
        occ = pool_occupancy(vox.occupancy, size).transpose(2, 1, 0)  # our grids are indexed [z, y, x]
    added = 0
    for v in views:
        name = f"{synset}/{model}/{v:02d}"
        try:
            row = _view_row(fs, rendering, v, meta, verts, cfg)
        except (ValueError, OSError) as exc:
            report.skipped.append(SkippedInput(name, f"{type(exc).__name__}: {exc}"))
            continue
        image, w, h, K, mask, box, to_cam = row
        rows["id"].append(name)
        rows["image"].append(image)
        rows["width"].append(w)
        rows["height"].append(h)
        rows["intrinsics"].append(K)
        rows["labels"].append([list(R2N2_SYNSETS).index(synset) + 1])
        rows["boxes"].append([box])
        rows["masks"].append([encode_mask(mask)])
        rows["verts"].append([(verts.astype(np.float64) @ to_cam[:3, :3].T + to_cam[:3, 3]).astype(np.float32)])
        rows["faces"].append([faces.astype(np.int32)])
        rows["occupancy"].append(None if occ is None else [pack_occupancy(occ)])
        rows["occupancy_size"].append(None if occ is None else occ.shape[0])
        rows["occupancy_to_camera"].append(None if occ is None else [to_cam @ grid_to_model])
        report.views += 1
        added += 1
    return added, occ is not None


def _view_row(fs, rendering: str, view: int, meta: list[str], verts: np.ndarray, cfg: IngestR2N2Config):
    """(PNG bytes, W, H, K, mask, box, model-to-camera) of one view; ValueError/OSError when unusable."""
    from PIL import Image

    if view >= len(meta):
        raise ValueError(f"rendering_metadata.txt has {len(meta)} lines, no line for view {view}")
    try:
        azimuth, elevation, inplane, ratio, fov = (float(x) for x in meta[view].split())
    except ValueError:
        raise ValueError(f"rendering_metadata.txt line {view + 1} is not 5 numbers: {meta[view][:60]!r}") from None
    if inplane != 0:
        raise ValueError(f"in-plane rotation {inplane} (only 0, as shipped, has a known meaning)")
    if not (ratio > 0 and 0 < fov < 90):
        raise ValueError(f"distance ratio {ratio} and fov {fov} are not a camera")
    data = fsx.get_bytes(fs, fsx.join(rendering, f"{view:02d}.png"))
    try:
        with Image.open(io.BytesIO(data)) as im:
            if "A" not in im.getbands() and "transparency" not in im.info:
                raise ValueError(f"the image is {im.mode} without alpha (R2N2 renderings are RGBA)")
            rgba = np.asarray(im.convert("RGBA"), np.float64)
    except (Image.UnidentifiedImageError, SyntaxError) as exc:
        raise ValueError(f"{view:02d}.png is not a readable image ({type(exc).__name__})") from None
    h, w = rgba.shape[:2]
    alpha = rgba[..., 3:] / 255
    rgb = rgba[..., :3] * alpha + np.asarray(cfg.background, np.float64) * (1 - alpha)
    mask = rgba[..., 3] >= MASK_ALPHA
    if not mask.any():
        raise ValueError(f"{view:02d}.png has no opaque pixel (empty alpha)")
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    to_cam = view_to_camera(azimuth, elevation, ratio)
    depth = verts.astype(np.float64) @ to_cam[2, :3] + to_cam[2, 3]
    if depth.min() <= 0:
        raise ValueError(f"the model reaches behind the camera (nearest depth {depth.min():.3f})")
    K = r2n2_intrinsics(w, h, fov if cfg.intrinsics == "metadata" else None)
    return encode_png(np.rint(rgb).astype(np.uint8)), w, h, K, mask, box, to_cam


def _flush_first(writer, rows: dict[str, list], n: int, report: R2N2IngestReport) -> None:
    """Write the first ``n`` rows as a shard and keep the rest (a model's views may cross a shard boundary)."""
    head = {k: v[:n] for k, v in rows.items()}
    flush_rows(writer, head, report)
    for v in rows.values():
        del v[:n]
