"""The ShapeNet-style architectures (no detector): voxmesh, sphereinit, pixel2mesh.

As ``shapenet/modeling/mesh_arch.py``: an image backbone gives C2..C5 feature maps; the voxel head
runs on the last one (resized to G/2) and predicts a G^3 grid over the image frustum between
``z_near`` and ``z_far`` (the unit box of the whole image, ``dl3d.meshrcnn.unit_box``); cubify (under
no_grad; an empty grid becomes the central cube) gives the initial mesh, mapped to the camera frame;
the refinement head samples all four maps at every vertex projected with K. sphereinit and
pixel2mesh start from an ico-sphere instead (here: the unit sphere of the unit box, mapped to the
camera frame; the official code puts a unit sphere at the world origin). Images are RGB in [0, 1];
they are normalised with ImageNet's mean and std inside.
"""

from __future__ import annotations

import torch
from pytorch3d.structures import Meshes
from pytorch3d.utils import ico_sphere
from torch import Tensor, nn

from dl3d.meshrcnn.config import MeshRCNNConfig
from dl3d.meshrcnn.losses import LossGuard
from dl3d.meshrcnn.mesh_head import MeshRefinementHead, projected_positions
from dl3d.meshrcnn.unit_box import image_boxes, unit_box_to_camera
from dl3d.meshrcnn.voxel_head import VoxelHead, cubify_voxels, dummy_tetrahedra

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SmallBackbone(nn.Module):
    """A 4-stage CNN for CPUs: a stride-2 stem, then stages of two 3x3 conv-BN-ReLU, each but the first
    halving the size (output stride 16); with ``stride=8`` the last stage keeps the third's size."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96), stride: int = 16):
        super().__init__()
        if stride not in (8, 16):
            raise ValueError(f"the small backbone's output stride is 8 or 16, got {stride}")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, prev = [], widths[0]
        strides = [1, 2, 2, 2 if stride == 16 else 1][:len(widths)]
        for w, st in zip(widths, strides):
            stages.append(nn.Sequential(
                nn.Conv2d(prev, w, 3, st, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()))
            prev = w
        self.stages = nn.ModuleList(stages)
        self.channels = list(widths)

    def forward(self, x: Tensor) -> list[Tensor]:
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class ResNetBackbone(nn.Module):
    """torchvision ResNet-50's C2..C5 maps (256, 512, 1024, 2048 channels at strides 4..32)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [256, 512, 1024, 2048]

    def forward(self, x: Tensor) -> list[Tensor]:
        x, out = self.stem(x), []
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out


class VoxMesh(nn.Module):
    """voxmesh / sphereinit / pixel2mesh on whole images; predictions in the camera frame (metres)."""

    def __init__(self, cfg: MeshRCNNConfig):
        super().__init__()
        if cfg.is_detector:
            raise ValueError("VoxMesh builds the ShapeNet-style architectures; use MeshRCNN for arch 'rcnn'")
        self.cfg = cfg
        self.backbone = ResNetBackbone() if cfg.backbone == "resnet50" else SmallBackbone(cfg.backbone_widths, cfg.backbone_stride)
        dims = self.backbone.channels
        self.voxel_head = (VoxelHead(dims[-1], cfg.voxel_size, cfg.voxel_convs, cfg.voxel_conv_dim, resize_input=True)
                           if cfg.uses_voxels else None)
        self.mesh_head = MeshRefinementHead(sum(dims), cfg.mesh_stages, cfg.graph_convs, cfg.graph_conv_dim,
                                            cfg.graph_conv_init, subdivide=cfg.arch == "pixel2mesh")
        self.guard = LossGuard(cfg.skip_loss_factor, cfg.loss_skip_gamma)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def frame(self, n: int, width: int, height: int, device) -> tuple[Tensor, Tensor]:
        """The voxel grid's box (N, 4) (the whole image) and depth range (N, 2) (z_near, z_far)."""
        boxes = image_boxes(torch.full((n,), width, device=device), torch.full((n,), height, device=device))
        z = torch.tensor([self.cfg.z_near, self.cfg.z_far], device=device).expand(n, 2)
        return boxes, z

    def to_camera(self, meshes: Meshes, K: Tensor, width: int, height: int) -> Meshes:
        """Unit-box meshes of the image frustum -> camera-frame meshes."""
        boxes, z = self.frame(len(meshes), width, height, K.device)
        return meshes.update_padded(unit_box_to_camera(meshes.verts_padded(), boxes, K, z))

    def forward(self, images: Tensor, K: Tensor, voxel_only: bool = False) -> dict:
        """images: (N, 3, H, W) RGB in [0, 1]; K: (N, 3, 3) pixels of these images.

        Returns ``voxel_logits`` (N, G, G, G) (None without a voxel branch), ``init_meshes`` (the
        cubified voxels or the ico-sphere, camera frame, before refinement) and ``meshes`` (one
        Meshes per stage, camera frame, metres). ``voxel_only``: refine dummy tetrahedra instead.
        """
        if images.dim() != 4 or images.shape[1] != 3 or K.shape != (images.shape[0], 3, 3):
            raise ValueError(f"expected images (N, 3, H, W) and K (N, 3, 3), got {tuple(images.shape)}, "
                             f"{tuple(K.shape)}")
        n, _, h, w = images.shape
        feats = self.backbone((images - self.mean) / self.std)
        logits = None
        if self.voxel_head is not None:
            logits = self.voxel_head(feats[-1])[:, 0]
            unit = (dummy_tetrahedra(n, images.device).update_padded(
                        (torch.randn(n, 4, 3, device=images.device) * 0.5).clamp(-1, 1))
                    if voxel_only else cubify_voxels(logits.sigmoid(), self.cfg.cubify_threshold))
        else:
            unit = ico_sphere(self.cfg.ico_sphere_level, images.device).extend(n)
        init = self.to_camera(unit, K.float(), w, h)
        meshes = self.mesh_head(feats, init, projected_positions(K.float(), w, h))
        return {"voxel_logits": logits, "init_meshes": init, "meshes": meshes}
