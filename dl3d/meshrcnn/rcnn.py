"""Mesh R-CNN on torchvision's Mask R-CNN: RoI heads extended by Z, voxel and mesh branches.

As ``MeshRCNNROIHeads`` (Pix3D): the box and mask branches are torchvision's; during training the Z,
voxel and mesh branches use the box head's sampled foreground proposals, at inference the final
detections. Voxels (class-agnostic, G = 2 x pooler) come from RoIAligned features; cubify (no_grad,
an empty grid becomes the central cube) gives the initial mesh in the RoI's unit box; the refiner
samples 14 x 14 RoI features at each vertex's (u, v). Targets are the GT meshes and occupancy grids
in each proposal's unit box, with the GT mesh's own depth range (``dl3d.meshrcnn.unit_box``), so
every image needs K. Depth extent: the Z head's log(dz / box height).

Targets (one dict per image, as torchvision's plus): ``K`` (3, 3) pixels of the ORIGINAL image,
``image_size`` (2,) its (H, W), ``verts`` / ``faces`` (lists of (V, 3) camera-frame metres / (F, 3)),
``occupancy`` (M, R, R, R) bool and ``occupancy_to_camera`` (M, 4, 4) (see ``unit_box.voxel_targets``).
torchvision resizes images and boxes; K stays in original pixels and proposals are scaled back.
"""

from __future__ import annotations

import torch
from pytorch3d.structures import Meshes
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from dl3d.meshrcnn.config import MeshRCNNConfig
from dl3d.meshrcnn.losses import LossGuard, mesh_losses, sample_gt, voxel_loss
from dl3d.meshrcnn.mesh_head import MeshRefinementHead, unit_box_positions
from dl3d.meshrcnn.unit_box import camera_to_unit_box, depth_extent_target, voxel_targets
from dl3d.meshrcnn.voxel_head import VoxelHead, cubify_voxels
from dl3d.meshrcnn.z_head import ZHead, predicted_dz, select_class, z_loss

FPN_CHANNELS = 256
LEVELS = ["0", "1", "2", "3"]


class MeshRCNNRoIHeads(RoIHeads):
    """torchvision ``RoIHeads`` (box + mask) plus the Z, voxel and mesh branches."""

    def attach_shape_heads(self, cfg: MeshRCNNConfig) -> None:
        self.cfg = cfg
        self.z_pool = MultiScaleRoIAlign(LEVELS, cfg.z_pooler, sampling_ratio=2)
        self.z_head = ZHead(FPN_CHANNELS, cfg.z_pooler, cfg.z_fcs, cfg.z_fc_dim,
                            1 if cfg.z_class_agnostic else cfg.num_classes)
        self.voxel_pool = MultiScaleRoIAlign(LEVELS, cfg.voxel_pooler, sampling_ratio=2)
        self.voxel_head = VoxelHead(FPN_CHANNELS, cfg.voxel_size, cfg.voxel_convs, cfg.voxel_conv_dim)
        self.mesh_pool = MultiScaleRoIAlign(LEVELS, cfg.mesh_pooler, sampling_ratio=2)
        self.mesh_head = MeshRefinementHead(FPN_CHANNELS, cfg.mesh_stages, cfg.graph_convs, cfg.graph_conv_dim,
                                            cfg.graph_conv_init)
        self._sampled = None

    def select_training_samples(self, proposals, targets):
        out = super().select_training_samples(proposals, targets)
        self._sampled = out  # proposals, matched_idxs, labels, regression_targets
        return out

    def forward(self, features, proposals, image_shapes, targets=None):
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training:
            props, matched, labels, _ = self._sampled
            self._sampled = None
            boxes, gt_idx, gt_labels = [], [], []
            for p, m, lab in zip(props, matched, labels):
                pos = torch.where(lab > 0)[0]
                boxes.append(p[pos])
                gt_idx.append(m[pos])
                gt_labels.append(lab[pos])
            losses.update(self._shape_losses(features, boxes, gt_idx, gt_labels, image_shapes, targets))
            return result, losses
        boxes = [r["boxes"] for r in result]
        shape = self._shape_predict(features, boxes, [r["labels"] for r in result], image_shapes)
        for r, extra in zip(result, shape):
            r.update(extra)
        return result, losses

    def _heads(self, features, boxes, image_shapes):
        z = self.z_head(self.z_pool(features, boxes, image_shapes))
        logits = self.voxel_head(self.voxel_pool(features, boxes, image_shapes))[:, 0]
        mesh_feats = self.mesh_pool(features, boxes, image_shapes)
        init = cubify_voxels(logits.sigmoid(), self.cfg.cubify_threshold) if logits.shape[0] else None
        meshes = self.mesh_head(mesh_feats, init, unit_box_positions) if init is not None else []
        return z, logits, init, meshes

    def _shape_losses(self, features, boxes, gt_idx, gt_labels, image_shapes, targets) -> dict[str, Tensor]:
        cfg = self.cfg
        z, logits, _, meshes = self._heads(features, boxes, image_shapes)
        if logits.shape[0] == 0:  # no foreground RoI: zero losses that still touch every parameter
            zero = sum(p.sum() for m in (self.z_head, self.voxel_head, self.mesh_head) for p in m.parameters()) * 0
            return {k: zero for k in ("loss_z", "loss_voxel", "loss_chamfer", "loss_normal", "loss_edge")}
        orig_boxes, Ks, zr, verts, faces, occ, occ_T = [], [], [], [], [], [], []
        for b, idx, (h, w), t in zip(boxes, gt_idx, image_shapes, targets):
            oh, ow = (float(s) for s in t["image_size"])
            orig_boxes.append(b * torch.tensor([ow / w, oh / h, ow / w, oh / h], device=b.device))
            for j in idx.tolist():
                v = t["verts"][j]
                verts.append(v)
                faces.append(t["faces"][j])
                zr.append(torch.stack([v[:, 2].min(), v[:, 2].max()]))
                Ks.append(t["K"])
            occ.append(t["occupancy"][idx])
            occ_T.append(t["occupancy_to_camera"][idx])
        ob, K, zr = torch.cat(orig_boxes), torch.stack(Ks).float(), torch.stack(zr)
        labels = torch.cat(gt_labels)
        dz = depth_extent_target(zr, K[:, 0, 0])
        out = {"loss_z": cfg.z_loss_weight * z_loss(select_class(z, labels), dz, ob[:, 3] - ob[:, 1],
                                                     cfg.z_smooth_l1_beta)}
        vt = voxel_targets(torch.cat(occ), torch.cat(occ_T).float(), ob, K, zr, cfg.voxel_size)
        out["loss_voxel"] = cfg.voxel_loss_weight * voxel_loss(logits, vt)
        unit_verts = [camera_to_unit_box(v[None].float(), ob[i:i + 1], K[i:i + 1], zr[i:i + 1])[0]
                      for i, v in enumerate(verts)]
        gt_points, gt_normals = sample_gt(Meshes(unit_verts, faces), cfg.num_samples)
        ml = mesh_losses(meshes, gt_points, gt_normals, chamfer_weight=cfg.chamfer_weight,
                         normal_weight=cfg.normal_weight, edge_weight=cfg.edge_weight, num_samples=cfg.num_samples,
                         reduction=cfg.stage_reduction, gt_coord_thresh=cfg.gt_coord_thresh)
        out.update(loss_chamfer=ml["chamfer"], loss_normal=ml["normal"], loss_edge=ml["edge"])
        return out

    def _shape_predict(self, features, boxes, labels, image_shapes) -> list[dict]:
        n_per = [len(b) for b in boxes]
        z, logits, init, meshes = self._heads(features, boxes, image_shapes)
        log_dz = select_class(z, torch.cat(labels)) if z.shape[0] else z.new_zeros(0)
        out = []
        for i, (s, n) in enumerate(zip([0, *torch.tensor(n_per).cumsum(0).tolist()], n_per)):
            rng = range(s, s + n)
            out.append({
                "log_dz": log_dz[s:s + n], "voxels": logits[s:s + n].sigmoid(),
                "init_meshes": [init.get_mesh_verts_faces(k) for k in rng] if init is not None else [],
                "meshes": [meshes[-1].get_mesh_verts_faces(k) for k in rng] if meshes else [],
            })
        return out


