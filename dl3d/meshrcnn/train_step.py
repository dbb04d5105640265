"""Build a Mesh R-CNN model from its config; its losses and one guarded optimizer step.

``build_meshrcnn(cfg)`` gives a :class:`~dl3d.meshrcnn.voxmesh.VoxMesh` (ShapeNet-style presets) or a
:class:`~dl3d.meshrcnn.rcnn.MeshRCNN` (``rcnn``), loading ``cfg.backbone_weights`` when given (a
torchvision ResNet-50 state_dict, or a Mask R-CNN one for ``rcnn``: entries whose shapes differ, such
as COCO's 91-class predictors, are left at their initialisation and listed in a warning).

A step (:func:`guarded_step`): losses -> :class:`~dl3d.meshrcnn.losses.LossGuard` check -> backward
(of ``0 * sum(params)`` when the batch is skipped, so DDP still all-reduces) -> the update only when
every gradient is finite, with the learning rate warmed up linearly over ``warmup_iters``.
"""

from __future__ import annotations

import math
import warnings

import torch
from pytorch3d.structures import Meshes
from torch import Tensor, nn

from dl3d.meshrcnn.config import MeshRCNNConfig
from dl3d.meshrcnn.losses import gradients_finite, mesh_losses, sample_gt, voxel_loss
from dl3d.meshrcnn.unit_box import voxel_targets
from dl3d.train.family import unwrap


def build_meshrcnn(cfg: MeshRCNNConfig, *, load_weights: bool = True) -> nn.Module:
    """The model of ``cfg`` on the CPU; ``load_weights`` reads ``cfg.backbone_weights`` if set."""
    if not isinstance(cfg, MeshRCNNConfig):
        raise ValueError(f"expected a MeshRCNNConfig, got {type(cfg).__name__}")
    if cfg.is_detector:
        from dl3d.meshrcnn.rcnn import MeshRCNN

        model = MeshRCNN(cfg)
        target = model.detector
    else:
        from dl3d.meshrcnn.voxmesh import VoxMesh

        model = VoxMesh(cfg)
        target = model.backbone
    if load_weights and cfg.backbone_weights:
        load_init_weights(target, cfg.backbone_weights, rcnn=cfg.is_detector)
    return model


