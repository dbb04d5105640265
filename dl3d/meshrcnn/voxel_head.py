"""Voxel head and cubify: a conv stack predicts a G^3 occupancy grid, cubify turns it into a mesh.

Layers as the official ``VoxelRCNNConvUpsampleHead`` / ShapeNet ``VoxelHead``: ``convs`` 3x3 convs
(ReLU, MSRA init), a 2x2 stride-2 transposed conv (ReLU), a 1x1 conv predicting ``G`` depth channels
per class (normal init, std 0.001, bias 0). Its input is a (N, C, G/2, G/2) map: RoIAligned features
(rcnn) or the backbone's last map bilinearly resized to G/2 (ShapeNet). The output (N, C, G, G, G)
is indexed [n, class, d, h, w] over the unit box's (w, v, u), see ``dl3d.meshrcnn.unit_box``.
"""

from __future__ import annotations

import torch
from pytorch3d.ops import cubify
from pytorch3d.structures import Meshes
from torch import Tensor, nn
from torch.nn import functional as F

CUBIFY_ALIGN = "corner"
"""pytorch3d ``cubify`` alignment used everywhere here: the outer faces of a full G^3 grid lie on
[-1, 1]^3 and voxel i spans [-1 + 2i/G, -1 + 2(i+1)/G] along its axis, the same cells as
``unit_box.voxel_targets``. (The official code keeps the default ``"topleft"``, cells of size 2/(G-1).)"""


class VoxelHead(nn.Module):
    """(N, in_channels, G/2, G/2) features -> (N, classes, G, G, G) voxel logits."""

    def __init__(self, in_channels: int, voxel_size: int, convs: int = 4, conv_dim: int = 256, classes: int = 1,
                 resize_input: bool = False):
        super().__init__()
        if voxel_size % 2:
            raise ValueError(f"voxel_size must be even, got {voxel_size}")
        self.voxel_size, self.classes, self.resize_input = voxel_size, classes, resize_input
        layers, dim = [], in_channels
        for _ in range(convs):
            layers.append(nn.Conv2d(dim, conv_dim, 3, padding=1))
            dim = conv_dim
        self.convs = nn.ModuleList(layers)
        self.deconv = nn.ConvTranspose2d(dim, conv_dim, 2, stride=2)
        self.predictor = nn.Conv2d(conv_dim, classes * voxel_size, 1)
        for layer in [*self.convs, self.deconv]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        G = self.voxel_size
        if self.resize_input:
            x = F.interpolate(x, size=G // 2, mode="bilinear", align_corners=False)
        elif x.shape[-2:] != (G // 2, G // 2):
            raise ValueError(f"expected features of spatial size {G // 2}x{G // 2}, got {tuple(x.shape[-2:])}")
        for conv in self.convs:
            x = F.relu(conv(x))
        x = F.relu(self.deconv(x))
        x = self.predictor(x)
        return x.reshape(x.shape[0], self.classes, G, x.shape[-2], x.shape[-1])


@torch.no_grad()
def cubify_voxels(probs: Tensor, threshold: float) -> Meshes:
    """Occupancy probabilities (N, G, G, G) -> N watertight meshes in the unit box (no gradient).

    A grid with no voxel above ``threshold`` is replaced by the central cube (voxels G/4 .. 3G/4 on
    every axis, as ShapeNet's ``VoxMeshHead.cubify``), so every mesh is non-empty.
    Vertices: (u, v, w) in [-1, 1] (``align="corner"``, see :data:`CUBIFY_ALIGN`).
    """
    if probs.dim() != 4 or not probs.shape[1] == probs.shape[2] == probs.shape[3]:
        raise ValueError(f"expected voxel probabilities of shape (N, G, G, G), got {tuple(probs.shape)}")
    probs = probs.detach().clone()
    G = probs.shape[-1]
    empty = ~(probs > threshold).flatten(1).any(dim=1)
    if bool(empty.any()):
        a, b = G // 4, G // 4 + G // 2
        probs[empty, a:b, a:b, a:b] = 1.0
    return cubify(probs, threshold, align=CUBIFY_ALIGN)


def dummy_tetrahedra(n: int, device=None) -> Meshes:
    """n tetrahedra with N(0, 1) vertices: what the mesh head refines during the voxel-only steps
    (ShapeNet ``VoxMeshHead._dummy_mesh``), so every parameter still gets a gradient under DDP."""
    verts = torch.randn(n, 4, 3, device=device)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]], device=device)
    return Meshes(verts=verts, faces=faces[None].expand(n, 4, 3))
