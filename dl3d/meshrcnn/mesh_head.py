"""Mesh refinement: stages of vert_align + undirected GraphConvs + a tanh vertex offset.

As the official ``MeshRefinementStage``: per stage, image features sampled at each vertex
(``vert_align``) go through a linear bottleneck (normal init, std 0.01) and ReLU; they are
concatenated with the vertex positions (and the previous stage's vertex features) and pass
``graph_convs`` undirected ``GraphConv`` layers (ReLU, positions re-appended after each); a linear
layer initialised to zero predicts an offset through ``tanh``, so an untrained stage returns its input
mesh unchanged. Stages never share weights; every stage's mesh is returned (all enter the loss).
pixel2mesh subdivides the mesh (and its vertex features) between stages.

Where features are sampled: ``positions(meshes) -> (N, V, 2)`` in grid_sample coordinates ([-1, 1],
x right, y down), given by the caller: the unit-box (u, v) for RoI features (rcnn), or the vertices
projected with K and normalised by the image size (ShapeNet style, multi-level features).
On the CPU each GraphConv's neighbour sum is one sparse (V, V) adjacency product (``neighbour_sums``)
instead of pytorch3d's CPU fallback (a gather and a scatter_add over expanded edge indices, ~5x slower
forward and backward here); the same sum, the same ``GraphConv`` module and weights. On CUDA pytorch3d's
own kernel runs.
Sampling uses ``align_corners=False`` (-1 is the outer edge of the first pixel or RoI bin; the official
code keeps pytorch3d's default ``True``) and ``padding_mode="border"``.
"""

from __future__ import annotations

from typing import Callable

import torch
from pytorch3d.ops import GraphConv, SubdivideMeshes, vert_align
from pytorch3d.structures import Meshes
from torch import Tensor, nn
from torch.nn import functional as F

Positions = Callable[[Meshes], Tensor]


def _padded_to_packed(x: Tensor, meshes: Meshes) -> Tensor:
    idx = meshes.verts_padded_to_packed_idx()
    return x.reshape(-1, x.shape[-1])[idx]


def neighbour_sums(edges: Tensor, num_verts: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sparse (V, V) matrix ``A`` with ``A[i, j]`` = the number of edges between vertices i and j, so that
    ``A @ f`` sums each vertex's neighbours' features over undirected ``edges`` (E, 2): what pytorch3d's
    ``gather_scatter(f, edges, directed=False)`` computes."""
    both = torch.cat([edges, edges.flip(1)]).t()
    with torch.sparse.check_sparse_tensor_invariants(enable=True):  # explicit, so torch does not warn
        return torch.sparse_coo_tensor(both, torch.ones(both.shape[1], dtype=dtype, device=edges.device),
                                       (num_verts, num_verts)).coalesce()


def graph_conv(gconv: GraphConv, x: Tensor, edges: Tensor, adjacency: Tensor | None) -> Tensor:
    """``gconv(x, edges)``: for an undirected ``GraphConv`` ``w0(x) + sum over neighbours of w1(x)``, the
    sum as ``adjacency @ w1(x)`` when an adjacency (``neighbour_sums``) is given; a directed one (its sum
    runs one way) always goes through pytorch3d."""
    if adjacency is None or gconv.directed:
        return gconv(x, edges)
    return gconv.w0(x) + torch.sparse.mm(adjacency, gconv.w1(x))


class MeshRefinementStage(nn.Module):
    """One stage: (features, meshes, previous vertex features) -> (offset meshes, vertex features)."""

    def __init__(self, img_feat_dim: int, vert_feat_dim: int, hidden_dim: int, depth: int, init: str = "normal"):
        super().__init__()
        self.bottleneck = nn.Linear(img_feat_dim, hidden_dim)
        self.gconvs = nn.ModuleList(
            GraphConv(hidden_dim + 3 + (vert_feat_dim if i == 0 else 0), hidden_dim, init=init, directed=False)
            for i in range(depth))
        self.vert_offset = nn.Linear(hidden_dim + 3, 3)
        nn.init.normal_(self.bottleneck.weight, std=0.01)
        nn.init.zeros_(self.bottleneck.bias)
        nn.init.zeros_(self.vert_offset.weight)
        nn.init.zeros_(self.vert_offset.bias)

    def forward(self, feats: Tensor | list[Tensor], meshes: Meshes, vert_feats: Tensor | None,
                positions: Positions) -> tuple[Meshes, Tensor]:
        pos = positions(meshes)  # (N, V, 2)
        grid = torch.cat([pos, torch.zeros_like(pos[..., :1])], dim=-1)
        sampled = vert_align(feats, grid, return_packed=False, padding_mode="border", align_corners=False)
        img = F.relu(self.bottleneck(_padded_to_packed(sampled, meshes)))
        verts = meshes.verts_packed()
        x = torch.cat([img, verts] + ([vert_feats] if vert_feats is not None else []), dim=1)
        edges = meshes.edges_packed()
        adjacency = None if x.is_cuda or x.shape[0] == 0 else neighbour_sums(edges, x.shape[0], x.dtype)
        for gconv in self.gconvs:
            h = F.relu(graph_conv(gconv, x, edges, adjacency))
            x = torch.cat([h, verts], dim=1)
        return meshes.offset_verts(torch.tanh(self.vert_offset(x))), h


class MeshRefinementHead(nn.Module):
    """``stages`` refinement stages; ``forward`` returns the list of every stage's meshes."""

    def __init__(self, in_channels: int, stages: int = 3, graph_convs: int = 3, hidden_dim: int = 128,
                 init: str = "normal", subdivide: bool = False):
        super().__init__()
        self.subdivide = subdivide
        self.stages = nn.ModuleList(
            MeshRefinementStage(in_channels, 0 if i == 0 else hidden_dim, hidden_dim, graph_convs, init)
            for i in range(stages))

    def forward(self, feats: Tensor | list[Tensor], meshes: Meshes, positions: Positions) -> list[Meshes]:
        """feats: (N, C, H, W) or a list of such maps (their channels concatenated per vertex);
        meshes: N initial meshes in the frame ``positions`` understands."""
        out, vert_feats = [], None
        for i, stage in enumerate(self.stages):
            meshes, vert_feats = stage(feats, meshes, vert_feats, positions)
            out.append(meshes)
            if self.subdivide and i < len(self.stages) - 1:
                meshes, vert_feats = SubdivideMeshes()(meshes, feats=vert_feats)
        return out


def unit_box_positions(meshes: Meshes) -> Tensor:
    """Sampling positions of unit-box vertices in their RoI's features: (u, v)."""
    return meshes.verts_padded()[..., :2]


def projected_positions(K: Tensor, width: float, height: float) -> Positions:
    """Sampling positions of camera-frame vertices: projected with K (N, 3, 3), normalised by the image size."""
    def positions(meshes: Meshes) -> Tensor:
        v = meshes.verts_padded()
        z = v[..., 2].clamp(min=1e-3)
        x = K[:, 0, 0, None] * v[..., 0] / z + K[:, 0, 2, None]
        y = K[:, 1, 1, None] * v[..., 1] / z + K[:, 1, 2, None]
        return torch.stack([2 * x / width - 1, 2 * y / height - 1], dim=-1)
    return positions
