"""Synthetic multi-view rooms: the stored OpenCV K and poses are exactly the cameras that rendered the images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dl3d.data import arrow_to_tensor, list_shards, read_meta, read_table
from dl3d.data.images import decode_image
from dl3d.data.view_tables import VIEW_PAIRS
from dl3d.synthetic.multiview import (
    MultiviewSpec,
    SceneObject,
    build_scene,
    camera_pose,
    make_scene,
    pinhole_intrinsics,
    relative_motion,
    render_scene,
    render_views,
    write_multiview_dataset,
)

SIZE = 64
FOCAL = 32 / math.tan(math.radians(30))  # 60 degree field of view at 64 px


def _project(K: np.ndarray, pose: np.ndarray, point: np.ndarray) -> tuple[float, float, float]:
    x = pose[:3, :3] @ point + pose[:3, 3]
    uv = K[:2, :2] @ (x[:2] / x[2]) + K[:2, 2]
    return float(uv[0]), float(uv[1]), float(x[2])


def warp_error(src: np.ndarray, tgt: np.ndarray, src_depth: np.ndarray, tgt_depth: np.ndarray,
               K: np.ndarray, src_pose: np.ndarray, tgt_pose: np.ndarray) -> tuple[float, float]:
    """Forward-warp every source pixel centre into the target with the true depth (naive reference).

    src, tgt: (H, W, 3) float in [0, 1]; depths (H, W) metres. Returns (mean |colour difference| over
    source pixels that land inside the target and are visible there, fraction of such pixels).
    """
    h, w = src_depth.shape
    ys, xs = np.mgrid[0:h, 0:w]
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=float)], -1).reshape(-1, 3)
    pts = (pix @ np.linalg.inv(K).T) * src_depth.reshape(-1, 1)
    rel = tgt_pose @ np.linalg.inv(src_pose)
    q = pts @ rel[:3, :3].T + rel[:3, 3]
    z = q[:, 2]
    uv = q[:, :2] / np.where(z > 1e-6, z, 1.0)[:, None] @ K[:2, :2].T + K[:2, 2]
    col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (src_depth.reshape(-1) > 0) & (z > 1e-3) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    idx = np.flatnonzero(inside)
    seen = np.abs(tgt_depth[row[idx], col[idx]] - z[idx]) < 0.02 * z[idx]  # not occluded in the target
    idx = idx[seen]
    diff = np.abs(src.reshape(-1, 3)[idx] - tgt[row[idx], col[idx]])
    return float(diff.mean()), len(idx) / (h * w)


# ------------------------------------------------------------------------------------- exact geometry

def test_depth_of_walls_and_floor_is_exact_at_pixel_centres():
    """Camera 1 m from the right wall y = 0, 1.5 m above the floor, looking along +x at the wall x = 4."""
    scene = build_scene([4.0, 4.0, 3.0], [])
    K = pinhole_intrinsics(SIZE, SIZE, 60.0)
    np.testing.assert_allclose(K, [[FOCAL, 0, 32], [0, FOCAL, 32], [0, 0, 1]])
    pose = camera_pose([1.0, 1.0, 1.5], yaw=0.0, pitch=0.0)
    np.testing.assert_allclose(pose[:3, :3], [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)  # x right = -y
    depth = render_views(scene, K, pose[None], SIZE, SIZE).depth[0].numpy()
    # far wall x = 4: every pixel seeing it has depth 3 (rows 29..34 near the centre, columns 20..44)
    np.testing.assert_allclose(depth[29:35, 20:45], 3.0, atol=1e-4)
    # floor (z = 0, 1.5 m below): pixel row v sees it at depth 1.5 f / (v + 0.5 - 32)
    rows = np.arange(61, 64)
    np.testing.assert_allclose(depth[rows, 32], 1.5 * FOCAL / (rows + 0.5 - 32), rtol=1e-4)
    # right wall y = 0 (1 m to the right): column u sees it at depth f / (u + 0.5 - 32), on the RIGHT
    cols = np.arange(52, 64)
    np.testing.assert_allclose(depth[32, cols], FOCAL / (cols + 0.5 - 32), rtol=1e-4)
    assert depth[32, 0] == pytest.approx(3.0, abs=1e-4)  # left wall y = 4 is 3 m away: out of view


def test_projected_object_centre_has_the_object_colour():
    red = SceneObject("sphere", np.array([2.5, 1.6, 1.2]), np.full(3, 0.4), np.array([1.0, 0.0, 0.0]))
    blue = SceneObject("box", np.array([3.2, 2.6, 0.25]), np.array([0.5, 0.5, 0.5]), np.array([0.0, 0.2, 1.0]))
    scene = build_scene([4.0, 4.0, 3.0], [red, blue])
    K = pinhole_intrinsics(SIZE, SIZE, 60.0)
    rng = np.random.default_rng(3)
    poses = [camera_pose([1.0, 2.0, 1.5], 0.0, 0.0)]  # sphere 0.4 m right, 0.3 m below, 1.5 m ahead
    poses += [relative_motion(rng, 5.0, 0.1) @ poses[0] for _ in range(5)]
    poses = np.stack(poses)
    views = render_views(scene, K, poses, SIZE, SIZE)
    u, v, z = _project(K, poses[0], red.centre)
    assert (u, v, z) == pytest.approx((32 + FOCAL * 0.4 / 1.5, 32 + FOCAL * 0.3 / 1.5, 1.5))
    for img, depth, pose in zip(views.images.numpy(), views.depth.numpy(), poses):
        u, v, z = _project(K, pose, red.centre)
        r, g, b = img[int(v), int(u)]
        assert r > 0.3 and g < 0.01 and b < 0.01, (u, v, img[int(v), int(u)])
        assert depth[int(v), int(u)] == pytest.approx(z - 0.2, abs=0.03)  # the sphere's near surface
        for mu, mv in ((SIZE - u, v), (u, SIZE - v)):  # mirror images: a flipped axis would put it there
            assert img[int(mv), int(mu)][1] > 0.05
    # the box: its top-face centre is visible from the first camera
    u, v, _ = _project(K, poses[0], blue.centre + [0, 0, 0.25])
    r, g, b = views.images[0, int(v), int(u)].numpy()
    assert b > 0.3 and r < 0.01


def test_mesh_faces_point_into_the_room_and_out_of_objects():
    spec = MultiviewSpec(min_objects=4, max_objects=4)
    scene = make_scene(np.random.default_rng(7), spec)
    tri = scene.verts[scene.faces].astype(np.float64)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centroid = tri.mean(1)
    # the first 12 faces are floor, ceiling and walls
    assert (np.einsum("fi,fi->f", normals[:12], scene.room / 2 - centroid[:12]) > 0).all()
    owner = np.full(len(tri), -1)
    start = 12
    for k, obj in enumerate(scene.objects):
        n = 12 if obj.kind == "box" else 320
        owner[start:start + n] = k
        start += n
    assert start == len(tri)
    centres = np.array([o.centre for o in scene.objects])[owner[12:]]
    assert (np.einsum("fi,fi->f", normals[12:], centroid[12:] - centres) > 0).all()
    assert scene.texture.min() >= 0 and scene.texture.max() <= 1
    assert ((scene.verts_uvs >= 0) & (scene.verts_uvs <= 1)).all()


# ---------------------------------------------------------------------------------- photo-consistency

def test_true_depth_warps_source_onto_target():
    spec = MultiviewSpec(scenes=2, pairs_per_scene=6, seed=11)
    errors, unwarped, overlap = [], [], []
    for index in range(2):
        r = render_scene(index, spec)
        imgs, depth = r.views.images.numpy(), r.views.depth.numpy()
        assert (depth > 0).all()  # a closed room: every pixel sees a surface
        for k in range(spec.pairs_per_scene):
            err, frac = warp_error(imgs[2 * k], imgs[2 * k + 1], depth[2 * k], depth[2 * k + 1],
                                   r.intrinsics, r.poses[2 * k], r.poses[2 * k + 1])
            errors.append(err)
            overlap.append(frac)
            unwarped.append(np.abs(imgs[2 * k] - imgs[2 * k + 1]).mean())
    errors, unwarped = np.array(errors), np.array(unwarped)
    assert np.median(overlap) > 0.5
    assert errors.max() < 0.04  # colours in [0, 1]: nearest-pixel resampling across tile edges only
    assert np.mean(errors) < 0.3 * np.mean(unwarped)
    # a wrong relative pose (the inverse motion) does much worse
    r = render_scene(0, spec)
    imgs, depth = r.views.images.numpy(), r.views.depth.numpy()
    wrong = r.poses[0] @ np.linalg.inv(r.poses[1]) @ r.poses[0]
    bad, _ = warp_error(imgs[0], imgs[1], depth[0], depth[1], r.intrinsics, r.poses[0], wrong)
    good, _ = warp_error(imgs[0], imgs[1], depth[0], depth[1], r.intrinsics, r.poses[0], r.poses[1])
    assert bad > 2 * good


# ------------------------------------------------------------------------------------------ datasets

def _read_pairs(url: str):
    rows = []
    for shard in list_shards(url):
        t = read_table(shard.url, VIEW_PAIRS)
        rows.append((shard, t))
    return rows


def test_dataset_poses_images_and_shards(tmp_path):
    spec = MultiviewSpec(scenes=3, pairs_per_scene=4, shards=2, seed=5)
    url = str(tmp_path / "mv")
    meta = write_multiview_dataset(url, spec)
    assert meta["kind"] == "view_pairs" and meta["num_rows"] == 12 and meta["num_shards"] == 2
    assert read_meta(url)["produced_by"]["spec"]["seed"] == 5
    shards = _read_pairs(url)
    assert [t.num_rows for _, t in shards] == [8, 4]  # scenes 0-1, then scene 2
    scenes_per_shard = [set(t.column("scene").to_pylist()) for _, t in shards]
    assert scenes_per_shard == [{"room-00000", "room-00001"}, {"room-00002"}]
    t = shards[0][1]
    K = arrow_to_tensor(t.column("intrinsics"), (3, 3), name="intrinsics", source=url)
    src = arrow_to_tensor(t.column("src_pose"), (4, 4), name="src_pose", source=url).astype(np.float64)
    tgt = arrow_to_tensor(t.column("tgt_pose"), (4, 4), name="tgt_pose", source=url).astype(np.float64)
    np.testing.assert_allclose(K, np.broadcast_to(pinhole_intrinsics(64, 64, 60.0), (8, 3, 3)), rtol=1e-6)
    for poses in (src, tgt):
        R = poses[:, :3, :3]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
        np.testing.assert_array_equal(poses[:, 3], np.broadcast_to([0, 0, 0, 1], (8, 4)))
    rel = tgt @ np.linalg.inv(src)
    angles = np.degrees(np.arccos(np.clip((np.trace(rel[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)))
    centre = lambda T: -np.einsum("nji,nj->ni", T[:, :3, :3], T[:, :3, 3])  # noqa: E731
    moves = np.linalg.norm(centre(tgt) - centre(src), axis=1)
    assert angles.max() <= 15.0 + 1e-3 and moves.max() <= 0.3 + 1e-5
    assert angles.min() > 0 and moves.min() > 0
    # the stored images are the renders of the stored cameras (scene 0, first pair)
    r = render_scene(0, spec)
    np.testing.assert_allclose(src[0], r.poses[0], atol=1e-6)
    stored = decode_image(t.column("src_image")[0].as_py(), "row 0").astype(np.float64) / 255
    rerender = render_views(r.scene, K[0].astype(np.float64), src[:1], 64, 64).images[0].numpy()
    assert np.abs(stored - rerender).max() <= 1 / 255 + 1e-6
    assert t.column("id").to_pylist()[:2] == ["room-00000/000", "room-00000/001"]
    assert t.column("src_frame").to_pylist()[:2] == [0, 2] and t.column("tgt_frame").to_pylist()[:2] == [1, 3]


def test_scenes_do_not_depend_on_dataset_size_and_rewrite_drops_old_shards(tmp_path):
    url = str(tmp_path / "mv")
    write_multiview_dataset(url, MultiviewSpec(scenes=3, pairs_per_scene=1, shards=3))
    first = {row["id"]: row["src_image"] for _, t in _read_pairs(url) for row in t.to_pylist()}
    meta = write_multiview_dataset(url, MultiviewSpec(scenes=2, pairs_per_scene=1, shards=1))
    assert meta["num_shards"] == 1
    assert [s.name for s in list_shards(url)] == ["part-00000.parquet"]
    second = {row["id"]: row["src_image"] for _, t in _read_pairs(url) for row in t.to_pylist()}
    assert set(second) == {"room-00000/000", "room-00001/000"}
    assert all(second[k] == first[k] for k in second)  # byte-identical PNGs
    assert json.loads((tmp_path / "mv" / "_dataset.json").read_text())["num_rows"] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(scenes=0), "scenes must be >= 1, got 0"),
    (dict(seed=-2), "seed must be >= 0, got -2"),
    (dict(scenes=2, shards=3), "shards must be <= scenes"),
    (dict(image_size=4), "image_size must be >= 8 pixels, got 4"),
    (dict(max_translation=0.8), r"max_translation must be in \[0, 0.5\] metres"),
    (dict(min_objects=5, max_objects=2), "expected 0 <= min_objects <= max_objects, got 5, 2"),
    (dict(fov_deg=170.0), r"fov_deg must be in \[10, 120\], got 170.0"),
])
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiviewSpec(**kwargs)


def test_render_views_checks_shapes():
    scene = build_scene([4.0, 4.0, 3.0], [])
    with pytest.raises(ValueError, match=r"expected poses of shape \(N, 4, 4\), got \(4, 4\)"):
        render_views(scene, pinhole_intrinsics(8, 8, 60.0), np.eye(4), 8, 8)
    with pytest.raises(ValueError, match=r"expected K of shape \(3, 3\) or \(2, 3, 3\), got \(3, 3, 3\)"):
        render_views(scene, np.zeros((3, 3, 3)), np.stack([np.eye(4)] * 2), 8, 8)
    with pytest.raises(ValueError, match="object kind must be 'box' or 'sphere', got 'cone'"):
        build_scene([4.0, 4.0, 3.0], [SceneObject("cone", np.ones(3), np.ones(3), np.ones(3))])
