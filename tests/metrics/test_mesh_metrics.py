"""Mesh metrics against a brute-force reference (exact nearest neighbours by full distance matrices over the
same samples), closed forms on concentric spheres, mesh AP on hand-made detections, voxel IoU."""

from __future__ import annotations

import pytest
import torch
from pytorch3d.structures import Meshes
from pytorch3d.utils import ico_sphere

from dl3d.metrics.mesh import THRESHOLDS, compare_meshes, mesh_ap, sampling_metrics, voc_ap, voxel_iou


def _reference(pp, pn, gp, gn, thresholds):
    """Brute force: every pairwise distance, argmin, then the definitions of meshrcnn/utils/metrics.py."""
    out = {k: [] for k in ["chamfer_l2", "normal_consistency", "abs_normal_consistency"]}
    for i in range(pp.shape[0]):
        d = torch.cdist(pp[i].double(), gp[i].double())  # (P, Q)
        p2g, ip = d.min(1)
        g2p, ig = d.min(0)
        out["chamfer_l2"].append((p2g ** 2).mean() + (g2p ** 2).mean())
        cp = (pn[i].double() * gn[i].double()[ip]).sum(1) / (pn[i].double().norm(dim=1) * gn[i].double()[ip].norm(dim=1))
        cg = (gn[i].double() * pn[i].double()[ig]).sum(1) / (gn[i].double().norm(dim=1) * pn[i].double()[ig].norm(dim=1))
        out["normal_consistency"].append(0.5 * (cp.mean() + cg.mean()))
        out["abs_normal_consistency"].append(0.5 * (cp.abs().mean() + cg.abs().mean()))
        for t in thresholds:
            prec, rec = 100 * (p2g < t).double().mean(), 100 * (g2p < t).double().mean()
            out.setdefault(f"precision@{t:g}", []).append(prec)
            out.setdefault(f"recall@{t:g}", []).append(rec)
            out.setdefault(f"f1@{t:g}", []).append(2 * prec * rec / (prec + rec) if prec + rec > 0 else prec * 0)
    return {k: torch.stack(v) for k, v in out.items()}


@pytest.mark.parametrize("sizes", [(3, 200, 300), (2, 1000, 700)])
def test_sampling_metrics_equal_a_brute_force_reference(sizes):
    n, p, q = sizes
    g = torch.Generator().manual_seed(p)
    pp, gp = torch.randn(n, p, 3, generator=g) * 2, torch.randn(n, q, 3, generator=g) * 2
    pn, gn = torch.randn(n, p, 3, generator=g), torch.randn(n, q, 3, generator=g)
    ours = sampling_metrics(pp, pn, gp, gn, thresholds=(0.1, 0.3, 0.5))
    ref = _reference(pp, pn, gp, gn, (0.1, 0.3, 0.5))
    assert set(ours) == set(ref)
    for k in ref:
        torch.testing.assert_close(ours[k].double(), ref[k], atol=1e-4, rtol=1e-4, msg=k)
    assert float(ref["f1@0.5"].min()) > 5, "thresholds in a range where the F1 comparison is not vacuous"


def _sphere(radius: float, n: int = 1) -> Meshes:
    s = ico_sphere(4)
    return Meshes([s.verts_packed() * radius] * n, [s.faces_packed()] * n)


def test_concentric_spheres_give_the_closed_form_values():
    """GT radius 1, prediction 1.2; scaled so the GT box edge is 10: radii 5 and 6, every nearest point
    lies radially 1 away, so chamfer-L2 = 1 + 1 = 2, F1@0.1/0.3/0.5 = 0 and normals agree (|cos| = 1)."""
    torch.manual_seed(0)
    m = compare_meshes(_sphere(1.2), _sphere(1.0))
    assert float(m["chamfer_l2"]) == pytest.approx(2.0, rel=0.02)
    assert float(m["chamfer_l2"]) >= 2.0 * (1 - 2e-3), "nearest neighbours are never closer than the radial gap"
    for t in THRESHOLDS:
        assert float(m[f"f1@{t:g}"]) == 0.0
    assert float(m["abs_normal_consistency"]) > 0.99 and float(m["normal_consistency"]) > 0.99
    # Radii 1 and 1.01: scaled radial gap 0.05; with 10k samples on a radius-5 sphere (spacing ~0.18) the
    # tangential offset to the nearest sample stays well under 0.3, so F1@0.3 = F1@0.5 = 100.
    close = compare_meshes(_sphere(1.01), _sphere(1.0))
    assert float(close["f1@0.3"]) == pytest.approx(100.0, abs=0.1)
    assert float(close["f1@0.5"]) == pytest.approx(100.0, abs=0.1)
    assert 2 * 0.05 ** 2 < float(close["chamfer_l2"]) < 0.05
    # Scale invariance: the same pair 3x larger scores the same.
    torch.manual_seed(0)
    big = compare_meshes(_sphere(3.6), _sphere(3.0))
    assert float(big["chamfer_l2"]) == pytest.approx(float(m["chamfer_l2"]), rel=0.02)


