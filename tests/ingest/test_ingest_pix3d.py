"""``dl3d ingest pix3d`` on a fixture laid out as Pix3D ships (pix3d.json, img/, mask/, model/*.obj,
voxel.mat): K from the focal length in mm, the model posed into dl3d's OpenCV camera frame, and the
voxel grid's map to the camera agreeing with the posed model; bad entries are skipped and listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dl3d.data import read_table
from dl3d.data.mesh_tables import OBJECT_IMAGES, decode_mask, decode_objects

W, H, FOCAL_MM = 96, 64, 35.0


def _box_mesh(half: np.ndarray):
    from dl3d.synthetic.shapes import primitive_mesh

    v, f = primitive_mesh("cube")
    return v * half, f


def _write_root(root, R, t):
    """One chair whose model is a box and whose 128^3 voxels fill the same box after read_voxel's normalisation."""
    from PIL import Image
    from pytorch3d.io import save_obj
    from scipy.io import savemat

    from dl3d.synthetic.shapes import render_objects

    vox = np.zeros((128, 128, 128), bool)
    vox[32:96, 48:80, 16:112] = True  # a box, not a cube: rot90 and the axis order matter
    rot = np.rot90(vox, k=3, axes=(1, 2))
    idx = np.argwhere(rot)
    lo, hi = idx.min(0), idx.max(0) + 1
    center = (idx.min(0) + idx.max(0)) / 2
    scale = np.sqrt(((idx - center) ** 2).sum(1).max()) * 2
    half = (hi - lo) / 2 / scale  # the solid's half-extents in the model frame (cell faces)
    verts, faces = _box_mesh(half)
    (root / "model/chair/box").mkdir(parents=True)
    save_obj(str(root / "model/chair/box/model.obj"), torch.from_numpy(verts), torch.from_numpy(faces))
    savemat(str(root / "model/chair/box/voxel.mat"), {"voxel": vox.astype(np.uint8)})
    cam = (verts @ R.T + t) * np.array([-1, -1, 1])
    f = FOCAL_MM * W / 32
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    img, index = render_objects([{"verts": cam, "faces": faces, "colour": np.array([0.8, 0.5, 0.2])}], K, W,
                                np.array([0, -1.0, 0]), np.zeros(3))
    img, index = img[:H], index[:H]  # rendered square; the image is the top H rows (principal point moves)
    (root / "img/chair").mkdir(parents=True)
    (root / "mask/chair").mkdir(parents=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(root / "img/chair/0001.png")
    Image.fromarray(np.where(index >= 0, 255, 0).astype(np.uint8)).save(root / "mask/chair/0001.png")
    ys, xs = np.nonzero(index >= 0)
    ann = {"img": "img/chair/0001.png", "mask": "mask/chair/0001.png", "category": "chair",
           "model": "model/chair/box/model.obj", "voxel": "model/chair/box/voxel.mat", "img_size": [W, H],
           "bbox": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
           "rot_mat": R.tolist(), "trans_mat": t.tolist(), "focal_length": FOCAL_MM}
    broken = dict(ann, img="img/chair/0002.png")
    bad = dict(ann, img="img/table/1749.jpg")
    (root / "pix3d.json").write_text(json.dumps([ann, broken, bad]))
    return half, K


def test_pix3d_layout_becomes_object_images_with_consistent_geometry(tmp_path):
    from dl3d.ingest.pix3d import IngestPix3DConfig, ingest_pix3d
    from dl3d.meshrcnn.unit_box import grid_centers, unit_box_to_camera, voxel_targets
    from dl3d.synthetic.shapes import random_rotation

    R = random_rotation(np.random.default_rng(4))
    t = np.array([0.05, -0.02, 2.2])
    half, K_render = _write_root(tmp_path / "pix3d", R, t)
    report = ingest_pix3d(str(tmp_path / "pix3d"), str(tmp_path / "out"), IngestPix3DConfig(occupancy_size=32))
    assert report.images == 1 and [s.name for s in report.skipped] == ["img/chair/0002.png", "img/table/1749.jpg"]
    table = read_table(str(tmp_path / "out" / "part-00000.parquet"), OBJECT_IMAGES)
    o = decode_objects(table, 0, "row 0")
    K = np.asarray(table.column("intrinsics")[0].as_py())
    np.testing.assert_allclose(K, [[FOCAL_MM * W / 32, 0, W / 2], [0, FOCAL_MM * W / 32, H / 2], [0, 0, 1]])
    assert o["labels"].tolist() == [3]  # chair
    # the posed model projects onto the mask (rendered with the principal point at (W/2, W/2))
    v = o["verts"][0].astype(np.float64)
    uv = (v @ K_render.T)[:, :2] / v[:, 2:]
    box = o["boxes"][0]
    assert abs(uv[:, 0].min() - box[0]) < 1.5 and abs(uv[:, 0].max() - box[2]) < 1.5
    assert decode_mask(o["masks"][0], "m").sum() > 100
    # the occupancy's map to the camera agrees with the posed box: GT voxels vs an analytic inside test
    G = 16
    zr = torch.tensor([[v[:, 2].min(), v[:, 2].max()]], dtype=torch.float32)
    bx = torch.tensor([[uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()]], dtype=torch.float32)
    Kt = torch.from_numpy(K_render).float()[None]
    vox = voxel_targets(torch.from_numpy(o["occupancy"]), torch.from_numpy(o["occupancy_to_camera"]), bx, Kt, zr, G)[0]
    cam = unit_box_to_camera(grid_centers(G).reshape(1, -1, 3), bx, Kt, zr)[0].double().numpy()
    model = ((cam * np.array([-1, -1, 1])) - t) @ R  # OpenCV -> Pix3D camera -> model frame
    inside = (np.abs(model) <= half).all(1).reshape(G, G, G)
    assert inside.sum() > 100 and (vox.bool().numpy() != inside).mean() < 0.05


def test_missing_annotation_file_is_a_clear_error(tmp_path):
    from dl3d.ingest.pix3d import IngestPix3DConfig, ingest_pix3d

    with pytest.raises(FileNotFoundError, match="no pix3d.json"):
        ingest_pix3d(str(tmp_path), str(tmp_path / "out"), IngestPix3DConfig())
    with pytest.raises(ValueError, match="divide 128"):
        IngestPix3DConfig(occupancy_size=48)
