"""Mesh reconstruction metrics as Mesh R-CNN reports them (``meshrcnn/utils/metrics.py``, ``VOCap.py``,
``pix3d_evaluation.py``), and voxel IoU.

:func:`compare_meshes`: both meshes of a pair are scaled so that the GT's bounding box has longest
edge 10, ``num_samples`` (10 000) points with normals are sampled on each surface, and from exact
nearest neighbours (``dl3d.mesh.nearest``: a k-d tree on a CPU, pytorch3d ``knn_points`` on CUDA):

- ``chamfer_l2``: mean squared distance pred -> GT plus GT -> pred (squared units of the scaled frame);
- ``normal_consistency`` / ``abs_normal_consistency``: the mean of the two directions' mean (absolute)
  cosine between a sample's normal and its nearest neighbour's;
- ``precision@t``, ``recall@t``, ``f1@t`` in percent, for t in 0.1, 0.3, 0.5 (distances, not squared).

:func:`mesh_ap`: Pix3D's mesh AP: detections whose box IoU with the GT is <= 0.3 are ignored, a kept
detection is a true positive when its class matches, its F1@0.3 exceeds 50 % and its GT is not
covered yet (in descending score order); AP is the VOC area under the interpolated precision curve.
"""

from __future__ import annotations

import torch
from pytorch3d.ops import sample_points_from_meshes
from pytorch3d.structures import Meshes
from torch import Tensor
from torch.nn import functional as F

from dl3d.mesh.nearest import gather_points, nearest_sq_dists

THRESHOLDS = (0.1, 0.3, 0.5)
"""F1 distance thresholds, in the frame where the GT's longest box edge is 10."""


def scale_to_gt(pred: Meshes, gt: Meshes, target: float = 10.0) -> tuple[Meshes, Meshes]:
    """Scale every (pred, GT) pair by ``target / longest edge of the GT's bounding box``."""
    if len(pred) != len(gt):
        raise ValueError(f"expected as many predicted as GT meshes, got {len(pred)} and {len(gt)}")
    box = gt.get_bounding_boxes()  # (N, 3, 2)
    long_edge = (box[:, :, 1] - box[:, :, 0]).max(dim=1).values
    if bool((long_edge <= 0).any()):
        raise ValueError("a GT mesh has a degenerate (zero-size) bounding box")
    scale = target / long_edge
    return pred.scale_verts(scale), gt.scale_verts(scale)


def sampling_metrics(pred_points: Tensor, pred_normals: Tensor | None, gt_points: Tensor,
                     gt_normals: Tensor | None, thresholds=THRESHOLDS) -> dict[str, Tensor]:
    """Metrics between sampled point sets: (N, P, 3) predicted and (N, Q, 3) GT points (and normals).

    Returns a dict of (N,) tensors (see the module docstring); normal metrics only with both normals.
    """
    if pred_points.dim() != 3 or gt_points.dim() != 3 or pred_points.shape[0] != gt_points.shape[0]:
        raise ValueError(f"expected (N, P, 3) and (N, Q, 3) points, got {tuple(pred_points.shape)}, "
                         f"{tuple(gt_points.shape)}")
    d_p2g, i_p2g = nearest_sq_dists(pred_points, gt_points)  # squared
    d_g2p, i_g2p = nearest_sq_dists(gt_points, pred_points)
    out = {"chamfer_l2": d_p2g.mean(1) + d_g2p.mean(1)}
    if pred_normals is not None and gt_normals is not None:
        near_gt = gather_points(gt_normals, i_p2g)
        near_pred = gather_points(pred_normals, i_g2p)
        cos_p = F.cosine_similarity(pred_normals, near_gt, dim=2)
        cos_g = F.cosine_similarity(gt_normals, near_pred, dim=2)
        out["normal_consistency"] = 0.5 * (cos_p.mean(1) + cos_g.mean(1))
        out["abs_normal_consistency"] = 0.5 * (cos_p.abs().mean(1) + cos_g.abs().mean(1))
    for t in thresholds:
        precision = 100.0 * (d_p2g.sqrt() < t).float().mean(1)
        recall = 100.0 * (d_g2p.sqrt() < t).float().mean(1)
        out[f"precision@{t:g}"] = precision
        out[f"recall@{t:g}"] = recall
        out[f"f1@{t:g}"] = 2 * precision * recall / (precision + recall + 1e-8)
    return out


