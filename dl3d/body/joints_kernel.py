"""A fast SMPL kernel for fitting: posed joints plus a few surface vertices.

SMPLify-style fitting compares a body's 3D keypoints with detections; it needs the 24 posed SMPL
joints and the handful of surface vertices OpenPose/COCO use (nose, eyes, ears, toes, heels), never
the 6890-vertex mesh. ``SelectedPointsKernel`` computes exactly those, with the math of smplx's
``lbs`` (``smplx/lbs.py``, smplx 0.1.28):

- rest joints are linear in the shape coefficients, because the joint regressor is linear:
  ``J_rest = J_regressor @ (v_template + shapedirs @ betas) = J_template + J_shapedirs @ betas``,
  so both terms are precomputed once;
- shape and pose blend shapes, and skinning, run for the K selected vertices only;
- the kinematic chain is walked one tree level at a time (SMPL has 9 levels for 24 joints), each
  level one batched ``(3, 4) @ (4, 4)`` product; this measured faster than a per-joint loop on CPU
  for batches of 64 to 1024 (see ``bench/body_kernel.py``).

``forward`` runs that math as one autograd node with a hand-written backward (``fused_kernel.py``,
about 2x faster forward + backward on one CPU thread at 168-500 rows); ``keypoints`` and
``_Plan.run`` keep the plain autograd ops, the reference the fused path is tested against.

Outputs equal smplx's ``SMPL.forward`` (``joints[:, :24]`` and ``vertices[:, vertex_ids]``) to float
rounding, forward and backward. The kernel is a plain ``nn.Module`` built from tensors; the builder
``build_points_kernel`` takes SMPL-format arrays or a loaded ``smplx.SMPL`` and does the precomputing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dl3d.body.fused_kernel import FusedPlan
from dl3d.keypoints.formats import FORMATS

__all__ = [
    "BODY25_FROM_SMPL45",
    "COCO17_FROM_SMPL45",
    "SMPLX_EXTRA_VERTEX_IDS",
    "SMPLX_EXTRA_VERTEX_NAMES",
    "PointsOutput",
    "SelectedPointsKernel",
    "batch_rodrigues",
    "build_points_kernel",
    "chain_by_joint",
    "chain_by_level",
]

SMPLX_EXTRA_VERTEX_NAMES: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
"""Names of smplx's vertex joints 24..34 of its 45-joint SMPL output, in that order."""

SMPLX_EXTRA_VERTEX_IDS: tuple[int, ...] = (332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787)
"""SMPL vertex ids of ``SMPLX_EXTRA_VERTEX_NAMES`` (smplx ``vertex_ids['smplh']``): the default
``vertex_ids`` of ``build_points_kernel``. smplx's 10 fingertip joints (35..44) are left out."""

BODY25_FROM_SMPL45: tuple[int, ...] = FORMATS["body25"].smpl_index
"""OpenPose BODY_25 keypoint ``i`` ← smplx 45-joint index ``BODY25_FROM_SMPL45[i]`` (from
``dl3d.keypoints.formats``, where every format's correspondence and its caveats live)."""

COCO17_FROM_SMPL45: tuple[int, ...] = FORMATS["coco17"].smpl_index
"""COCO-17 keypoint ``i`` ← smplx 45-joint index ``COCO17_FROM_SMPL45[i]`` (from ``dl3d.keypoints.formats``)."""

_FORMATS: dict[str, tuple[int, ...]] = {"body25": BODY25_FROM_SMPL45, "coco17": COCO17_FROM_SMPL45}

# (3, 9) map from a unit axis (x, y, z) to its flattened cross-product matrix K (row-major).
_CROSS = torch.tensor([
    [0, 0, 0, 0, 0, -1, 0, 1, 0],
    [0, 0, 1, 0, 0, 0, -1, 0, 0],
    [0, -1, 0, 1, 0, 0, 0, 0, 0],
], dtype=torch.float64)
_EYE9 = torch.eye(3, dtype=torch.float64).reshape(9)


@dataclass
class PointsOutput:
    """Posed SMPL joints and selected surface vertices.

    joints: (N, 24, 3) float, model frame plus ``transl``, metres — smplx ``joints[:, :24]``.
    points: (N, K, 3) float, same frame, metres — smplx ``vertices[:, vertex_ids]``.
    """

    joints: Tensor
    points: Tensor


# ----------------------------------------------------------------------------- pure functions

