"""SMPLify's interpenetration term: the body as spheres along bones, non-adjacent parts must not overlap.

SMPLify (Bogo et al. 2016, ``lib/capsule_body.py`` / ``lib/sphere_collisions.py``) approximates the
body by 20 shape-dependent capsules, each replaced by spheres on its axis, and penalises pairs of
spheres from parts that should never touch (torso vs forearms and hands, calf vs calf, foot vs the
other leg, hand vs hand) with a Gaussian of their centre distance, differentiated w.r.t. pose only
"to avoid bias towards thin body shapes". dl3d keeps the parts, the colliding pairs and the
pose-only gradient, and changes two things:

- radii are a fixed fraction of a bone length of the current body (bone lengths do not change
  with pose, so they are read off the posed joints and detached); ``sphere_body(arrays)`` derives
  the fractions from a model's rest-pose template (median distance of each part's vertices to
  its bone), ``sphere_body()`` uses fractions chosen by hand for human proportions;
- the penalty is the squared overlap ``relu(r_i + r_j - |c_i - c_j|)²`` (metres²): exactly zero
  for spheres that do not touch, smooth where they do (SMPLify's Gaussian is never exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["PARTS", "COLLIDING_PARTS", "SphereBody", "sphere_body", "sphere_overlap"]


@dataclass(frozen=True)
class Part:
    """A body part: ``count`` spheres evenly spaced on the bone from joint ``a`` to joint ``b``.

    Radius = ``ratio`` x the length between joints ``ref`` (a bone or the hip width).
    ``skin`` is the joint whose skinning weights own the part's vertices (template radii).
    """

    name: str
    a: int
    b: int
    count: int
    ratio: float
    ref: tuple[int, int]
    skin: int


_HIPS = (1, 2)
PARTS: tuple[Part, ...] = (
    Part("pelvis", 0, 3, 1, 0.75, _HIPS, 0),
    Part("spine1", 3, 6, 1, 0.75, _HIPS, 3),
    Part("spine2", 6, 9, 1, 0.8, _HIPS, 6),
    Part("chest", 9, 12, 2, 0.8, _HIPS, 9),
    Part("l_thigh", 1, 4, 3, 0.2, (1, 4), 1),
    Part("r_thigh", 2, 5, 3, 0.2, (2, 5), 2),
    Part("l_calf", 4, 7, 3, 0.13, (4, 7), 4),
    Part("r_calf", 5, 8, 3, 0.13, (5, 8), 5),
    Part("l_foot", 7, 10, 2, 0.3, (7, 10), 7),
    Part("r_foot", 8, 11, 2, 0.3, (8, 11), 8),
    Part("l_upper_arm", 16, 18, 2, 0.18, (16, 18), 16),
    Part("r_upper_arm", 17, 19, 2, 0.18, (17, 19), 17),
    Part("l_forearm", 18, 20, 3, 0.15, (18, 20), 18),
    Part("r_forearm", 19, 21, 3, 0.15, (19, 21), 19),
    Part("l_hand", 20, 22, 1, 0.45, (20, 22), 20),
    Part("r_hand", 21, 23, 1, 0.45, (21, 23), 21),
)
"""dl3d's sphere body on SMPL's 24 joints (SMPLify's 20 capsules, neck and head left out)."""

_TORSO = ("pelvis", "spine1", "spine2", "chest")
COLLIDING_PARTS: tuple[tuple[str, str], ...] = tuple(
    [(t, limb) for t in _TORSO for limb in ("l_forearm", "r_forearm", "l_hand", "r_hand")]
    + [("l_calf", "r_calf"), ("l_foot", "r_calf"), ("r_foot", "l_calf"), ("l_foot", "r_foot"),
       ("l_hand", "r_hand"), ("l_forearm", "r_forearm"), ("l_forearm", "r_hand"), ("r_forearm", "l_hand")]
)
"""Part pairs that must not overlap (SMPLify's ``collisions`` list, on dl3d's parts)."""


def sphere_overlap(centres: Tensor, radii: Tensor, pairs: Tensor) -> Tensor:
    """Squared overlap of sphere pairs, summed per row.

    centres: (N, S, 3) float, metres; radii: (N, S) float, metres; pairs: (P, 2) long sphere indices.
    Returns (N,) float, metres²: ``sum_p relu(r_i + r_j - |c_i - c_j|)²`` — 0 when no pair touches.
    """
    diff = centres[:, pairs[:, 0]] - centres[:, pairs[:, 1]]
    dist = torch.sqrt((diff * diff).sum(-1) + 1e-12)
    overlap = torch.relu(radii[:, pairs[:, 0]] + radii[:, pairs[:, 1]] - dist)
    return (overlap * overlap).sum(-1)


def _blend(mix: Tensor, joints: Tensor) -> Tensor:
    """(K, 24) mix, (N, 24, 3) joints -> (N, K, 3): one matrix product (a broadcast batched matmul
    is much slower to differentiate on CPU)."""
    n = joints.shape[0]
    return (mix @ joints.transpose(0, 1).reshape(24, n * 3)).reshape(-1, n, 3).transpose(0, 1)


class SphereBody(nn.Module):
    """Spheres along the bones of SMPL's skeleton and the sphere pairs that must not overlap.

    Built by ``sphere_body``. ``forward(joints)`` returns the interpenetration penalty per row.
    Buffers: ``centre_map`` (S, 24) sphere centres as blends of joints, ``length_map`` (S, 24)
    the joint difference whose length sets each radius, ``ratio`` (S,) radius / that length,
    ``pairs`` (P, 2) colliding sphere pairs, ``pair_map`` (P, 24) their centre differences,
    ``owner`` (S,) part index of each sphere. ``scale`` multiplies every radius.
    """

    def __init__(self, parts: tuple[Part, ...], ratios: Mapping[str, float],
                 colliding: tuple[tuple[str, str], ...], scale: float = 1.0) -> None:
        super().__init__()
        seg, t, ref, ratio, owner = [], [], [], [], []
        for p_i, part in enumerate(parts):
            for k in range(part.count):
                seg.append((part.a, part.b))
                t.append((k + 0.5) / part.count if part.count > 1 else 0.5)
                ref.append(part.ref)
                ratio.append(ratios[part.name])
                owner.append(p_i)
        index = {p.name: i for i, p in enumerate(parts)}
        owner_arr = np.asarray(owner)
        pairs = [(i, j) for a, b in colliding
                 for i in np.flatnonzero(owner_arr == index[a]) for j in np.flatnonzero(owner_arr == index[b])]
        self.part_names = [p.name for p in parts]
        self.scale = float(scale)
        centre = np.zeros((len(seg), 24))
        length = np.zeros((len(seg), 24))
        for i, ((a, b), ti, (ra, rb)) in enumerate(zip(seg, t, ref)):
            centre[i, a] += 1 - ti
            centre[i, b] += ti
            length[i, ra] += 1
            length[i, rb] -= 1
        pairs_arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.register_buffer("pairs", torch.as_tensor(pairs_arr), persistent=False)
        self.register_buffer("centre_map", torch.as_tensor(centre, dtype=torch.float32), persistent=False)
        self.register_buffer("length_map", torch.as_tensor(length, dtype=torch.float32), persistent=False)
        self.register_buffer("pair_map", torch.as_tensor(centre[pairs_arr[:, 0]] - centre[pairs_arr[:, 1]],
                                                         dtype=torch.float32), persistent=False)
        self.register_buffer("ratio", torch.tensor(ratio, dtype=torch.float32), persistent=False)
        self.register_buffer("owner", torch.tensor(owner, dtype=torch.long), persistent=False)

    def _check(self, joints: Tensor) -> None:
        if joints.dim() != 3 or joints.shape[1:] != (24, 3):
            raise ValueError(f"expected joints of shape (N, 24, 3), got {tuple(joints.shape)}")

    def radii(self, joints: Tensor) -> Tensor:
        """(N, 24, 3) joints -> (N, S) sphere radii, metres, detached (pose-only gradient, as SMPLify)."""
        with torch.no_grad():
            length = torch.linalg.vector_norm(_blend(self.length_map.to(joints), joints.detach()), dim=-1)
            return self.scale * self.ratio.to(joints) * length

    def spheres(self, joints: Tensor) -> tuple[Tensor, Tensor]:
        """joints: (N, 24, 3) float, metres, any frame. Returns centres (N, S, 3) and radii (N, S), metres."""
        self._check(joints)
        return _blend(self.centre_map.to(joints), joints), self.radii(joints)

    def pair_reach(self, joints: Tensor) -> Tensor:
        """(N, 24, 3) joints -> (N, P) sum of the two radii of each colliding pair, metres, detached.

        Radii depend on bone lengths only, not on pose: a fit can compute this once per stage.
        """
        self._check(joints)
        radii = self.radii(joints)
        pairs = self.pairs.to(joints.device)
        return radii[:, pairs[:, 0]] + radii[:, pairs[:, 1]]

    def forward(self, joints: Tensor, reach: Tensor | None = None) -> Tensor:
        """Interpenetration penalty.

        joints: (N, 24, 3) float, metres. reach: (N, P) from ``pair_reach`` (default: computed
        from ``joints``). Returns (N,) float, metres²: ``sum_p relu(reach_p - |c_i - c_j|)²``, the
        value of ``sphere_overlap(*self.spheres(joints), self.pairs)``, computed with one matrix
        product from joints to pair differences (cheap to differentiate).
        """
        if reach is None:
            reach = self.pair_reach(joints)
        self._check(joints)
        diff = _blend(self.pair_map.to(joints), joints)  # (N, P, 3)
        dist = torch.sqrt((diff * diff).sum(-1) + 1e-12)
        overlap = torch.relu(reach - dist)
        return (overlap * overlap).sum(-1)


def _template_ratios(arrays: Mapping[str, Any], parts: tuple[Part, ...]) -> dict[str, float]:
    """Per part: median distance of its vertices to its bone, over the reference length."""
    v = np.asarray(arrays["v_template"], dtype=np.float64)
    w = np.asarray(arrays["weights"], dtype=np.float64)
    jreg = arrays["J_regressor"]
    jreg = np.asarray(jreg.toarray() if hasattr(jreg, "toarray") else jreg, dtype=np.float64)
    joints = jreg @ v
    owner = w.argmax(1)
    out = {}
    for part in parts:
        a, b = joints[part.a], joints[part.b]
        pts = v[owner == part.skin]
        ref = np.linalg.norm(joints[part.ref[0]] - joints[part.ref[1]])
        if len(pts) < 4 or ref <= 0:
            out[part.name] = part.ratio
            continue
        axis = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        rel = pts - a
        radial = rel - (rel @ axis)[:, None] * axis
        out[part.name] = float(np.median(np.linalg.norm(radial, axis=1)) / ref)
    return out


def sphere_body(arrays: Mapping[str, Any] | None = None, scale: float = 1.0) -> SphereBody:
    """Build the sphere body: radii from a model's rest template when ``arrays`` is given.

    arrays: SMPL-format arrays (``v_template`` (V, 3), ``weights`` (V, 24), ``J_regressor``
        (24, V)) or None for the hand-chosen radius fractions in ``PARTS``.
    scale: multiplies every radius (below 1 tolerates touching; SMPLify's Gaussian is soft too).
    """
    ratios = _template_ratios(arrays, PARTS) if arrays is not None else {p.name: p.ratio for p in PARTS}
    return SphereBody(PARTS, ratios, COLLIDING_PARTS, scale=scale)
