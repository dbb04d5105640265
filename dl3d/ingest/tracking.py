"""Associate the people detected in each frame of a video into person tracks.

Pure functions over keypoint arrays: no I/O, no knowledge of where the detections came from. A
detection is ``(J, 3)``: x, y in pixels and a confidence in [0, 1]; a frame is ``(P, J, 3)`` for its
P detected people. Distances between two poses are the mean pixel distance over the joints that are
confident in both, divided by the larger of the two poses' sizes (the diagonal of the bounding box
of their confident joints), so one threshold works for people near and far from the camera.

Matching is greedy on that distance (the globally closest pair first, then the next among the
remaining tracks and detections): scipy's Hungarian solver is not a dependency of dl3d, and for
the few people of a frame greedy and optimal assignments differ only in rare near-ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_SCALE_PX = 1.0
"""Floor on a pose's size in pixels, so a person seen by one joint still has a finite threshold."""


def pose_scale(keypoints: np.ndarray, min_confidence: float) -> np.ndarray:
    """Size of each pose: the diagonal of the bounding box of its confident joints.

    keypoints: (..., J, 3) float, pixels and confidence. Returns (...,) float64 pixels; 0 for a pose
    with fewer than two confident joints.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = kp[..., 2] >= min_confidence
    big = np.finfo(np.float64).max
    lo = np.where(ok[..., None], kp[..., :2], big).min(axis=-2)
    hi = np.where(ok[..., None], kp[..., :2], -big).max(axis=-2)
    diag = np.linalg.norm(hi - lo, axis=-1)
    return np.where(ok.sum(axis=-1) >= 2, diag, 0.0)


def pose_distance_matrix(a: np.ndarray, b: np.ndarray, min_confidence: float) -> np.ndarray:
    """Relative distance between every pose of ``a`` and every pose of ``b``.

    a: (T, J, 3), b: (P, J, 3) float, pixels and confidence. Returns (T, P) float64: the mean pixel
    distance over joints with confidence >= ``min_confidence`` in both poses, divided by
    ``max(pose_scale(a), pose_scale(b), 1 px)``; ``inf`` where no joint is confident in both.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:] or a.shape[2] != 3:
        raise ValueError(f"expected poses of shapes (T, J, 3) and (P, J, 3), got {a.shape} and {b.shape}")
    both = (a[:, None, :, 2] >= min_confidence) & (b[None, :, :, 2] >= min_confidence)  # (T, P, J)
    dist = np.linalg.norm(a[:, None, :, :2] - b[None, :, :, :2], axis=-1)  # (T, P, J)
    count = both.sum(axis=-1)
    mean = np.where(both, dist, 0.0).sum(axis=-1) / np.maximum(count, 1)
    scale = np.maximum(np.maximum(pose_scale(a, min_confidence)[:, None], pose_scale(b, min_confidence)[None, :]),
                       MIN_SCALE_PX)
    return np.where(count > 0, mean / scale, np.inf)


