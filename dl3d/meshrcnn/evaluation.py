"""Held-out evaluation of Mesh R-CNN with its baselines on the same images.

Every metric is computed in the camera frame (metres) with ``dl3d.metrics.mesh.compare_meshes``
(both meshes scaled so the GT's longest box edge is 10, ``cfg.eval_samples`` points). Baselines:

- ``sphere``: the unit sphere (ico-sphere level 4) of the GT object's unit box, i.e. its visible 2D
  box with K and its true depth range, mapped to the camera frame: the best blob that knows where the
  object is and how big, and nothing of its shape;
- ``cubified`` (voxel architectures): the model's own cubified voxels, before any refinement.

ShapeNet-style models are also scored by voxel IoU against the GT occupancy in their voxel grid,
a voxel counting as predicted when its probability exceeds the cubify threshold (the voxels that are
cubified; the official code reports no voxel IoU on ShapeNet).
``rcnn``: each GT object is matched to its highest-IoU detection (IoU > 0.3; an unmatched object
scores F1 0); the detection's unit-box mesh is placed with its predicted dz at the GT's centre depth
(Mesh R-CNN predicts depth only up to scale); mesh AP is computed over the batch's images.
"""

from __future__ import annotations

import torch
from pytorch3d.structures import Meshes
from pytorch3d.utils import ico_sphere

from dl3d.meshrcnn.config import MeshRCNNConfig
from dl3d.meshrcnn.unit_box import unit_box_to_camera, voxel_targets, zrange_from_dz
from dl3d.metrics.mesh import box_iou, compare_meshes, mesh_ap, voxel_iou

REPORTED = ("f1@0.1", "f1@0.3", "f1@0.5", "chamfer_l2", "abs_normal_consistency")


def _score(prefix: str, pred: Meshes, gt: Meshes, cfg: MeshRCNNConfig) -> dict[str, float]:
    m = compare_meshes(pred, gt, num_samples=cfg.eval_samples)
    return {f"{prefix}{k}": float(m[k].mean()) for k in REPORTED}


def sphere_in_box(boxes: torch.Tensor, K: torch.Tensor, zranges: torch.Tensor) -> Meshes:
    """The unit-box unit sphere of each (box, K, depth range), in the camera frame."""
    n = boxes.shape[0]
    s = ico_sphere(4, boxes.device).extend(n)
    return s.update_padded(unit_box_to_camera(s.verts_padded(), boxes, K, zranges))


def gt_zranges(verts: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.stack([v[:, 2].min(), v[:, 2].max()]) for v in verts])


@torch.no_grad()
def evaluate_voxmesh(model, batch: dict, cfg: MeshRCNNConfig) -> dict[str, float]:
    out = model(batch["images"], batch["K"])
    gt = Meshes(batch["verts"], batch["faces"])
    metrics = _score("", out["meshes"][-1], gt, cfg)
    zr = gt_zranges(batch["verts"])
    metrics.update(_score("sphere_", sphere_in_box(batch["boxes"], batch["K"], zr), gt, cfg))
    if out["voxel_logits"] is not None:
        metrics.update(_score("cubified_", out["init_meshes"], gt, cfg))
        n, _, s, _ = batch["images"].shape
        boxes, z = model.frame(n, s, s, batch["K"].device)
        vt = voxel_targets(batch["occupancy"], batch["occupancy_to_camera"], boxes, batch["K"], z, cfg.voxel_size)
        # occupied = above the cubify threshold: the voxels that become the initial mesh
        metrics["voxel_iou"] = float(voxel_iou(out["voxel_logits"].sigmoid(), vt, cfg.cubify_threshold).mean())
    return metrics


@torch.no_grad()
def evaluate_rcnn(model, batch: dict, cfg: MeshRCNNConfig) -> dict[str, float]:
    results = model(batch["images"])
    preds, gts, spheres, images, found = [], [], [], [], []
    for r, t in zip(results, batch["targets"]):
        if len(t["labels"]) == 0:
            continue
        K, zr = t["K"].float(), gt_zranges(t["verts"])
        gt = Meshes(t["verts"], t["faces"])
        m = len(t["labels"])
        spheres.append(sphere_in_box(t["boxes"], K.expand(m, 3, 3), zr))
        gts.append(gt)
        iou = box_iou(r["boxes"], t["boxes"]) if len(r["boxes"]) else torch.zeros(0, m)
        f1 = torch.zeros(len(r["boxes"]), m)
        for g in range(m):
            d = int(iou[:, g].argmax()) if iou.shape[0] else -1
            ok = d >= 0 and float(iou[d, g]) > 0.3
            found.append(ok)
            mesh = r["meshes"][d] if ok else None
            box = r["boxes"][d] if ok else t["boxes"][g]
            zpred = zrange_from_dz(r["dz"][d:d + 1], K[0, 0:1], zr[g].mean()[None]) if ok else zr[g:g + 1]
            verts = mesh[0] if ok else ico_sphere(1, K.device).verts_packed()
            faces = mesh[1] if ok else ico_sphere(1, K.device).faces_packed()
            cam = unit_box_to_camera(verts[None], box[None], K[None], zpred)[0]
            preds.append((cam, faces))
            # F1 of every detection against this GT (for mesh AP), only where the box IoU passes the filter
            for dd in torch.nonzero(iou[:, g] > 0.3)[:, 0].tolist():
                zd = zrange_from_dz(r["dz"][dd:dd + 1], K[0, 0:1], zr[g].mean()[None])
                v = unit_box_to_camera(r["meshes"][dd][0][None], r["boxes"][dd][None], K[None], zd)[0]
                f1[dd, g] = float(compare_meshes(Meshes([v], [r["meshes"][dd][1]]), Meshes([t["verts"][g]], [t["faces"][g]]),
                                                 num_samples=cfg.eval_samples)["f1@0.3"][0])
        images.append({"scores": r["scores"], "labels": r["labels"], "boxes": r["boxes"], "f1": f1,
                       "gt_boxes": t["boxes"], "gt_labels": t["labels"]})
    if not gts:
        return {}
    gt = Meshes([v for g in gts for v in g.verts_list()], [f for g in gts for f in g.faces_list()])
    pred = Meshes([p[0] for p in preds], [p[1] for p in preds])
    hit = torch.tensor(found, dtype=torch.float32)
    m = compare_meshes(pred, gt, num_samples=cfg.eval_samples)
    metrics = {k: float((m[k] * (hit if k.startswith("f1") else 1)).mean()) for k in REPORTED}
    sph = Meshes([v for s in spheres for v in s.verts_list()], [f for s in spheres for f in s.faces_list()])
    metrics.update(_score("sphere_", sph, gt, cfg))
    metrics["detected"] = float(hit.mean())
    metrics.update(mesh_ap(images))
    return metrics