@torch.no_grad()
def compare_meshes(pred: Meshes, gt: Meshes, num_samples: int = 10_000, scale: float = 10.0,
                   thresholds=THRESHOLDS) -> dict[str, Tensor]:
    """Per-pair metrics (dict of (N,) tensors) between N predicted and N GT meshes (any one frame).

    Raises ValueError for mismatched counts, an empty mesh or a degenerate GT box.
    """
    if pred.isempty() or gt.isempty() or bool((pred.num_faces_per_mesh() == 0).any()) \
            or bool((gt.num_faces_per_mesh() == 0).any()):
        raise ValueError("compare_meshes needs non-empty meshes (an empty prediction has no surface to sample)")
    pred, gt = scale_to_gt(pred, gt, scale)
    pp, pn = sample_points_from_meshes(pred, num_samples, return_normals=True)
    gp, gn = sample_points_from_meshes(gt, num_samples, return_normals=True)
    return sampling_metrics(pp, pn, gp, gn, thresholds)


def voxel_iou(pred: Tensor, gt: Tensor, threshold: float = 0.5) -> Tensor:
    """(N, ...) predicted probabilities (occupied when > threshold) and (N, ...) GT in {0, 1} -> (N,) IoU.

    A pair where both grids are empty has IoU 1.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"expected voxel grids of the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    p, g = (pred > threshold).flatten(1), (gt > 0.5).flatten(1)
    inter, union = (p & g).sum(1).float(), (p | g).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, 4) and (M, 4) boxes x1 y1 x2 y2 -> (N, M) IoU."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]).clamp(min=0) * (x[:, 3] - x[:, 1]).clamp(min=0)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter).clamp(min=1e-12)


def voc_ap(scores: Tensor, tp: Tensor, npos: int) -> float:
    """VOC average precision of detections with ``scores`` (K,) and true-positive flags ``tp`` (K,) bool
    against ``npos`` GT objects (``VOCap.compute_ap``: area under the monotone precision envelope)."""
    if npos <= 0:
        raise ValueError(f"npos must be > 0, got {npos}")
    if scores.numel() == 0:
        return 0.0
    order = torch.argsort(scores, descending=True)
    tps = tp[order].double().cumsum(0)
    fps = (~tp[order]).double().cumsum(0)
    rec = torch.cat([torch.zeros(1, dtype=torch.float64), tps / npos, torch.ones(1, dtype=torch.float64)])
    prec = torch.cat([torch.zeros(1, dtype=torch.float64), tps / (tps + fps), torch.zeros(1, dtype=torch.float64)])
    prec = torch.flip(torch.cummax(torch.flip(prec, [0]), 0).values, [0])
    change = torch.nonzero(rec[1:] != rec[:-1])[:, 0] + 1
    return float(((rec[change] - rec[change - 1]) * prec[change]).sum())


def mesh_ap(images: list[dict], classes: list[int] | None = None, box_iou_filter: float = 0.3,
            f1_threshold: float = 50.0) -> dict[str, float]:
    """Mesh AP over a set of images, averaged over the classes that have GT objects.

    images: per image ``scores`` (D,), ``labels`` (D,), ``boxes`` (D, 4), ``f1`` (D, G) F1@0.3 in percent
    of each detection against each GT object, ``gt_boxes`` (G, 4), ``gt_labels`` (G,).
    Returns ``mesh_ap`` and ``box_ap`` (box IoU > 0.5 instead of the F1 test), in [0, 1].
    """
    per: dict[int, dict[str, list]] = {}
    npos: dict[int, int] = {}
    for im in images:
        for lab in im["gt_labels"].tolist():
            npos[lab] = npos.get(lab, 0) + 1
        if len(im["scores"]) == 0 or len(im["gt_labels"]) == 0:
            continue
        iou = box_iou(im["boxes"], im["gt_boxes"])
        covered_mesh, covered_box = set(), set()
        for d in torch.argsort(im["scores"], descending=True).tolist():
            g = int(iou[d].argmax())
            if float(iou[d, g]) <= box_iou_filter:
                continue
            lab = int(im["labels"][d])
            same = lab == int(im["gt_labels"][g])
            mesh_tp = same and float(im["f1"][d, g]) > f1_threshold and g not in covered_mesh
            box_tp = same and float(iou[d, g]) > 0.5 and g not in covered_box
            if mesh_tp:
                covered_mesh.add(g)
            if box_tp:
                covered_box.add(g)
            rec = per.setdefault(lab, {"scores": [], "mesh": [], "box": []})
            rec["scores"].append(float(im["scores"][d]))
            rec["mesh"].append(mesh_tp)
            rec["box"].append(box_tp)
    cls = sorted(npos) if classes is None else [c for c in classes if npos.get(c, 0) > 0]
    if not cls:
        raise ValueError("mesh_ap needs at least one GT object")
    out = {}
    for key in ("mesh", "box"):
        aps = []
        for c in cls:
            rec = per.get(c, {"scores": [], "mesh": [], "box": []})
            aps.append(voc_ap(torch.tensor(rec["scores"], dtype=torch.float64), torch.tensor(rec[key], dtype=torch.bool),
                              npos[c]))
        out[f"{key}_ap"] = sum(aps) / len(aps)
    return out
