"""Mesh R-CNN as a model family of the training driver (``dl3d train meshrcnn``), on ``object_images``.

One module (``model``: a VoxMesh or a MeshRCNN) and one optimizer (Adam or SGD). A step is the
official one: losses, the loss-spike guard, backward, an update only with finite gradients, a linear
warm-up. ShapeNet-style presets see one object per image (the one with the largest mask when a row
holds several), the image resized to ``image_size`` with K scaled alike; ``rcnn`` sees every object.
Evaluation (``dl3d.meshrcnn.evaluation``) reports F1 / chamfer / normal consistency of the model and,
on the same held-out images, of the sphere-in-the-GT-box and (voxel architectures) its own cubified
voxels, plus voxel IoU or mesh AP.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from dl3d.data import DataError, arrow_to_tensor
from dl3d.data.images import decode_image, resize_image
from dl3d.data.mesh_tables import OBJECT_IMAGES, decode_mask, decode_objects
from dl3d.meshrcnn.config import MESHRCNN_PRESETS, MeshRCNNConfig
from dl3d.meshrcnn.evaluation import evaluate_rcnn, evaluate_voxmesh
from dl3d.meshrcnn.train_step import build_meshrcnn, guarded_step, make_optimizer, rcnn_losses, voxmesh_losses
from dl3d.train.family import Batch, ModelFamily, Modules, Optimizers

INIT_SEED = 0
"""Seed of the parameter initialisation (every DDP worker builds the same replica)."""


def build(cfg: MeshRCNNConfig) -> Modules:
    torch.manual_seed(INIT_SEED)
    return {"model": build_meshrcnn(cfg)}


def make_optimizers(modules: Modules, cfg: MeshRCNNConfig) -> Optimizers:
    return {"model": make_optimizer(modules["model"], cfg)}


def decode_batch(table: pa.Table, cfg: MeshRCNNConfig, device: torch.device) -> Batch:
    """``object_images`` rows -> the model's batch.

    ShapeNet style: ``images`` (N, 3, S, S) in [0, 1], ``K`` (N, 3, 3) scaled to S, ``boxes`` (N, 4) the
    object's visible box in those pixels, ``labels`` (N,), ``verts``/``faces`` (lists, camera frame),
    ``occupancy`` (N, R, R, R), ``occupancy_to_camera`` (N, 4, 4). rcnn: ``images`` (list of (3, H, W))
    and ``targets`` (list of dicts, see ``dl3d.meshrcnn.rcnn``).
    """
    Ks = arrow_to_tensor(table.column("intrinsics"), (3, 3), name="intrinsics", source="batch")
    ids = table.column("id").to_pylist()
    rows = []
    for i in range(table.num_rows):
        where = f"row {i} (id {ids[i]!r})"
        img = decode_image(table.column("image")[i].as_py(), where)
        objs = decode_objects(table, i, where)
        if "occupancy" not in objs:
            raise DataError(where, "Mesh R-CNN training needs the occupancy columns")
        if cfg.is_detector and len(objs["labels"]) and int(objs["labels"].max()) > cfg.num_classes:
            raise DataError(where, f"class id {int(objs['labels'].max())} > num_classes {cfg.num_classes}")
        rows.append((img, torch.from_numpy(Ks[i].copy()), objs, where))
    return _rcnn_batch(rows, device) if cfg.is_detector else _voxmesh_batch(rows, cfg, device)


def _voxmesh_batch(rows, cfg: MeshRCNNConfig, device: torch.device) -> Batch:
    s = cfg.image_size
    images, Ks, boxes, labels, verts, faces, occ, occ_T = [], [], [], [], [], [], [], []
    for img, K, objs, where in rows:
        if len(objs["labels"]) == 0:
            raise DataError(where, "an image without objects cannot train a ShapeNet-style model")
        j = int(np.argmax([decode_mask(m, where).sum() for m in objs["masks"]]))
        h, w = img.shape[:2]
        sx, sy = s / w, s / h
        K = K.clone()
        K[0] *= sx
        K[1] *= sy
        images.append(torch.from_numpy(np.array(resize_image(img, (s, s)) if (h, w) != (s, s) else img)))
        Ks.append(K)
        boxes.append(torch.from_numpy(objs["boxes"][j]) * torch.tensor([sx, sy, sx, sy]))
        labels.append(int(objs["labels"][j]))
        verts.append(torch.from_numpy(objs["verts"][j]).to(device))
        faces.append(torch.from_numpy(objs["faces"][j]).to(device))
        occ.append(torch.from_numpy(objs["occupancy"][j]))
        occ_T.append(torch.from_numpy(objs["occupancy_to_camera"][j]))
    return {"images": (torch.stack(images).permute(0, 3, 1, 2).float() / 255).to(device),
            "K": torch.stack(Ks).float().to(device), "boxes": torch.stack(boxes).float().to(device),
            "labels": torch.tensor(labels, device=device), "verts": verts, "faces": faces,
            "occupancy": torch.stack(occ).to(device), "occupancy_to_camera": torch.stack(occ_T).float().to(device)}


def _rcnn_batch(rows, device: torch.device) -> Batch:
    images, targets = [], []
    for img, K, objs, where in rows:
        h, w = img.shape[:2]
        masks = [torch.from_numpy(decode_mask(m, where)) for m in objs["masks"]]
        if any(m.shape != (h, w) for m in masks):
            raise DataError(where, f"a mask's size differs from the image's {w}x{h}")
        images.append((torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255).to(device))
        n = len(objs["labels"])
        R = objs["occupancy"].shape[-1] if n else 1
        targets.append({
            "boxes": torch.from_numpy(objs["boxes"]).float().reshape(-1, 4).to(device),
            "labels": torch.from_numpy(objs["labels"]).to(device),
            "masks": (torch.stack(masks) if masks else torch.zeros(0, h, w)).to(torch.uint8).to(device),
            "K": K.float().to(device), "image_size": torch.tensor([h, w], device=device),
            "verts": [torch.from_numpy(v).to(device) for v in objs["verts"]],
            "faces": [torch.from_numpy(f).to(device) for f in objs["faces"]],
            "occupancy": torch.from_numpy(objs["occupancy"]).reshape(n, R, R, R).to(device),
            "occupancy_to_camera": torch.from_numpy(objs["occupancy_to_camera"]).float().reshape(n, 4, 4).to(device),
        })
    return {"images": images, "targets": targets}


def train_step(modules: Modules, optimizers: Optimizers, batch: Batch, step: int, cfg: MeshRCNNConfig) -> dict[str, float]:
    model = modules["model"]
    losses = (rcnn_losses if cfg.is_detector else voxmesh_losses)(model, batch, step, cfg)
    return guarded_step(model, optimizers["model"], losses, step, cfg)


def evaluate(modules: Modules, batch: Batch, cfg: MeshRCNNConfig) -> dict[str, float]:
    return (evaluate_rcnn if cfg.is_detector else evaluate_voxmesh)(modules["model"], batch, cfg)


MESHRCNN_FAMILY = ModelFamily(
    name="meshrcnn", config_cls=MeshRCNNConfig, presets=MESHRCNN_PRESETS, dataset_kind=OBJECT_IMAGES.kind,
    schema=OBJECT_IMAGES, build=build, make_optimizers=make_optimizers, decode_batch=decode_batch,
    train_step=train_step, evaluate=evaluate, find_unused_parameters=False,
    doc="Mesh R-CNN (Gkioxari et al. 2019): voxels, cubify, graph-conv mesh refinement; on object_images datasets",
)


def meshrcnn_checkpoint_from_training(state: dict[str, Any]) -> tuple[MeshRCNNConfig, dict]:
    """A training checkpoint of this family (``dl3d.train.read_checkpoint``'s dict) -> (config, model state_dict)."""
    family = state.get("meta", {}).get("family")
    if family != MESHRCNN_FAMILY.name:
        raise ValueError(f"this training checkpoint was written by model family {family!r}, not 'meshrcnn'")
    return MeshRCNNConfig(**state["meta"]["model_config"]), state["modules"]["model"]