def test_degenerate_meshes_are_value_errors():
    with pytest.raises(ValueError, match="non-empty"):
        compare_meshes(Meshes([torch.zeros(0, 3)], [torch.zeros(0, 3, dtype=torch.int64)]), _sphere(1.0))
    flat = Meshes([torch.zeros(3, 3)], [torch.tensor([[0, 1, 2]])])
    with pytest.raises(ValueError, match="degenerate"):
        compare_meshes(_sphere(1.0), flat)
    with pytest.raises(ValueError, match="as many"):
        compare_meshes(_sphere(1.0, 2), _sphere(1.0))


def _image(scores, labels, boxes, f1, gt_boxes, gt_labels):
    t = torch.tensor
    return {"scores": t(scores, dtype=torch.float32), "labels": t(labels), "boxes": t(boxes, dtype=torch.float32),
            "f1": t(f1, dtype=torch.float32), "gt_boxes": t(gt_boxes, dtype=torch.float32), "gt_labels": t(gt_labels)}


def test_mesh_ap_counts_true_positives_by_box_filter_class_f1_and_coverage():
    gt = [[0, 0, 10, 10]]
    # best-scoring detection good, a duplicate below it: AP 1 (the duplicate is a FP after the only TP)
    a = _image([0.9, 0.8], [1, 1], [[0, 0, 10, 10], [1, 1, 10, 10]], [[60.0], [70.0]], gt, [1])
    assert mesh_ap([a])["mesh_ap"] == pytest.approx(1.0)
    # a false positive (F1 40) scores higher: precision 1/2 at recall 1 -> AP 0.5
    b = _image([0.9, 0.8], [1, 1], [[0, 0, 10, 10], [0, 0, 10, 10]], [[40.0], [70.0]], gt, [1])
    assert mesh_ap([b])["mesh_ap"] == pytest.approx(0.5)
    assert mesh_ap([b])["box_ap"] == pytest.approx(1.0)
    # a high-scoring detection with box IoU <= 0.3 is ignored entirely, a wrong class is a FP
    c = _image([0.95, 0.9, 0.8], [1, 2, 1], [[50, 50, 60, 60], [0, 0, 10, 10], [0, 0, 10, 10]],
               [[90.0], [90.0], [70.0]], gt, [1])
    r = mesh_ap([c])
    assert r["mesh_ap"] == pytest.approx(1.0), "class 1: AP 1; class 2 has no GT and is not averaged (Pix3D)"
    # two images, one missed object: recall reaches 1/2 only
    d = _image([], [], torch.zeros(0, 4).tolist(), torch.zeros(0, 1).tolist(), gt, [1])
    assert mesh_ap([a, d])["mesh_ap"] == pytest.approx(0.5)


def test_voc_ap_reference_values():
    assert voc_ap(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True]), 2) == pytest.approx(
        0.5 * 1.0 + 0.5 * (2 / 3))
    assert voc_ap(torch.tensor([]), torch.tensor([], dtype=torch.bool), 3) == 0.0
    with pytest.raises(ValueError):
        voc_ap(torch.tensor([1.0]), torch.tensor([True]), 0)


def test_voxel_iou():
    gt = torch.zeros(3, 4, 4, 4)
    gt[:, :2] = 1
    pred = torch.zeros(3, 4, 4, 4)
    pred[0, :2] = 0.9
    pred[1, :1] = 0.9
    pred[1, 2:3] = 0.9
    iou = voxel_iou(pred, gt)
    torch.testing.assert_close(iou, torch.tensor([1.0, 1 / 3, 0.0]))
    assert float(voxel_iou(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        voxel_iou(pred, gt[:, :2])