def load_init_weights(module: nn.Module, url: str, *, rcnn: bool) -> list[str]:
    """Load a torchvision state_dict (any fsspec URL) into ``module``; returns the keys left out.

    Raises:
        ValueError: the file is not a state_dict, or no key of it fits ``module``.
    """
    from dl3d.data import fs as fsx

    state = torch.load(fsx.open_asset(url, what="Mesh R-CNN init weights"), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{url}: expected a torchvision state_dict of tensors")
    own = module.state_dict()
    if not rcnn:  # a torchvision resnet50 state_dict -> ResNetBackbone's stem / layers
        rename = {"conv1.": "stem.0.", "bn1.": "stem.1."}
        state = {next((v + k[len(p):] for p, v in rename.items() if k.startswith(p)),
                      k.replace("layer1.", "layers.0.").replace("layer2.", "layers.1.")
                      .replace("layer3.", "layers.2.").replace("layer4.", "layers.3.")): t
                 for k, t in state.items()}
    fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fit:
        raise ValueError(f"{url}: none of its {len(state)} entries fits the {'Mask R-CNN' if rcnn else 'ResNet-50'} "
                         f"(first keys {sorted(state)[:3]})")
    module.load_state_dict(fit, strict=False)
    left = sorted(set(own) - set(fit))
    if left:
        warnings.warn(f"{url}: {len(left)} entries left at their initialisation (e.g. {left[:3]})", stacklevel=2)
    return left


def make_optimizer(model: nn.Module, cfg: MeshRCNNConfig) -> torch.optim.Optimizer:
    """Adam (ShapeNet) or SGD with momentum (Pix3D) over every trainable parameter.

    With ``mesh_lr_factor`` != 1 the mesh refinement head is a second parameter group whose learning
    rate is that factor times the schedule's (each group's ``lr_factor``; one group otherwise, as before).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.mesh_lr_factor != 1.0:
        base = unwrap(model)
        head = {id(p) for p in base.mesh_head.parameters()}
        params = [{"params": [p for p in params if id(p) not in head], "lr_factor": 1.0},
                  {"params": [p for p in params if id(p) in head], "lr_factor": cfg.mesh_lr_factor}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def learning_rate(step: int, cfg: MeshRCNNConfig) -> float:
    """Learning rate of 1-based step ``step``: linear warm-up from ``warmup_factor * lr`` to ``lr``; with
    ``lr_decay_steps`` a cosine from ``lr`` (at step ``lr_decay_start``) down to ``lr_decay_floor * lr``
    (at ``lr_decay_start + lr_decay_steps``, held after)."""
    if step < cfg.warmup_iters:
        alpha = step / cfg.warmup_iters
        return cfg.lr * (cfg.warmup_factor * (1 - alpha) + alpha)
    if cfg.lr_decay_steps and step > cfg.lr_decay_start:
        t = min(step - cfg.lr_decay_start, cfg.lr_decay_steps) / cfg.lr_decay_steps
        return cfg.lr * (cfg.lr_decay_floor + (1 - cfg.lr_decay_floor) * 0.5 * (1 + math.cos(math.pi * t)))
    return cfg.lr


def voxmesh_losses(model: nn.Module, batch: dict, step: int, cfg: MeshRCNNConfig) -> dict[str, Tensor]:
    """Losses of a ShapeNet-style model on a batch (see ``dl3d.meshrcnn.family.decode_batch``).

    batch: ``images`` (N, 3, S, S) in [0, 1], ``K`` (N, 3, 3) pixels of those images, ``verts`` /
    ``faces`` (lists: each image's one object, camera frame), ``occupancy`` (N, R, R, R),
    ``occupancy_to_camera`` (N, 4, 4). The first ``voxel_only_iters`` steps refine dummy tetrahedra
    (their mesh losses enter the total times ``voxel_only_mesh_weight``). With that weight 0 the mesh
    losses are not computed at all (the chamfer distance was ~60% of such a step on a CPU): the total
    gets 0 x the refined vertices instead, so every refiner parameter still has a (zero) gradient, as
    DDP needs, and the update is the same as with the losses times 0. They are then logged as 0.
    """
    voxel_only = cfg.uses_voxels and step <= cfg.voxel_only_iters
    out = model(batch["images"], batch["K"], voxel_only=voxel_only)
    if voxel_only and cfg.voxel_only_mesh_weight == 0:
        zero = sum(m.verts_packed().sum() for m in out["meshes"]) * 0.0
        losses = {"chamfer": zero.detach(), "normal": zero.detach(), "edge": zero.detach()}
        total = zero
    else:
        gt = Meshes(batch["verts"], batch["faces"])
        points, normals = sample_gt(gt, cfg.num_samples)
        ml = mesh_losses(out["meshes"], points, normals, chamfer_weight=cfg.chamfer_weight,
                         normal_weight=cfg.normal_weight, edge_weight=cfg.edge_weight, num_samples=cfg.num_samples,
                         reduction=cfg.stage_reduction)
        losses = {"chamfer": ml["chamfer"], "normal": ml["normal"], "edge": ml["edge"]}
        total = ml["total"] * cfg.voxel_only_mesh_weight if voxel_only else ml["total"]
    if out["voxel_logits"] is not None:
        n, _, s, _ = batch["images"].shape
        base = unwrap(model)
        boxes, z = base.frame(n, s, s, batch["K"].device)
        vt = voxel_targets(batch["occupancy"], batch["occupancy_to_camera"], boxes, batch["K"], z, cfg.voxel_size)
        losses["voxel"] = voxel_loss(out["voxel_logits"], vt)
        total = total + cfg.voxel_loss_weight * losses["voxel"]
    losses["total"] = total
    return losses


def rcnn_losses(model: nn.Module, batch: dict, step: int, cfg: MeshRCNNConfig) -> dict[str, Tensor]:
    """Losses of the ``rcnn`` model: ``batch`` holds ``images`` (list of (3, H, W)) and ``targets``."""
    losses = model(batch["images"], batch["targets"])
    losses = {k.removeprefix("loss_"): v for k, v in losses.items()}
    losses["total"] = sum(losses.values())
    return losses


def guarded_step(model: nn.Module, optimizer: torch.optim.Optimizer, losses: dict[str, Tensor], step: int,
                 cfg: MeshRCNNConfig) -> dict[str, float]:
    """Backward and (maybe) update; returns the float losses plus ``skipped`` (1.0 when not applied) and ``lr``."""
    base = unwrap(model)
    total = losses["total"]
    keep = base.guard.check(float(total.detach()))
    params = [p for p in model.parameters() if p.requires_grad]
    if not keep:
        total = sum(p.sum() for p in params) * 0.0
    lr = learning_rate(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_factor", 1.0)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    applied = keep and gradients_finite(params)
    if applied:
        optimizer.step()
    metrics = {k: float(v.detach()) for k, v in losses.items()}
    metrics.update(skipped=0.0 if applied else 1.0, lr=lr)
    return metrics
