"""The procedural body model's skeleton and tube meshes (part of ``dl3d.body.procedural``): NOT SMPL.

``procedural_joints`` gives SMPL's 24 joints in a T-pose at human proportions (metres, y up, facing
+z, body-left at +x); ``tube_specs`` describes one closed tube per body part (keys on the joints,
elliptic or superelliptic cross-sections, rounded caps) and ``build_tube`` sweeps one into vertices
and outward-facing triangles. ``dl3d.body.procedural`` assembles them into a model file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from dl3d.body.model_file import SMPL_NUM_JOINTS

__all__ = [
    "HEAD_CENTRE",
    "LEFT_TO_RIGHT",
    "Tube",
    "TubeSpec",
    "build_tube",
    "mirror_tube_spec",
    "procedural_joints",
    "tube_specs",
]

# ---- skeleton --------------------------------------------------------------------------------------

LEFT_TO_RIGHT: Final = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}

# Body-left and central joints of the T-pose, metres; the right side mirrors x.
_JOINTS_LEFT_AND_CENTRE: Final[dict[int, tuple[float, float, float]]] = {
    0: (0.0, 0.0, 0.0),  # pelvis
    1: (0.085, -0.08, 0.0),  # left_hip
    3: (0.0, 0.105, -0.01),  # spine1
    4: (0.10, -0.47, 0.005),  # left_knee
    6: (0.0, 0.235, 0.0),  # spine2
    7: (0.095, -0.87, -0.035),  # left_ankle
    9: (0.0, 0.29, 0.005),  # spine3
    10: (0.115, -0.935, 0.085),  # left_foot
    12: (0.0, 0.49, -0.015),  # neck
    13: (0.075, 0.41, -0.01),  # left_collar
    15: (0.0, 0.585, 0.01),  # head
    16: (0.175, 0.425, -0.015),  # left_shoulder
    18: (0.43, 0.42, -0.03),  # left_elbow
    20: (0.68, 0.42, -0.025),  # left_wrist
    22: (0.765, 0.415, -0.03),  # left_hand
}


def procedural_joints() -> np.ndarray:
    """The procedural model's rest joints.

    Returns:
        (24, 3) float64, T-pose, metres, y up, facing +z, body-left at +x, in SMPL's joint order.
    """
    joints = np.zeros((SMPL_NUM_JOINTS, 3))
    for j, pos in _JOINTS_LEFT_AND_CENTRE.items():
        joints[j] = pos
    for left, right in LEFT_TO_RIGHT.items():
        joints[right] = joints[left] * (-1.0, 1.0, 1.0)
    return joints


# ---- tubes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TubeSpec:
    """A closed tube swept along key points; one ring of vertices is centred on each key."""

    name: str
    keys: tuple[tuple[float, float, float], ...]
    """Centre line, metres; body-left side for mirrored parts."""
    radii: tuple[tuple[float, float], ...]
    """Cross-section half-axes at each key: along ``up`` (projected) and along ``tangent x up``."""
    up: tuple[float, float, float]
    """Direction of the first cross-section axis (made perpendicular to the centre line)."""
    segments: int
    """Vertices per ring (even, so every ring is point-symmetric about its centre)."""
    between: tuple[int, ...]
    """Extra rings between consecutive keys."""
    cap_rings: int
    cap_len: tuple[float, float]
    """How far the rounded caps reach beyond the first and the last key, metres."""
    owners: tuple[int, ...]
    """Joint that moves each key-to-key stretch (left-side ids for mirrored parts)."""
    before: int
    """Joint that moves the start cap region."""
    after: int
    """Joint that moves the end cap region."""
    blend: float = 0.04
    """Half-width of the skinning-weight blend across each change of owner, metres."""
    squareness: float = 1.0
    """Superellipse exponent of the cross-section: 1 ellipse, smaller is boxier."""
    girth: float = 0.12
    """Radial growth per unit of the girth shape coefficient."""


def _head_keys() -> tuple[tuple[tuple[float, float, float], ...], tuple[tuple[float, float], ...]]:
    """Key centres and radii of the head ellipsoid as a tube along y (poles are the cap apexes)."""
    centre, half = np.array(HEAD_CENTRE), np.array(_HEAD_RADII)
    eta = np.cos(np.linspace(np.pi, 0.0, _HEAD_RINGS + 2)[1:-1])  # -1..1 exclusive, denser at poles
    keys = tuple((centre[0], centre[1] + half[1] * e, centre[2]) for e in eta)
    radii = tuple((half[2] * np.sqrt(1 - e * e), half[0] * np.sqrt(1 - e * e)) for e in eta)
    return keys, radii


HEAD_CENTRE: Final = (0.0, 0.67, 0.025)
_HEAD_RADII: Final = (0.075, 0.115, 0.095)  # half-width x, half-height y, half-depth z
_HEAD_RINGS: Final = 26
_HEAD_SEGMENTS: Final = 36

_Z: Final = (0.0, 0.0, 1.0)


def tube_specs() -> list[TubeSpec]:
    """Every part of the body; ``mirror_tube_spec`` makes the right side of the ones named ``left_*``."""
    j = procedural_joints()

    def key(i: int) -> tuple[float, float, float]:
        return tuple(float(c) for c in j[i])  # type: ignore[return-value]

    head_keys, head_radii = _head_keys()
    n_head = len(head_keys)
    return [
        TubeSpec(
            "torso",
            keys=((0.0, -0.14, 0.0), key(0), key(3), key(6), key(9), (0.0, 0.44, -0.01)),
            radii=((0.095, 0.15), (0.105, 0.165), (0.095, 0.145), (0.105, 0.155), (0.11, 0.16),
                   (0.085, 0.165)),
            up=_Z, segments=40, between=(4, 3, 4, 1, 4), cap_rings=3, cap_len=(0.05, 0.045),
            owners=(0, 0, 3, 6, 9), before=0, after=9, squareness=0.85, blend=0.03,
        ),
        TubeSpec(
            "neck", keys=(key(12), key(15)), radii=((0.055, 0.05), (0.05, 0.045)),
            up=_Z, segments=20, between=(3,), cap_rings=2, cap_len=(0.03, 0.03),
            owners=(12,), before=9, after=15, girth=0.08,
        ),
        TubeSpec(
            "head", keys=head_keys, radii=head_radii, up=_Z, segments=_HEAD_SEGMENTS,
            between=(0,) * (n_head - 1), cap_rings=0,
            cap_len=(_HEAD_RADII[1] - (HEAD_CENTRE[1] - head_keys[0][1]),
                     _HEAD_RADII[1] - (head_keys[-1][1] - HEAD_CENTRE[1])),
            owners=(15,) * (n_head - 1), before=15, after=15, girth=0.03,
        ),
        TubeSpec(
            "left_collar", keys=(key(13), key(16)), radii=((0.05, 0.045), (0.05, 0.05)),
            up=_Z, segments=16, between=(3,), cap_rings=2, cap_len=(0.04, 0.045),
            owners=(13,), before=9, after=16, girth=0.1,
        ),
        TubeSpec(
            "left_upper_arm", keys=(key(16), (0.30, 0.4225, -0.022), key(18)),
            radii=((0.05, 0.048), (0.045, 0.043), (0.038, 0.036)),
            up=_Z, segments=20, between=(5, 5), cap_rings=3, cap_len=(0.045, 0.035),
            owners=(16, 16), before=13, after=18,
        ),
        TubeSpec(
            "left_forearm", keys=(key(18), (0.52, 0.42, -0.028), key(20)),
            radii=((0.038, 0.036), (0.04, 0.035), (0.027, 0.02)),
            up=_Z, segments=16, between=(3, 7), cap_rings=2, cap_len=(0.03, 0.02),
            owners=(18, 18), before=16, after=20,
        ),
        TubeSpec(
            "left_hand", keys=(key(20), key(22), (0.845, 0.415, -0.03)),
            radii=((0.03, 0.018), (0.045, 0.016), (0.04, 0.01)),
            up=_Z, segments=16, between=(3, 4), cap_rings=3, cap_len=(0.015, 0.025),
            owners=(20, 22), before=18, after=22, squareness=0.6, girth=0.05, blend=0.02,
        ),
        TubeSpec(
            "left_thumb", keys=((0.70, 0.415, -0.005), (0.775, 0.41, 0.045)),
            radii=((0.013, 0.012), (0.009, 0.008)),
            up=(0.0, 1.0, 0.0), segments=8, between=(3,), cap_rings=1, cap_len=(0.01, 0.012),
            owners=(20,), before=20, after=20, girth=0.05,
        ),
        TubeSpec(
            "left_thigh", keys=(key(1), (0.092, -0.25, 0.01), key(4)),
            radii=((0.085, 0.08), (0.075, 0.07), (0.055, 0.05)),
            up=_Z, segments=20, between=(6, 8), cap_rings=3, cap_len=(0.06, 0.04),
            owners=(1, 1), before=0, after=4, blend=0.05,
        ),
        TubeSpec(
            "left_shin", keys=(key(4), (0.10, -0.6, -0.01), key(7)),
            radii=((0.05, 0.048), (0.055, 0.045), (0.035, 0.032)),
            up=_Z, segments=20, between=(4, 8), cap_rings=2, cap_len=(0.04, 0.03),
            owners=(4, 4), before=1, after=7, blend=0.05,
        ),
        TubeSpec(
            "left_foot", keys=((0.095, -0.935, -0.055), key(10), (0.125, -0.955, 0.16)),
            radii=((0.035, 0.035), (0.048, 0.025), (0.042, 0.014)),
            up=(1.0, 0.0, 0.0), segments=20, between=(6, 3), cap_rings=3, cap_len=(0.028, 0.022),
            owners=(7, 10), before=7, after=10, squareness=0.6, girth=0.05, blend=0.03,
        ),
    ]


def mirror_tube_spec(spec: TubeSpec) -> TubeSpec:
    """The right-side twin of a ``left_*`` part: x negated, joints swapped to their right twins."""

    def side(joint: int) -> int:
        return LEFT_TO_RIGHT.get(joint, joint)

    return TubeSpec(
        name="right_" + spec.name.removeprefix("left_"),
        keys=tuple((-x, y, z) for x, y, z in spec.keys),
        radii=spec.radii,
        up=(-spec.up[0], spec.up[1], spec.up[2]),
        segments=spec.segments,
        between=spec.between,
        cap_rings=spec.cap_rings,
        cap_len=spec.cap_len,
        owners=tuple(side(o) for o in spec.owners),
        before=side(spec.before),
        after=side(spec.after),
        blend=spec.blend,
        squareness=spec.squareness,
        girth=spec.girth,
    )


@dataclass
class Tube:
    """A built tube: its vertices and faces plus what the other arrays are computed from."""

    spec: TubeSpec
    vertices: np.ndarray
    """(n, 3) float64, metres."""
    faces: np.ndarray
    """(m, 3) int64, local vertex indices, counter-clockwise seen from outside."""
    centres: np.ndarray
    """(n, 3) float64, centre of each vertex's ring (the apex itself for the two apexes)."""
    arclength: np.ndarray
    """(n,) float64, position along the centre line from the first key, metres (< 0 in the start cap)."""
    key_rings: list[np.ndarray]
    """Local vertex indices of the ring centred on each key."""
    key_arclength: np.ndarray
    """(K,) float64, arclength of each key."""