class MeshRCNN(nn.Module):
    """torchvision ``maskrcnn_resnet50_fpn`` whose RoI heads also predict dz, voxels and meshes.

    ``forward(images, targets=None)``: images a list of (3, H, W) RGB in [0, 1]. Training returns the
    loss dict (torchvision's ``loss_classifier``, ``loss_box_reg``, ``loss_mask``, ``loss_objectness``,
    ``loss_rpn_box_reg`` plus ``loss_z``, ``loss_voxel``, ``loss_chamfer``, ``loss_normal``,
    ``loss_edge``, each weighted). Inference returns per image: ``boxes`` (D, 4) original pixels,
    ``labels`` (D,) in 1..num_classes, ``scores``, ``masks`` (D, 1, H, W), ``log_dz``, ``dz`` (pixels),
    ``voxels`` (D, G, G, G) probabilities, ``init_meshes`` and ``meshes`` (lists of (verts, faces) in
    each detection's unit box: the cubified voxels and the last refinement stage).
    """

    def __init__(self, cfg: MeshRCNNConfig):
        super().__init__()
        if not cfg.is_detector:
            raise ValueError(f"MeshRCNN builds arch 'rcnn', got {cfg.arch!r}")
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        self.cfg = cfg
        det = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=cfg.num_classes + 1,
                                    min_size=cfg.min_size, max_size=cfg.max_size,
                                    box_batch_size_per_image=cfg.roi_batch_size,
                                    box_score_thresh=cfg.box_score_thresh)
        old = det.roi_heads
        heads = MeshRCNNRoIHeads(old.box_roi_pool, old.box_head, old.box_predictor, 0.5, 0.5, cfg.roi_batch_size,
                                 0.25, None, old.score_thresh, old.nms_thresh, old.detections_per_img,
                                 old.mask_roi_pool, old.mask_head, old.mask_predictor)
        heads.box_coder = old.box_coder
        heads.attach_shape_heads(cfg)
        det.roi_heads = heads
        self.detector = det
        self.guard = LossGuard(cfg.skip_loss_factor, cfg.loss_skip_gamma)

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("training MeshRCNN needs targets")
            return self.detector(images, targets)
        result = self.detector(images)
        for r in result:  # dz from the original-size box height (log(dz / h) is invariant to the resize)
            r["dz"] = predicted_dz(r["log_dz"], r["boxes"][:, 3] - r["boxes"][:, 1])
        return result
