"""cubify on fixed grids gives the expected watertight meshes (align "corner"); the unit-box transform
round-trips, equals the official two-homography construction, and voxel targets agree with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dl3d.meshrcnn.unit_box import (camera_to_unit_box, depth_extent_target, grid_centers, unit_box_to_camera,
                                    voxel_targets, zrange_from_dz)
from dl3d.meshrcnn.voxel_head import CUBIFY_ALIGN, cubify_voxels


def _topology(verts: torch.Tensor, faces: torch.Tensor) -> tuple[int, set[int], float]:
    """Euler characteristic V - E + F, the set of face counts per edge, and the signed volume."""
    f = faces.numpy()
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    tri = verts.double().numpy()[f]
    volume = float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6)
    return len(verts) - len(edges) + len(f), set(counts.tolist()), volume


def _grid(G: int, cells) -> torch.Tensor:
    v = torch.zeros(1, G, G, G)
    for d, h, w in cells:
        v[0, d, h, w] = 1.0
    return v


def test_align_mode_is_corner_and_one_voxel_is_its_cell():
    assert CUBIFY_ALIGN == "corner"
    G = 4
    mesh = cubify_voxels(_grid(G, [(1, 2, 3)]), 0.5)
    verts, faces = mesh.verts_packed(), mesh.faces_packed()
    assert verts.shape == (8, 3) and faces.shape == (12, 3)
    lo = torch.tensor([-1 + 2 * 3 / G, -1 + 2 * 2 / G, -1 + 2 * 1 / G])  # (u <- w, v <- h, w <- d)
    torch.testing.assert_close(verts.min(0).values, lo, atol=1e-6, rtol=0)
    torch.testing.assert_close(verts.max(0).values, lo + 2 / G, atol=1e-6, rtol=0)
    euler, per_edge, volume = _topology(verts, faces)
    assert euler == 2 and per_edge == {2}
    assert volume == pytest.approx((2 / G) ** 3, rel=1e-5), "outward faces: positive volume of one cell"


def test_full_grid_spans_the_unit_box_and_adjacent_voxels_share_no_face():
    full = cubify_voxels(torch.ones(1, 6, 6, 6), 0.5)
    torch.testing.assert_close(full.verts_packed().min(0).values, -torch.ones(3))
    torch.testing.assert_close(full.verts_packed().max(0).values, torch.ones(3))
    pair = cubify_voxels(_grid(4, [(1, 1, 1), (1, 1, 2)]), 0.5)
    assert pair.verts_packed().shape[0] == 12 and pair.faces_packed().shape[0] == 20
    euler, per_edge, volume = _topology(pair.verts_packed(), pair.faces_packed())
    assert euler == 2 and per_edge == {2} and volume == pytest.approx(2 * 0.5 ** 3, rel=1e-5)


def test_hollow_block_has_two_surfaces_and_a_ring_has_genus_one():
    block = torch.zeros(1, 5, 5, 5)
    block[0, 1:4, 1:4, 1:4] = 1
    block[0, 2, 2, 2] = 0  # a closed cavity: outer and inner surfaces
    euler, per_edge, volume = _topology(*(lambda m: (m.verts_packed(), m.faces_packed()))(cubify_voxels(block, 0.5)))
    assert euler == 4 and per_edge == {2}
    assert volume == pytest.approx(26 * 0.4 ** 3, rel=1e-5)
    ring = torch.zeros(1, 5, 5, 5)
    ring[0, 2, 1:4, 1:4] = 1
    ring[0, 2, 2, 2] = 0  # 8 voxels around a hole: a torus
    m = cubify_voxels(ring, 0.5)
    euler, per_edge, _ = _topology(m.verts_packed(), m.faces_packed())
    assert euler == 0 and per_edge == {2}


def test_empty_grid_becomes_the_central_cube_and_cubify_has_no_gradient():
    probs = torch.full((2, 8, 8, 8), 0.1, requires_grad=True)
    with torch.no_grad():
        probs[1, 0, 0, 0] = 0.9
    meshes = cubify_voxels(probs, 0.2)
    v0 = meshes.verts_list()[0]
    torch.testing.assert_close(v0.min(0).values, torch.full((3,), -0.5))
    torch.testing.assert_close(v0.max(0).values, torch.full((3,), 0.5))
    assert meshes.verts_list()[1].shape == (8, 3), "a non-empty grid is left as it is"
    assert not meshes.verts_packed().requires_grad
    with pytest.raises(ValueError, match=r"\(N, G, G, G\)"):
        cubify_voxels(torch.zeros(8, 8, 8), 0.2)


def _random_setup(n: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    K = torch.zeros(n, 3, 3, dtype=dtype)
    K[:, 0, 0] = 200 + 300 * torch.rand(n, generator=g)
    K[:, 1, 1] = K[:, 0, 0] * (0.9 + 0.2 * torch.rand(n, generator=g))
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = 160, 120, 1
    x1 = 300 * torch.rand(n, generator=g)
    y1 = 200 * torch.rand(n, generator=g)
    boxes = torch.stack([x1, y1, x1 + 10 + 100 * torch.rand(n, generator=g), y1 + 10 + 80 * torch.rand(n, generator=g)], -1)
    z0 = 1 + 3 * torch.rand(n, generator=g)
    zr = torch.stack([z0, z0 + 0.2 + 2 * torch.rand(n, generator=g)], -1)
    return boxes.to(dtype), K, zr.to(dtype), g


def test_unit_box_round_trips_to_1e5_and_maps_the_frustum_corners_to_the_cube():
    boxes, K, zr, g = _random_setup(16)
    coords = torch.rand(16, 500, 3, generator=g) * 2.4 - 1.2
    cam = unit_box_to_camera(coords, boxes, K, zr)
    back = camera_to_unit_box(cam, boxes, K, zr)
    assert (back - coords).abs().max() < 1e-5
    again = unit_box_to_camera(back, boxes, K, zr)
    assert ((again - cam).abs() / cam.abs().clamp(min=1)).max() < 1e-5
    corners = torch.tensor([[u, v, w] for u in (-1.0, 1.0) for v in (-1.0, 1.0) for w in (-1.0, 1.0)])
    cam = unit_box_to_camera(corners.expand(16, 8, 3), boxes, K, zr)
    x = K[:, None, 0, 0] * cam[..., 0] / cam[..., 2] + K[:, None, 0, 2]
    torch.testing.assert_close(x[:, 0], boxes[:, 0], atol=1e-3, rtol=0)  # u = -1: the box's left edge
    torch.testing.assert_close(x[:, -1], boxes[:, 2], atol=1e-3, rtol=0)
    torch.testing.assert_close(cam[:, 0, 2], zr[:, 0], atol=1e-5, rtol=1e-5)  # w = -1: depth z0
    torch.testing.assert_close(cam[:, 1, 2], zr[:, 1], atol=1e-5, rtol=1e-5)


def test_unit_box_equals_the_official_homography_built_from_the_frustum_corners():
    """meshrcnn/utils/shape.py fits a 3x3 homography of (X, Z) from 4 frustum corners; fit it here by DLT."""
    boxes, K, zr, g = _random_setup(4, seed=3, dtype=torch.float64)
    for i in range(4):
        fx, cx = float(K[i, 0, 0]), float(K[i, 0, 2])
        (x1, _, x2, _), (z0, z1) = boxes[i].tolist(), zr[i].tolist()
        src = [((x1 - cx) * z / fx, z) for z in (z0, z1) for _ in (0,)] + [((x2 - cx) * z / fx, z) for z in (z0, z1)]
        dst = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
        A = []
        for (X, Z), (u, w) in zip(src, dst):
            A.append([X, Z, 1, 0, 0, 0, -u * X, -u * Z, -u])
            A.append([0, 0, 0, X, Z, 1, -w * X, -w * Z, -w])
        H = np.linalg.svd(np.array(A))[2][-1].reshape(3, 3)
        pts = torch.stack([(torch.rand(200, generator=g, dtype=torch.float64) - 0.5) * 3,
                           torch.rand(200, generator=g, dtype=torch.float64) - 0.5,
                           z0 + (z1 - z0) * torch.rand(200, generator=g, dtype=torch.float64)], -1)
        ours = camera_to_unit_box(pts[None], boxes[i:i + 1], K[i:i + 1], zr[i:i + 1])[0]
        h = np.c_[pts[:, 0].numpy(), pts[:, 2].numpy(), np.ones(200)] @ H.T
        np.testing.assert_allclose(ours[:, 0].numpy(), h[:, 0] / h[:, 2], atol=1e-8)
        np.testing.assert_allclose(ours[:, 2].numpy(), h[:, 1] / h[:, 2], atol=1e-8)


def test_bad_boxes_and_depths_are_value_errors_and_dz_round_trips():
    boxes, K, zr, _ = _random_setup(2)
    pts = torch.ones(2, 3, 3)
    with pytest.raises(ValueError, match="x1 < x2"):
        camera_to_unit_box(pts, boxes[:, [2, 1, 0, 3]], K, zr)
    with pytest.raises(ValueError, match="0 < z0 < z1"):
        camera_to_unit_box(pts, boxes, K, zr.flip(-1))
    with pytest.raises(ValueError, match=r"\(2, P, 3\)"):
        camera_to_unit_box(torch.ones(2, 3), boxes, K, zr)
    dz = depth_extent_target(zr, K[:, 0, 0])
    torch.testing.assert_close(zrange_from_dz(dz, K[:, 0, 0], zr.mean(-1)), zr)


def test_voxel_targets_of_a_sphere_match_the_analytic_inside_test():
    G, R = 16, 48
    c = -1 + (2 * torch.arange(R) + 1) / R
    d, h, w = torch.meshgrid(c, c, c, indexing="ij")
    occ = (d ** 2 + h ** 2 + w ** 2 <= 1)[None]
    center, radius = torch.tensor([0.2, -0.1, 3.0]), 0.5
    T = torch.eye(4)
    T[:3, :3] *= radius
    T[:3, 3] = center
    K = torch.tensor([[[300.0, 0, 160], [0, 300, 120], [0, 0, 1]]])
    proj = K[0] @ center
    cx, cy = float(proj[0] / proj[2]), float(proj[1] / proj[2])
    box = torch.tensor([[cx - 60, cy - 55, cx + 60, cy + 55]])
    zr = torch.tensor([[2.4, 3.6]])
    vox = voxel_targets(occ, T[None], box, K, zr, G)[0]
    cam = unit_box_to_camera(grid_centers(G).reshape(1, -1, 3), box, K, zr)[0]
    dist = (cam - center).norm(dim=-1).reshape(G, G, G)
    wrong = vox.bool() != (dist <= radius)
    assert vox.sum() > 200 and wrong.float().mean() < 0.02
    # only cells whose centre lies within one source cell (its diagonal) of the surface may differ
    assert ((dist[wrong] - radius).abs() <= 3 ** 0.5 * 2 * radius / R).all()
    assert vox.bool()[G // 2, G // 2, G // 2] and not vox.bool()[0, 0, 0]
