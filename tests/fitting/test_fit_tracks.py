"""Row bookkeeping: status, consecutive frames, keyframes, interpolation along a track."""

from __future__ import annotations

import math

import numpy as np
import torch

from dl3d.fitting.camera import rotation_y
from dl3d.fitting.tracks import (clean_keypoints, consecutive_mask, interpolate_rotations, interpolate_rows,
                                 has_torso, keyframe_mask, row_status)


def test_status_of_degenerate_rows():
    kp = torch.rand(5, 25, 3) * 100
    kp[..., 2] = 0.9
    kp[1, 4, 0] = float("nan")
    kp[2, :, 2] = 0.0
    kp[3, 6:, 2] = 0.0  # six keypoints left, but ...
    kp[3, [2, 5], 2] = 0.0  # ... no shoulder: four
    kp[4, 3:, 2] = 0.0
    kp[0, [2, 12], 2] = 0.0  # right shoulder and left hip missing: no torso side, still "ok"
    xy, conf, nan_rows = clean_keypoints(kp)
    assert torch.isfinite(xy).all() and conf[1, 4] == 0 and nan_rows.tolist() == [False, True, False, False, False]
    status = row_status(conf, nan_rows, min_keypoints=6)
    assert status == ["ok", "nan_keypoints", "no_keypoints", "too_few_keypoints", "too_few_keypoints"]
    assert has_torso(conf, "body25").tolist() == [False, True, False, False, False]


def test_consecutive_mask_respects_tracks_and_gaps():
    track = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    frame = np.array([0, 1, 2, 4, 0, 1, 2, 0])
    # rows 1..6: (0,1,2) ok; (1,2,4) gap; (2,4,t1) other track; (4,t1..) no; (t1 0,1,2) ok; (t1 2, t2) no
    assert consecutive_mask(track, frame).tolist() == [True, False, False, False, True, False]
    assert consecutive_mask(track[:2], frame[:2]).shape == (0,)


def test_keyframes_and_interpolation():
    track = np.array([0] * 7 + [1] * 3)
    frame = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    ok = np.ones(10, dtype=bool)
    ok[8] = False
    key = keyframe_mask(track, ok, stride=3)
    assert np.flatnonzero(key).tolist() == [0, 3, 6, 7, 9]
    values = torch.zeros(10, 2)
    values[key] = torch.tensor([[0.0, 0], [3, 30], [6, 60], [10, 0], [12, 4]])
    out = interpolate_rows(values, track, frame, key)
    torch.testing.assert_close(out[:7, 0], torch.arange(7.0))
    torch.testing.assert_close(out[8], torch.tensor([11.0, 2.0]))


def test_rotation_interpolation_takes_the_short_way():
    track, frame = np.zeros(3, dtype=np.int64), np.arange(3)
    rot = rotation_y(torch.tensor([0.2, 0.0, math.pi - 0.2]))
    known = np.array([True, False, True])
    out = interpolate_rotations(rot, track, frame, known)
    expected = rotation_y(torch.tensor(math.pi / 2))
    torch.testing.assert_close(out[1], expected, atol=1e-5, rtol=0)
