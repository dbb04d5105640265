"""dl3d.mesh.nearest: exact nearest neighbours on a CPU (k-d tree) and the chamfer distance built on them,
against pytorch3d's brute-force ``knn_points`` / ``chamfer_distance`` in values and gradients."""

import pytest
import torch
from pytorch3d.loss import chamfer_distance
from pytorch3d.ops import knn_points

from dl3d.mesh.nearest import chamfer, nearest_indices


def _clouds(seed: int, n: int = 3, p: int = 700, q: int = 900):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, 3, generator=g) * torch.tensor([1.0, 0.5, 2.0])
    y = torch.randn(n, q, 3, generator=g) + 0.3
    xn = torch.nn.functional.normalize(torch.randn(n, p, 3, generator=g), dim=-1)
    yn = torch.nn.functional.normalize(torch.randn(n, q, 3, generator=g), dim=-1)
    return x, y, xn, yn


def test_nearest_indices_equal_brute_force_distances():
    x, y, _, _ = _clouds(0)
    idx = nearest_indices(x, y)
    ref = knn_points(x, y, K=1)
    mine = ((x - torch.gather(y, 1, idx[..., None].expand(-1, -1, 3))) ** 2).sum(-1)
    assert idx.shape == (3, 700) and idx.dtype == torch.int64
    assert torch.allclose(mine, ref.dists[..., 0], atol=1e-6, rtol=0)
    assert (idx == ref.idx[..., 0]).float().mean() > 0.999  # only exact ties may differ
    with pytest.raises(ValueError, match="empty"):
        nearest_indices(x, y[:, :0])


@pytest.mark.parametrize("normals", [False, True])
def test_chamfer_equals_pytorch3d_in_value_and_gradient(normals):
    x, y, xn, yn = _clouds(1)
    leaves = [t.clone().requires_grad_() for t in (x, y, xn, yn)]
    ref_d, ref_n = chamfer_distance(*leaves[:2], x_normals=leaves[2] if normals else None,
                                    y_normals=leaves[3] if normals else None)
    (ref_d + (ref_n if normals else 0)).backward()
    mine_leaves = [t.clone().requires_grad_() for t in (x, y, xn, yn)]
    d, n = chamfer(*mine_leaves[:2], mine_leaves[2] if normals else None, mine_leaves[3] if normals else None)
    (d + (n if normals else 0)).backward()
    assert d.item() == pytest.approx(ref_d.item(), rel=1e-5)
    assert (n is None) == (not normals)
    if normals:
        assert n.item() == pytest.approx(ref_n.item(), rel=1e-5)
    for a, b in zip(mine_leaves[:4 if normals else 2], leaves):
        assert torch.allclose(a.grad, b.grad, atol=1e-7, rtol=1e-4), (a.grad - b.grad).abs().max()
