"""The points kernel's forward and backward written out by hand: one autograd node per call.

``SelectedPointsKernel`` computes posed SMPL joints and a few vertices with smplx's ``lbs`` math
(``joints_kernel.py``). Run through autograd, a fitting step spends most of its time on the
bookkeeping of about a hundred small ops (tiny batched 3x4 @ 4x4 products, zero-filled gradient
buffers of slices and gathers), not on arithmetic. ``FusedPlan`` computes the same numbers:

- in a component-major, rows-last layout (``(joints, 3, 4, N)``): each level of the kinematic chain
  is three multiply-adds over contiguous rows, written in place into one (joints, 3, 4, N) tensor, not
  N tiny matrix products (nor a broadcast product and its sum, nor concatenated copies: 1.07-1.09x
  frames/s of a 4,000-row fit over that form, every preset, the same PA-MPJPE);
- with a ``torch.autograd.Function`` whose backward is derived by hand (Rodrigues, the chain level
  by level in reverse, skinning, blend shapes), so the whole kernel is one node of the graph;
- skinning only over the joints that carry weight for the selected vertices.

Equal to the autograd path (``_Plan.run``) to float rounding, forward and backward
(``tests/body/test_joints_kernel.py``: against smplx, float64 ``gradcheck``, and against ``run``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["FusedPlan"]

# (9, 3): a vector d -> its cross-product matrix K, row-major (K @ x = d x x).
_CROSS_T = ((0, 0, 0), (0, 0, -1), (0, 1, 0), (0, 0, 1), (0, 0, 0), (-1, 0, 0), (0, -1, 0), (1, 0, 0), (0, 0, 0))


class FusedPlan(nn.Module):
    """Buffers of a ``_Plan`` (``joints_kernel``) rearranged for the fused forward and backward.

    Built from a plan that computes every joint (``SelectedPointsKernel.full``); ``forward(betas,
    pose, transl)`` returns what ``plan.run`` returns.
    """

    def __init__(self, plan: nn.Module) -> None:
        super().__init__()
        m, p = plan.num_joints, plan.num_points
        self.num_joints, self.num_points = m, p
        self.level_sizes = list(plan.level_sizes)
        self.num_levels = len(self.level_sizes)
        for lv in range(1, self.num_levels):
            self.register_buffer(f"level_{lv}", getattr(plan, f"level_{lv}").clone(), persistent=False)
        self.rot_identity, self.out_identity = plan.rot_identity, plan.out_identity
        self.register_buffer("rot_index", plan.rot_index.clone(), persistent=False)
        self.register_buffer("out_index", plan.out_index.clone(), persistent=False)
        dtype = plan.shape_lin.dtype
        self.register_buffer("shape_const", plan.shape_const[:, None].clone(), persistent=False)  # (C, 1)
        self.register_buffer("shape_lin", plan.shape_lin.clone(), persistent=False)  # (B, C)
        # posedirs rows follow the plan's joint order (slots 1..M-1), so the pose feature is rm[1:].
        order = plan.order
        rows = torch.tensor([9 * (j - 1) + e for j in order[1:] for e in range(9)], dtype=torch.long)
        self.register_buffer("posedirs", plan.posedirs[rows].clone(), persistent=False)  # (9(M-1), 3P)
        weights = plan.weights  # (P, M), columns in slot order
        skin = torch.nonzero(weights.abs().sum(0) > 0).reshape(-1) if p else torch.zeros(0, dtype=torch.long)
        self.register_buffer("skin", skin, persistent=False)
        self.register_buffer("skin_weights", weights[:, skin].clone(), persistent=False)  # (P, S)
        self.register_buffer("cross", torch.tensor(_CROSS_T, dtype=dtype), persistent=False)
        self.register_buffer("eye9", torch.eye(3, dtype=dtype).reshape(9, 1), persistent=False)

    def levels(self, device: torch.device) -> list[Tensor]:
        return [getattr(self, f"level_{lv}").to(device) for lv in range(1, self.num_levels)]

    def forward(self, betas: Tensor, global_orient: Tensor, body_pose: Tensor,
                transl: Tensor | None) -> tuple[Tensor, Tensor]:
        """betas: (N|1, B); global_orient: (N, 3), body_pose: (N, 3(J-1)) axis-angle, radians;
        transl: (N, 3) metres or None.

        Returns joints (N, J, 3) and points (N, P, 3), metres (as ``_Plan.run``).
        """
        if transl is None:
            transl = global_orient.new_zeros(global_orient.shape[0], 3)
        return _FusedPoints.apply(self, betas, global_orient, body_pose, transl)


def _as(t: Tensor, ref: Tensor) -> Tensor:
    return t.to(dtype=ref.dtype, device=ref.device)


def _sum_of_products(pairs: list[tuple[Tensor, Tensor]], out: Tensor | None = None) -> Tensor:
    """``sum(a * b for a, b in pairs)`` (broadcast), accumulated in place: a small contraction (over 3 or 4
    components) without the (..., 3, 3, 4, N) product that ``(a.unsqueeze(i) * b.unsqueeze(j)).sum(k)``
    writes and reads back (a level's compose at 4,000 rows: 147 -> 90 us, one thread). ``out``: where to write
    it (the broadcast shape; a view is fine)."""
    (a, b), rest = pairs[0], pairs[1:]
    out = a * b if out is None else torch.mul(a, b, out=out)
    for a, b in rest:
        out.addcmul_(a, b)
    return out


def _compose(parent: Tensor, local: Tensor, out: Tensor) -> Tensor:
    """Rigid transforms ``[R | t]`` (L, 3, 4, N) composed per row into ``out``: ``[R_p R_l | R_p t_l + t_p]``."""
    _sum_of_products([(parent[:, :, k:k + 1], local[:, k:k + 1]) for k in range(3)], out)
    out[:, :, 3] += parent[:, :, 3]
    return out


class _FusedPoints(torch.autograd.Function):
    """Joints and points of ``FusedPlan``; internal layout (joints, components, rows)."""

    @staticmethod
    def forward(ctx: Any, fp: FusedPlan, betas: Tensor, global_orient: Tensor, body_pose: Tensor,
                transl: Tensor) -> tuple[Tensor, Tensor]:
        n, m, p = global_orient.shape[0], fp.num_joints, fp.num_points
        pose = torch.cat([global_orient, body_pose], 1).view(n, m, 3)
        ref, skin = pose, fp.skin.to(pose.device)
        r = pose if fp.rot_identity else pose.index_select(1, fp.rot_index.to(pose.device))
        r = r.permute(1, 2, 0).contiguous()  # (M, 3, N)
        rr = r + 1e-8  # smplx's angle |r + 1e-8|: finite gradients at zero rotation
        angle = torch.sqrt((rr * rr).sum(1, keepdim=True))  # (M, 1, N)
        d = r / angle
        sin, cos = torch.sin(angle), torch.cos(angle)
        one_c = 1 - cos
        k = torch.matmul(_as(fp.cross, pose), d)  # (M, 9, N) cross-product matrices
        outer = (d.unsqueeze(2) * d.unsqueeze(1)).view(m, 9, n)
        q = (d * d).sum(1, keepdim=True)
        eye9 = _as(fp.eye9, pose)
        rm = sin * k + one_c * (outer - q * eye9)  # (M, 9, N): R - I

        lin = torch.addmm(_as(fp.shape_const, pose), _as(fp.shape_lin, pose).t(), betas.t())  # (C, N|1)
        lin = lin.expand(-1, n)
        j_rest = lin[:3 * m].view(m, 3, n)
        j_rel = lin[3 * m:6 * m].view(m, 3, 1, n)
        local = pose.new_empty(m, 3, 4, n)  # (M, 3, 4, N) = [R | t], written in place (no concatenated copies)
        torch.add(rm.view(m, 3, 3, n), eye9.view(1, 3, 3, 1), out=local[:, :, :3])
        local[:, :, 3:] = j_rel
        parts = local.split(fp.level_sizes, 0)
        world_all = torch.empty_like(local)  # (M, 3, 4, N), level by level
        world = world_all.split(fp.level_sizes, 0)
        world[0].copy_(parts[0])
        parents = []
        slots = fp.levels(ref.device)
        for lv in range(1, fp.num_levels):
            prev = world[lv - 1]
            parent = prev.index_select(0, slots[lv - 1]) if prev.shape[0] > 1 else prev
            parents.append(parent)
            _compose(parent, parts[lv], world[lv])
        posed = world_all[:, :, 3]
        joints = posed if fp.out_identity else posed.index_select(0, fp.out_index.to(pose.device))

        s = skin.numel()
        if p:
            skin_w = _as(fp.skin_weights, pose)
            ws = world_all.index_select(0, skin)  # (S, 3, 4, N)
            jr = j_rest.index_select(0, skin)  # (S, 3, N)
            corr = _sum_of_products([(ws[:, :, k], jr[:, k:k + 1]) for k in range(3)])  # (S, 3, N): R_w j_rest
            t = (skin_w @ ws.reshape(s, 12 * n)).view(p, 3, 4, n)
            tc = (skin_w @ corr.reshape(s, 3 * n)).view(p, 3, n)
            v_posed = torch.addmm(lin[6 * m:], _as(fp.posedirs, pose).t(), rm[1:].reshape(9 * (m - 1), n))
            v_posed = v_posed.view(p, 3, n)
            points = _sum_of_products([(t[:, :, k], v_posed[:, k:k + 1]) for k in range(3)]) + t[:, :, 3] - tc
        else:
            ws = jr = t = v_posed = None
            points = pose.new_zeros(0, 3, n)
        ctx.fp, ctx.shapes = fp, (n, m, p, betas.shape[0])
        ctx.saved = (rr, angle, d, sin, one_c, k, outer, q, rm, local, parents, ws, jr, t, v_posed)
        joints_out = joints.permute(2, 0, 1) + transl.unsqueeze(1)
        points_out = points.permute(2, 0, 1) + transl.unsqueeze(1)
        return joints_out.contiguous(), points_out.contiguous()

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable: double backward raises
    def backward(ctx: Any, g_joints: Tensor, g_points: Tensor) -> tuple[Tensor | None, ...]:
        fp = ctx.fp
        n, m, p, nb = ctx.shapes
        rr, angle, d, sin, one_c, k, outer, q, rm, local, parents, ws, jr, t, v_posed = ctx.saved
        ref = rr
        g_transl = g_joints.sum(1) + g_points.sum(1)
        gj = g_joints.permute(1, 2, 0)  # (M_out, 3, N)
        g_world = torch.zeros(m, 3, 4, n, dtype=ref.dtype, device=ref.device)
        if fp.out_identity:
            g_world[:, :, 3] = gj
        else:
            g_world[:, :, 3].index_add_(0, fp.out_index.to(ref.device), gj)
        g_rm = torch.zeros(m, 9, n, dtype=ref.dtype, device=ref.device)
        g_lin = torch.zeros(3 * m + 3 * m + 3 * p, n, dtype=ref.dtype, device=ref.device)
        if p:
            skin = fp.skin.to(ref.device)
            s = skin.numel()
            skin_w = _as(fp.skin_weights, ref)
            gp = g_points.permute(1, 2, 0)  # (P, 3, N)
            g_t = gp.new_empty(p, 3, 4, n)
            torch.mul(gp.unsqueeze(2), v_posed.unsqueeze(1), out=g_t[:, :, :3])
            g_t[:, :, 3] = gp
            g_vp = _sum_of_products([(t[:, i, :3], gp[:, i:i + 1]) for i in range(3)])  # (P, 3, N)
            g_ws = (skin_w.t() @ g_t.reshape(p, 12 * n)).view(s, 3, 4, n)
            g_corr = -(skin_w.t() @ gp.reshape(p, 3 * n)).view(s, 3, n)
            g_ws[:, :, :3] += g_corr.unsqueeze(2) * jr.unsqueeze(1)
            g_world.index_add_(0, skin, g_ws)
            g_jr = _sum_of_products([(ws[:, i, :3], g_corr[:, i:i + 1]) for i in range(3)])  # (S, 3, N)
            g_lin[:3 * m].view(m, 3, n).index_add_(0, skin, g_jr)
            g_lin[6 * m:] = g_vp.reshape(3 * p, n)
            g_rm[1:] = (_as(fp.posedirs, ref) @ g_vp.reshape(3 * p, n)).view(m - 1, 9, n)

        # The chain, deepest level first: world_l = parent_l o local_l.
        sizes = fp.level_sizes
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        slots = fp.levels(ref.device)
        g_local = torch.empty(m, 3, 4, n, dtype=ref.dtype, device=ref.device)
        for lv in range(fp.num_levels - 1, 0, -1):
            a, b = starts[lv], starts[lv] + sizes[lv]
            gw = g_world[a:b]  # (L, 3, 4, N)
            parent = parents[lv - 1]
            rotated = [(parent[:, i, :3].unsqueeze(2), gw[:, i:i + 1]) for i in range(3)]
            _sum_of_products(rotated, g_local[a:b])  # R_p^T gw
            g_parent = torch.empty_like(gw)  # [gw [R_l | t_l]^T | gw_t]
            _sum_of_products([(gw[:, :, j:j + 1], local[a:b, :, j].unsqueeze(1)) for j in range(4)], g_parent[:, :, :3])
            g_parent[:, :, 3] = gw[:, :, 3]
            pa = starts[lv - 1]
            if sizes[lv - 1] > 1:
                g_world[pa:pa + sizes[lv - 1]].index_add_(0, slots[lv - 1], g_parent)
            else:
                g_world[pa:pa + 1] += g_parent.sum(0, keepdim=True)
        g_local[:1] = g_world[:1]
        g_rm += g_local[:, :, :3].reshape(m, 9, n)
        g_lin[3 * m:6 * m] = g_local[:, :, 3].reshape(3 * m, n)

        # Rodrigues: rm = sin K + (1 - cos)(d d^T - |d|^2 I), d = r / |r + 1e-8|.
        g_sin = (g_rm * k).sum(1, keepdim=True)
        g_onec = (g_rm * (outer - q * _as(fp.eye9, ref))).sum(1, keepdim=True)
        g_outer = (one_c * g_rm).view(m, 3, 3, n)
        g_q = -one_c * (g_rm[:, 0:1] + g_rm[:, 4:5] + g_rm[:, 8:9])
        g_d = torch.matmul(_as(fp.cross, ref).t(), sin * g_rm) \
            + ((g_outer + g_outer.transpose(1, 2)) * d.unsqueeze(1)).sum(2) + 2 * g_q * d
        g_angle = g_sin * torch.cos(angle) + g_onec * sin - (g_d * d).sum(1, keepdim=True) / angle
        g_r = g_d / angle + g_angle * rr / angle  # (M, 3, N)
        if fp.rot_identity:
            g_go, g_body = g_r[0].t().contiguous(), g_r[1:].permute(2, 0, 1).reshape(n, 3 * (m - 1))
        else:
            g_pose = torch.zeros(n, m, 3, dtype=ref.dtype, device=ref.device).index_add_(
                1, fp.rot_index.to(ref.device), g_r.permute(2, 0, 1))
            g_go, g_body = g_pose[:, 0].contiguous(), g_pose[:, 1:].reshape(n, 3 * (m - 1))
        g_betas = None
        if ctx.needs_input_grad[1]:
            g_betas = (_as(fp.shape_lin, ref) @ g_lin).t()  # (N, B)
            if nb == 1 and n != 1:
                g_betas = g_betas.sum(0, keepdim=True)
        return None, g_betas, g_go, g_body, g_transl