# Why a Rodrigues of our own and not pytorch3d.transforms.axis_angle_to_matrix (which the rest of dl3d
# uses): not speed (the two cost the same here, forward + backward on 256 x 24 rotations), but
# agreement with smplx, whose full forward this kernel replaces and is tested against to 1e-10 in
# float64: smplx takes the angle as |r + 1e-8|, which moves R by up to ~5e-8 from pytorch3d's exact one.


def batch_rodrigues_minus_eye(rot_vecs: Tensor) -> Tensor:
    """``R - I`` for axis-angle vectors, with smplx's ``batch_rodrigues`` conventions.

    rot_vecs: (..., 3) float, axis-angle, radians.
    Returns (..., 9) float, row-major ``R - I``: SMPL's pose feature for non-root joints.
    Uses ``K @ K = d d^T - |d|^2 I`` instead of a matrix product; like smplx, the angle is
    ``|r + 1e-8|``, which keeps the gradient finite at zero rotation.
    """
    angle = torch.linalg.vector_norm(rot_vecs + 1e-8, dim=-1, keepdim=True)
    d = rot_vecs / angle
    cos, sin = torch.cos(angle), torch.sin(angle)
    cross = d @ _CROSS.to(dtype=d.dtype, device=d.device)  # (..., 9)
    outer = (d.unsqueeze(-1) * d.unsqueeze(-2)).flatten(-2)  # (..., 9)
    sq = (d * d).sum(-1, keepdim=True)
    return sin * cross + (1 - cos) * (outer - sq * _EYE9.to(dtype=d.dtype, device=d.device))


def batch_rodrigues(rot_vecs: Tensor) -> Tensor:
    """Rotation matrices from axis-angle vectors (equal to smplx's ``batch_rodrigues``).

    rot_vecs: (..., 3) float, axis-angle, radians.
    Returns (..., 3, 3) float rotation matrices.
    """
    eye = _EYE9.to(dtype=rot_vecs.dtype, device=rot_vecs.device)
    return (batch_rodrigues_minus_eye(rot_vecs) + eye).unflatten(-1, (3, 3))


def chain_by_level(local: Tensor, level_slots: Sequence[Tensor]) -> Tensor:
    """Compose local rigid transforms down a kinematic tree, one tree level at a time.

    local: (N, M, 4, 4) float, joint-to-parent transforms ``[[R_j, t_j], [0, 1]]``; joints sorted
        by depth, the root first, each level a contiguous block.
    level_slots: for levels 1, 2, ..., a (L_l,) long tensor: each joint's parent slot within the
        previous level's block.
    Returns (N, M, 3, 4) float world transforms (top three rows).
    """
    out = [local[:, :1, :3]]
    start = 1
    for slots in level_slots:
        size = slots.numel()
        parent = out[-1].index_select(1, slots) if out[-1].shape[1] > 1 else out[-1]
        out.append(parent @ local[:, start:start + size])
        start += size
    return torch.cat(out, dim=1)


def chain_by_joint(local: Tensor, parents: Sequence[int]) -> Tensor:
    """Compose local rigid transforms with one product per joint (smplx's loop).

    local: (N, M, 4, 4) float, joint-to-parent transforms; ``parents[j] < j`` for ``j >= 1``.
    parents: (M,) ints, ``parents[0]`` ignored (root).
    Returns (N, M, 3, 4) float world transforms (top three rows).
    """
    out = [local[:, 0, :3]]
    for j in range(1, len(parents)):
        out.append(out[parents[j]] @ local[:, j])
    return torch.stack(out, dim=1)


def _as_np(x: Any) -> np.ndarray:
    if hasattr(x, "toarray"):  # scipy.sparse J_regressor in official SMPL pickles
        x = x.toarray()
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _depths(parents: Sequence[int]) -> list[int]:
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    return depth


def _ancestor_closure(parents: Sequence[int], joints: set[int]) -> set[int]:
    closed = set()
    for j in joints:
        while j not in closed:
            closed.add(j)
            if j == 0:
                break
            j = parents[j]
    return closed


# ----------------------------------------------------------------------------- plans