def greedy_match(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` taken closest first, each row and column at most once, cost <= ``max_cost``.

    cost: (T, P) float, ``inf`` for pairs that may never match. Ties go to the lower row, then column.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"expected a cost matrix of shape (T, P), got {cost.shape}")
    rows, cols = np.nonzero(cost <= max_cost)
    order = np.lexsort((cols, rows, cost[rows, cols]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


@dataclass
class _Track:
    id: int
    last: np.ndarray  # (J, 3) keypoints of the last detection
    last_seen: int  # index of the frame of that detection


def associate_tracks(
    frames: Sequence[np.ndarray | None],
    person_ids: Sequence[np.ndarray | None] | None = None,
    *,
    max_distance: float = 0.5,
    min_confidence: float = 0.1,
    max_gap: int = 10,
) -> list[np.ndarray]:
    """Give every detection of a video a track id.

    frames: F entries in time order, each (P_f, J, 3) float (pixels, confidence) or None for a frame
        that could not be read (treated as nobody seen).
    person_ids: optional F entries of (P_f,) int ids from the detector; an id >= 0 is kept as the
        track id (a repeat of an id inside one frame counts as unknown), -1 means unknown.
    max_distance: largest relative distance (:func:`pose_distance_matrix`) at which an unknown
        detection continues a track; farther detections start a new track.
    min_confidence: joints below this confidence are ignored when comparing poses.
    max_gap: a track not seen for more than this many frames is not continued any more.

    Returns F arrays (P_f,) int64 of track ids. Tracks started here are numbered from one past the
    largest detector id (0 when there is none), in order of first appearance.
    """
    if person_ids is not None and len(person_ids) != len(frames):
        raise ValueError(f"expected person_ids for each of the {len(frames)} frames, got {len(person_ids)}")
    if max_distance < 0 or max_gap < 0:
        raise ValueError(f"max_distance and max_gap must be >= 0, got {max_distance} and {max_gap}")
    ids_per_frame = [_frame_ids(frames[i], None if person_ids is None else person_ids[i]) for i in range(len(frames))]
    given = [int(x) for ids in ids_per_frame for x in ids if x >= 0]
    next_id = max(given) + 1 if given else 0
    tracks: dict[int, _Track] = {}
    out: list[np.ndarray] = []
    for i, (det, ids) in enumerate(zip(frames, ids_per_frame)):
        assigned = np.full(len(ids), -1, dtype=np.int64)
        if len(ids) == 0:
            out.append(assigned)
            continue
        det = np.asarray(det, dtype=np.float64)
        for p, pid in enumerate(ids):
            if pid >= 0:
                assigned[p] = pid
        unknown = np.flatnonzero(assigned < 0)
        taken = set(int(x) for x in assigned if x >= 0)
        active = [t for t in tracks.values() if t.id not in taken and i - t.last_seen - 1 <= max_gap]
        if len(unknown) and active:
            cost = pose_distance_matrix(np.stack([t.last for t in active]), det[unknown], min_confidence)
            for r, c in greedy_match(cost, max_distance):
                assigned[unknown[c]] = active[r].id
        for p in np.flatnonzero(assigned < 0):
            assigned[p] = next_id
            next_id += 1
        for p, tid in enumerate(assigned):
            tracks[int(tid)] = _Track(int(tid), det[p], i)
        out.append(assigned)
    return out


def _frame_ids(det: np.ndarray | None, ids: np.ndarray | None) -> np.ndarray:
    """Detector ids of one frame, with repeats inside the frame turned into -1."""
    n = 0 if det is None else len(det)
    if ids is None:
        return np.full(n, -1, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"expected {n} person ids for a frame with {n} people, got {len(ids)}")
    out = ids.copy()
    seen: set[int] = set()
    for p, pid in enumerate(ids):
        if pid >= 0 and int(pid) in seen:
            out[p] = -1
        seen.add(int(pid))
    out[out < 0] = -1
    return out


def track_rows(
    frame_numbers: np.ndarray,
    frames: Sequence[np.ndarray | None],
    track_ids: Sequence[np.ndarray],
    num_joints: int,
    min_track_length: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a video: one per (track, frame) from each track's first to last detection.

    frame_numbers: (F,) int, increasing. frames: F entries (P_f, J, 3) or None (unreadable frame).
    track_ids: F arrays (P_f,) from :func:`associate_tracks`. Tracks detected in fewer than
    ``min_track_length`` frames are dropped. Frames inside a track's span where it was not detected
    get all-zero keypoints. A video with no track at all gets one all-zero row per readable frame,
    with track 0, so that later stages can report frames where nobody was found.

    Returns frames (N,) int64, tracks (N,) int64 and keypoints (N, J, 3) float32, sorted by track
    then frame.
    """
    frame_numbers = np.asarray(frame_numbers, dtype=np.int64)
    if len(frame_numbers) != len(frames) or len(track_ids) != len(frames):
        raise ValueError(f"expected {len(frames)} frame numbers and track id arrays, "
                         f"got {len(frame_numbers)} and {len(track_ids)}")
    if len(frame_numbers) > 1 and np.any(np.diff(frame_numbers) <= 0):
        raise ValueError("expected strictly increasing frame numbers")
    seen: dict[int, dict[int, np.ndarray]] = {}
    for i, (det, ids) in enumerate(zip(frames, track_ids)):
        for p, tid in enumerate(np.asarray(ids, dtype=np.int64)):
            seen.setdefault(int(tid), {})[i] = det[p]
    out_f, out_t, out_k = [], [], []
    for tid in sorted(seen):
        hits = seen[tid]
        if len(hits) < min_track_length:
            continue
        first, last = min(hits), max(hits)
        for i in range(first, last + 1):
            out_f.append(frame_numbers[i])
            out_t.append(tid)
            out_k.append(hits.get(i, np.zeros((num_joints, 3))))
    if not out_f:
        readable = [i for i, det in enumerate(frames) if det is not None]
        out_f = [frame_numbers[i] for i in readable]
        out_t = [0] * len(readable)
        out_k = [np.zeros((num_joints, 3))] * len(readable)
    keypoints = np.asarray(out_k, dtype=np.float32).reshape(len(out_f), num_joints, 3)
    return np.asarray(out_f, dtype=np.int64), np.asarray(out_t, dtype=np.int64), keypoints