def _superellipse(theta: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit cross-section coordinates: (S,) cosine-like and sine-like, point-symmetric."""
    c, s = np.cos(theta), np.sin(theta)
    return np.sign(c) * np.abs(c) ** power, np.sign(s) * np.abs(s) ** power


def build_tube(spec: TubeSpec) -> Tube:
    """Sweep the spec's cross-sections along its keys, close both ends with rounded caps."""
    keys = np.asarray(spec.keys, dtype=np.float64)
    radii = np.asarray(spec.radii, dtype=np.float64)
    up_ref = np.asarray(spec.up, dtype=np.float64)

    # Body rings: keys plus linearly interpolated rings between them.
    centres, axes, arcs, is_key = [], [], [], []
    key_arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(keys, axis=0), axis=1))])
    for k in range(len(keys)):
        if k > 0:
            for i in range(1, spec.between[k - 1] + 1):
                t = i / (spec.between[k - 1] + 1)
                centres.append((1 - t) * keys[k - 1] + t * keys[k])
                axes.append((1 - t) * radii[k - 1] + t * radii[k])
                arcs.append((1 - t) * key_arc[k - 1] + t * key_arc[k])
                is_key.append(False)
        centres.append(keys[k])
        axes.append(radii[k])
        arcs.append(key_arc[k])
        is_key.append(True)
    centres_arr = np.asarray(centres)
    tangents = np.gradient(centres_arr, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    axes_arr, arcs_arr = np.asarray(axes), np.asarray(arcs)

    # Caps: shrinking rings on a quarter circle beyond each end, then an apex.
    phi = np.pi / 2 * np.arange(1, spec.cap_rings + 1) / (spec.cap_rings + 1)
    start_t, end_t = tangents[0], tangents[-1]
    start_off, end_off = spec.cap_len[0] * np.sin(phi)[::-1], spec.cap_len[1] * np.sin(phi)
    start_scale, end_scale = np.cos(phi)[::-1], np.cos(phi)
    centres_arr = np.concatenate(
        [centres_arr[0] - start_off[:, None] * start_t, centres_arr, centres_arr[-1] + end_off[:, None] * end_t]
    )
    tangents = np.concatenate(
        [np.repeat(start_t[None], spec.cap_rings, 0), tangents, np.repeat(end_t[None], spec.cap_rings, 0)]
    )
    axes_arr = np.concatenate(
        [axes_arr[0] * start_scale[:, None], axes_arr, axes_arr[-1] * end_scale[:, None]]
    )
    arcs_arr = np.concatenate([-start_off, arcs_arr, arcs_arr[-1] + end_off])
    is_key = [False] * spec.cap_rings + is_key + [False] * spec.cap_rings

    # Frames with u x v = tangent, so quads (a, b, c), (a, c, d) face outward.
    u = up_ref - (tangents @ up_ref)[:, None] * tangents
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(tangents, u)
    theta = 2 * np.pi * np.arange(spec.segments) / spec.segments
    cu, cv = _superellipse(theta, spec.squareness)
    rings = (
        centres_arr[:, None, :]
        + axes_arr[:, 0, None, None] * cu[None, :, None] * u[:, None, :]
        + axes_arr[:, 1, None, None] * cv[None, :, None] * v[:, None, :]
    )  # (R, S, 3)
    num_rings, segs = rings.shape[:2]
    start_apex = keys[0] - spec.cap_len[0] * start_t
    end_apex = keys[-1] + spec.cap_len[1] * end_t
    vertices = np.concatenate([rings.reshape(-1, 3), start_apex[None], end_apex[None]])

    idx = np.arange(num_rings * segs).reshape(num_rings, segs)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, d = np.roll(idx[1:], -1, axis=1), idx[1:]
    quads = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    s0, s1 = num_rings * segs, num_rings * segs + 1
    first, last = idx[0], idx[-1]
    start_fan = np.stack([np.full(segs, s0), np.roll(first, -1), first], -1)
    end_fan = np.stack([np.full(segs, s1), last, np.roll(last, -1)], -1)
    faces = np.concatenate([quads, start_fan, end_fan]).astype(np.int64)

    vertex_centres = np.concatenate([np.repeat(centres_arr, segs, 0), start_apex[None], end_apex[None]])
    vertex_arcs = np.concatenate(
        [np.repeat(arcs_arr, segs), [-spec.cap_len[0], key_arc[-1] + spec.cap_len[1]]]
    )
    key_rings = [idx[r] for r in range(num_rings) if is_key[r]]
    return Tube(spec, vertices, faces, vertex_centres, vertex_arcs, key_rings, key_arc)