class _Plan(nn.Module):
    """Buffers for one output selection: a subset of joints and of the kernel's K points.

    Joints computed (``order``) are the requested ones plus their ancestors plus every joint that
    skins a requested point, sorted by depth so each tree level is a contiguous block.
    """

    def __init__(self, model: Mapping[str, np.ndarray], parents: Sequence[int],
                 out_joints: Sequence[int], point_rows: Sequence[int], dtype: torch.dtype) -> None:
        super().__init__()
        weights = model["weights"][list(point_rows)]  # (P, J)
        needed = set(out_joints) | {int(j) for j in np.nonzero(weights.any(axis=0))[0]}
        depth = _depths(parents)
        order = sorted(_ancestor_closure(parents, needed), key=lambda j: (depth[j], j))
        slot = {j: i for i, j in enumerate(order)}
        level_of = [depth[j] for j in order]
        self.num_levels = max(level_of) + 1
        self.level_sizes = [level_of.count(lv) for lv in range(self.num_levels)]
        starts = np.cumsum([0] + self.level_sizes)
        for lv in range(1, self.num_levels):
            slots = [slot[parents[j]] - starts[lv - 1] for j in order[starts[lv]:starts[lv + 1]]]
            self.register_buffer(f"level_{lv}", torch.tensor(slots, dtype=torch.long), persistent=False)
        self.order = order
        self.parent_slots = [0] + [slot[parents[j]] for j in order[1:]]
        self.num_joints = len(order)
        self.num_points = len(point_rows)
        self.rot_identity = order == list(range(len(parents)))
        self.register_buffer("rot_index", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("out_index", torch.tensor([slot[j] for j in out_joints], dtype=torch.long),
                             persistent=False)
        self.out_identity = [slot[j] for j in out_joints] == list(range(len(order)))

        # Everything linear in betas, one addmm: [J_rest | J_rel | v_points], (B, 6M + 3P).
        j_rest, j_sd = model["J_template"][order], model["J_shapedirs"][order]  # (M,3), (M,3,B)
        par = [order[s] for s in self.parent_slots]
        j_rel = j_rest - model["J_template"][par]
        j_rel_sd = j_sd - model["J_shapedirs"][par]
        j_rel[0], j_rel_sd[0] = j_rest[0], j_sd[0]
        rows = list(point_rows)
        const = np.concatenate([j_rest.ravel(), j_rel.ravel(), model["v_template"][rows].ravel()])
        lin = np.concatenate([
            j_sd.reshape(-1, j_sd.shape[-1]), j_rel_sd.reshape(-1, j_sd.shape[-1]),
            model["shapedirs"][rows].reshape(-1, j_sd.shape[-1]),
        ]).T
        self.register_buffer("shape_const", torch.as_tensor(const, dtype=dtype))
        self.register_buffer("shape_lin", torch.as_tensor(np.ascontiguousarray(lin), dtype=dtype))
        posedirs = model["posedirs"][rows]  # (P, 3, 9(J-1))
        self.register_buffer("posedirs", torch.as_tensor(
            np.ascontiguousarray(posedirs.reshape(-1, posedirs.shape[-1]).T), dtype=dtype))
        self.register_buffer("weights", torch.as_tensor(weights[:, order], dtype=dtype))

    def levels(self, device: torch.device) -> list[Tensor]:
        return [getattr(self, f"level_{lv}").to(device) for lv in range(1, self.num_levels)]

    def buffers_as(self, ref: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """shape_const, shape_lin, posedirs, weights in ``ref``'s dtype and device."""
        return tuple(t.to(dtype=ref.dtype, device=ref.device)
                     for t in (self.shape_const, self.shape_lin, self.posedirs, self.weights))

    def run(self, betas: Tensor, pose: Tensor, transl: Tensor | None,
            chain: Literal["level", "joint"] = "level") -> tuple[Tensor, Tensor]:
        """betas: (N|1, B); pose: (N, J, 3) axis-angle; transl: (N, 3) or None.

        Returns joints (N, len(out_joints), 3) and points (N, P, 3), metres.
        """
        n, m, p = pose.shape[0], self.num_joints, self.num_points
        shape_const, shape_lin, posedirs, weights = self.buffers_as(pose)
        lin = torch.addmm(shape_const, betas, shape_lin)  # (N|1, 6M + 3P)
        j_rest = lin[:, :3 * m].view(-1, m, 3)
        j_rel = lin[:, 3 * m:6 * m].view(-1, m, 3, 1).expand(n, m, 3, 1)

        rot9 = batch_rodrigues_minus_eye(pose)  # (N, J, 9) = R - I
        rot_o = rot9 if self.rot_identity else rot9.index_select(1, self.rot_index.to(pose.device))
        rot_o = (rot_o + _EYE9.to(dtype=pose.dtype, device=pose.device)).view(n, m, 3, 3)
        bottom = pose.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(n, m, 1, 4)
        local = torch.cat([torch.cat([rot_o, j_rel], dim=3), bottom], dim=2)  # (N, M, 4, 4)
        if chain == "level":
            world = chain_by_level(local, self.levels(pose.device))
        else:
            world = chain_by_joint(local, self.parent_slots)
        posed = world[..., 3]  # (N, M, 3)

        joints = posed if self.out_identity else posed.index_select(1, self.out_index.to(pose.device))
        if p == 0:
            points = pose.new_zeros((n, 0, 3))
        else:
            pose_feature = rot9[:, 1:].reshape(n, 9 * (pose.shape[1] - 1))  # (N, 207)
            v_posed = torch.addmm(lin[:, 6 * m:], pose_feature, posedirs).view(n, p, 3)
            rot_w = world[..., :3]  # (N, M, 3, 3)
            rel_t = posed - (rot_w @ j_rest.unsqueeze(-1)).squeeze(-1)  # A's translation
            a = torch.cat([rot_w, rel_t.unsqueeze(-1)], dim=3).view(n, m, 12)
            t = (weights @ a).view(n, p, 3, 4)  # per-point blended transform
            points = (t[..., :3] @ v_posed.unsqueeze(-1)).squeeze(-1) + t[..., 3]
        if transl is not None:
            joints = joints + transl.unsqueeze(1)
            points = points + transl.unsqueeze(1)
        return joints, points


# ----------------------------------------------------------------------------- module


class SelectedPointsKernel(nn.Module):
    """Posed SMPL joints and K selected surface vertices, equal to smplx's ``SMPL.forward``.

    Build it with ``build_points_kernel``; the constructor takes ready arrays (no file I/O).
    Buffers are stored in ``dtype``; ``forward`` follows its inputs' dtype and device (it casts the
    buffers when they differ, so build with ``torch.float64`` for full float64 precision).

    model: arrays or tensors (read as float64), already derived by the builder —
        ``v_template`` (V, 3), ``shapedirs`` (V, 3, B), ``posedirs`` (V, 3, 9(J-1)),
        ``weights`` (V, J), ``J_template`` (J, 3), ``J_shapedirs`` (J, 3, B); only the rows of
        ``vertex_ids`` are kept.
    parents: (J,) ints, ``parents[j] < j`` for ``j >= 1``.
    vertex_ids: (K,) vertex indices whose posed positions ``points`` returns.
    """

    def __init__(self, model: Mapping[str, np.ndarray | Tensor], parents: Sequence[int],
                 vertex_ids: Sequence[int], dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        model = {k: _as_np(v) for k, v in model.items()}
        self.parents = [int(p) for p in parents]
        self.vertex_ids = [int(v) for v in vertex_ids]
        self.num_joints = len(self.parents)
        self.num_betas = int(model["shapedirs"].shape[-1])
        rows = list(range(len(self.vertex_ids)))
        self.full = _Plan(model, self.parents, list(range(self.num_joints)), rows, dtype)
        self.fused = FusedPlan(self.full)  # what forward runs; self.full.run is its autograd reference
        self.formats = nn.ModuleDict()
        if self.num_joints == 24 and set(SMPLX_EXTRA_VERTEX_IDS) <= set(self.vertex_ids):
            self._smplx_rows = [self.vertex_ids.index(v) for v in SMPLX_EXTRA_VERTEX_IDS]
            for fmt, table in _FORMATS.items():
                joints = sorted({i for i in table if i < 24})
                extras = sorted({i - 24 for i in table if i >= 24})
                plan = _Plan(model, self.parents, joints, [self._smplx_rows[e] for e in extras], dtype)
                plan.register_buffer("gather", torch.tensor(
                    [joints.index(i) if i < 24 else len(joints) + extras.index(i - 24) for i in table]),
                    persistent=False)
                self.formats[fmt] = plan
        else:
            self._smplx_rows = None

    def _check(self, betas: Tensor, global_orient: Tensor, body_pose: Tensor,
               transl: Tensor | None) -> int:
        """Validate the public inputs; return the batch size N."""
        if global_orient.dim() != 2 or global_orient.shape[1] != 3:
            raise ValueError(f"expected global_orient of shape (N, 3), got {tuple(global_orient.shape)}")
        n, nb = global_orient.shape[0], self.num_betas
        for name, t, k in (("body_pose", body_pose, 3 * (self.num_joints - 1)), ("transl", transl, 3)):
            if t is not None and tuple(t.shape) != (n, k):
                raise ValueError(f"expected {name} of shape (N, {k}) with N={n}, got {tuple(t.shape)}")
        if betas.dim() != 2 or betas.shape[1] != nb or betas.shape[0] not in (n, 1):
            raise ValueError(f"expected betas of shape (N, {nb}) or (1, {nb}) with N={n}, got {tuple(betas.shape)}")
        tensors = [betas, global_orient, body_pose] + ([transl] if transl is not None else [])
        if not all(t.is_floating_point() and t.dtype == betas.dtype for t in tensors):
            raise ValueError(f"expected betas, global_orient, body_pose, transl of one float dtype, "
                             f"got {[t.dtype for t in tensors]}")
        return n

    def forward(self, betas: Tensor, global_orient: Tensor, body_pose: Tensor,
                transl: Tensor | None = None) -> PointsOutput:
        """Posed joints and selected vertices.

        betas: (N, B) or (1, B) float, shape coefficients (a (1, B) row is shared by the batch).
        global_orient: (N, 3) float, root rotation, axis-angle, radians.
        body_pose: (N, 69) float, 23 body joint rotations, axis-angle, radians (3 * (J - 1)).
        transl: (N, 3) float, metres, or None.
        Returns ``PointsOutput`` with joints (N, 24, 3) and points (N, K, 3), metres.
        """
        self._check(betas, global_orient, body_pose, transl)
        joints, points = self.fused(betas, global_orient, body_pose, transl)
        return PointsOutput(joints=joints, points=points)

    def rest_root(self, betas: Tensor) -> Tensor:
        """(T, B) float shape coefficients -> (T, 3) float: the root joint at zero pose without
        translation, metres (``forward(betas, 0, 0).joints[:, 0]``, which is linear in betas)."""
        const, lin = self.full.shape_const[:3], self.full.shape_lin[:, :3]  # slot 0 is the root
        return torch.addmm(const.to(betas), betas, lin.to(betas))

    def smplx_layout(self, out: PointsOutput) -> Tensor:
        """smplx's 45-joint SMPL layout, keypoint-relevant prefix: ``joints[:, :35]``.

        out: ``forward``'s output; the kernel must hold the 11 ``SMPLX_EXTRA_VERTEX_IDS``.
        Returns (N, 35, 3) float, metres: 24 SMPL joints, then nose, reye, leye, rear, lear,
        LBigToe, LSmallToe, LHeel, RBigToe, RSmallToe, RHeel.
        """
        if self._smplx_rows is None:
            raise ValueError(f"expected a 24-joint kernel holding vertex_ids {list(SMPLX_EXTRA_VERTEX_IDS)}, "
                             f"got {self.num_joints} joints and vertex_ids {self.vertex_ids}")
        rows = torch.tensor(self._smplx_rows, device=out.points.device)
        return torch.cat([out.joints, out.points.index_select(1, rows)], dim=1)

    def smplx_layout_index(self) -> list[int]:
        """For each of ``smplx_layout``'s 35 points, its index in ``cat([out.joints, out.points], 1)``."""
        if self._smplx_rows is None:
            raise ValueError(f"expected a 24-joint kernel holding vertex_ids {list(SMPLX_EXTRA_VERTEX_IDS)}, "
                             f"got {self.num_joints} joints and vertex_ids {self.vertex_ids}")
        return list(range(24)) + [24 + r for r in self._smplx_rows]

    def keypoints(self, fmt: Literal["body25", "coco17"], betas: Tensor, global_orient: Tensor,
                  body_pose: Tensor, transl: Tensor | None = None) -> Tensor:
        """3D keypoints in OpenPose BODY_25 or COCO-17 order, computing only what they need.

        Inputs as in ``forward``. Returns (N, 25, 3) for ``"body25"`` (``BODY25_FROM_SMPL45``) or
        (N, 17, 3) for ``"coco17"`` (``COCO17_FROM_SMPL45``), float, metres.
        """
        if fmt not in _FORMATS:
            raise ValueError(f"expected fmt in {sorted(_FORMATS)}, got {fmt!r}")
        if fmt not in self.formats:
            raise ValueError(f"expected a 24-joint kernel holding vertex_ids {list(SMPLX_EXTRA_VERTEX_IDS)} "
                             f"for {fmt!r}, got {self.num_joints} joints and vertex_ids {self.vertex_ids}")
        n = self._check(betas, global_orient, body_pose, transl)
        plan = self.formats[fmt]
        pose = torch.cat([global_orient, body_pose], dim=1).view(n, self.num_joints, 3)
        joints, points = plan.run(betas, pose, transl)
        return torch.cat([joints, points], dim=1).index_select(1, plan.gather.to(pose.device))


# ----------------------------------------------------------------------------- builder


def _arrays_from_source(source: Any) -> tuple[dict[str, np.ndarray], list[int]]:
    if isinstance(source, nn.Module):  # a loaded smplx.SMPL: use its buffers as smplx does
        v = _as_np(source.v_template)
        num_pose = source.posedirs.shape[0]
        arrays = {
            "v_template": v,
            "shapedirs": _as_np(source.shapedirs),
            "posedirs": _as_np(source.posedirs).T.reshape(v.shape[0], 3, num_pose),
            "J_regressor": _as_np(source.J_regressor),
            "weights": _as_np(source.lbs_weights),
        }
        return arrays, [int(p) for p in source.parents.tolist()]
    missing = [k for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
               if k not in source]
    if missing:
        raise ValueError(f"expected SMPL arrays with keys {missing}, got keys {sorted(source)}")
    arrays = {k: _as_np(source[k]) for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")}
    kintree = np.asarray(source["kintree_table"]).astype(np.int64)
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise ValueError(f"expected kintree_table of shape (2, J), got {kintree.shape}")
    return arrays, [int(p) for p in kintree[0]]


def build_points_kernel(source: Mapping[str, Any] | nn.Module,
                        vertex_ids: Sequence[int] = SMPLX_EXTRA_VERTEX_IDS, *,
                        num_betas: int | None = None,
                        dtype: torch.dtype = torch.float32) -> SelectedPointsKernel:
    """Precompute a ``SelectedPointsKernel`` from SMPL-format arrays or a loaded ``smplx.SMPL``.

    source: a mapping with ``v_template`` (V, 3), ``shapedirs`` (V, 3, B), ``posedirs``
        (V, 3, 9(J-1)), ``J_regressor`` (J, V) (dense or scipy.sparse), ``weights`` (V, J),
        ``kintree_table`` (2, J) — an SMPL ``.pkl``'s dict — or an ``smplx.SMPL`` module (its
        buffers, already truncated to its ``num_betas``).
    vertex_ids: (K,) vertex indices to pose; default the 11 smplx keypoint vertices.
    num_betas: shape coefficients kept; default ``min(10, B)`` like smplx (all of a module's).
    dtype: storage dtype of the precomputed buffers (float32 or float64).
    """
    arrays, parents = _arrays_from_source(source)
    v = arrays["v_template"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"expected v_template of shape (V, 3), got {v.shape}")
    nv, nj = v.shape[0], len(parents)
    sd = arrays["shapedirs"]
    if sd.ndim != 3 or sd.shape[:2] != (nv, 3):
        raise ValueError(f"expected shapedirs of shape ({nv}, 3, B), got {sd.shape}")
    checks = {"posedirs": (arrays["posedirs"], (nv, 3, 9 * (nj - 1))),
              "J_regressor": (arrays["J_regressor"], (nj, nv)), "weights": (arrays["weights"], (nv, nj))}
    for name, (arr, shape) in checks.items():
        if arr.shape != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {arr.shape}")
    if any(not 0 <= parents[j] < j for j in range(1, nj)):
        raise ValueError(f"expected kintree_table parents with parents[j] < j, got {parents}")
    ids = [int(i) for i in vertex_ids]
    if any(not 0 <= i < nv for i in ids):
        raise ValueError(f"expected vertex_ids in [0, {nv}), got {ids}")
    if num_betas is None:
        num_betas = sd.shape[2] if isinstance(source, nn.Module) else min(10, sd.shape[2])
    if not 0 < num_betas <= sd.shape[2]:
        raise ValueError(f"expected num_betas in [1, {sd.shape[2]}], got {num_betas}")
    sd = sd[:, :, :num_betas]
    jreg = arrays["J_regressor"]
    model = {
        "v_template": v[ids], "shapedirs": sd[ids], "posedirs": arrays["posedirs"][ids],
        "weights": arrays["weights"][ids],
        "J_template": jreg @ v,
        "J_shapedirs": np.einsum("jv,vcb->jcb", jreg, sd),
    }
    return SelectedPointsKernel(model, parents, ids, dtype=dtype)
