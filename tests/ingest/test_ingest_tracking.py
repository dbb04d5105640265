"""Track association: distances against a naive reference, greedy matching, identities kept across frames."""

from __future__ import annotations

import numpy as np
import pytest

from dl3d.ingest.tracking import associate_tracks, greedy_match, pose_distance_matrix, pose_scale, track_rows


def _naive_distance(a, b, min_conf):
    def scale(p):
        ok = p[:, 2] >= min_conf
        if ok.sum() < 2:
            return 0.0
        q = p[ok, :2]
        return float(np.hypot(*(q.max(0) - q.min(0))))

    out = np.full((len(a), len(b)), np.inf)
    for t in range(len(a)):
        for p in range(len(b)):
            d = [np.hypot(*(a[t, j, :2] - b[p, j, :2])) for j in range(a.shape[1])
                 if a[t, j, 2] >= min_conf and b[p, j, 2] >= min_conf]
            if d:
                out[t, p] = np.mean(d) / max(scale(a[t]), scale(b[p]), 1.0)
    return out


@pytest.mark.parametrize("t,p,j", [(1, 1, 25), (3, 4, 25), (5, 2, 17)])
def test_distance_matrix_matches_naive_reference(t, p, j):
    rng = np.random.default_rng(t * 10 + p)
    a = np.concatenate([rng.uniform(0, 640, (t, j, 2)), rng.choice([0.0, 0.05, 0.5, 1.0], (t, j, 1))], -1)
    b = np.concatenate([rng.uniform(0, 640, (p, j, 2)), rng.choice([0.0, 0.05, 0.5, 1.0], (p, j, 1))], -1)
    np.testing.assert_allclose(pose_distance_matrix(a, b, 0.1), _naive_distance(a, b, 0.1), rtol=1e-12)


def test_distance_is_relative_to_pose_size(helpers):
    a = helpers.body25_pose(100, 300, height=200)
    b = a.copy()
    b[:, 0] += 20  # 20 px shift of a person whose confident-joint box is 0.5 x 1.0 of 200 px
    diag = np.hypot(0.5 * 200, 0.97 * 200)
    assert pose_scale(a, 0.1) == pytest.approx(diag)
    assert pose_distance_matrix(a[None], b[None], 0.1)[0, 0] == pytest.approx(20 / diag)


def test_distance_without_common_confident_joints_is_infinite(helpers):
    a = helpers.body25_pose(100, 300)
    b = helpers.body25_pose(100, 300)
    a[:12, 2] = 0
    b[12:, 2] = 0.05
    assert np.isinf(pose_distance_matrix(a[None], b[None], 0.1)[0, 0])


def test_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected poses of shapes \(T, J, 3\) and \(P, J, 3\), "
                                         r"got \(1, 25, 3\) and \(1, 17, 3\)"):
        pose_distance_matrix(np.zeros((1, 25, 3)), np.zeros((1, 17, 3)), 0.1)


def test_greedy_match_takes_closest_pairs_first():
    cost = np.array([[0.1, 0.2, np.inf], [0.15, 0.9, 0.3], [0.05, 0.4, 0.8]])
    # 0.05 (2,0) first; then 0.2 (0,1); then 0.3 (1,2)
    assert greedy_match(cost, 0.5) == [(2, 0), (0, 1), (1, 2)]
    assert greedy_match(cost, 0.25) == [(2, 0), (0, 1)]
    assert greedy_match(np.zeros((0, 3)), 1.0) == []


def test_tracks_keep_identities_when_detection_order_swaps(helpers):
    # Person A walks right from x=100, person B walks left from x=400; the detector lists them in a
    # different order every frame.
    frames = []
    for f in range(6):
        a, b = helpers.body25_pose(100 + 10 * f, 300), helpers.body25_pose(400 - 10 * f, 300)
        frames.append(np.stack([a, b] if f % 2 == 0 else [b, a]))
    ids = associate_tracks(frames)
    assert [x.tolist() for x in ids] == [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0]]


def test_given_person_ids_are_kept_and_new_tracks_start_after_them(helpers):
    a, b, c = helpers.body25_pose(100, 300), helpers.body25_pose(400, 300), helpers.body25_pose(700, 300)
    frames = [np.stack([a, b]), np.stack([b, a, c]), np.stack([c])]
    ids = associate_tracks(frames, [np.array([7, 3]), np.array([3, 7, -1]), np.array([-1])])
    assert [x.tolist() for x in ids] == [[7, 3], [3, 7, 8], [8]]


def test_repeated_person_id_in_one_frame_counts_as_unknown(helpers):
    a, b = helpers.body25_pose(100, 300), helpers.body25_pose(400, 300)
    ids = associate_tracks([np.stack([a, b]), np.stack([a, b])], [np.array([2, 5]), np.array([2, 2])])
    assert [x.tolist() for x in ids] == [[2, 5], [2, 5]]  # the second "2" is matched to track 5 by position


def test_far_detection_starts_a_new_track_and_gaps_are_limited(helpers):
    a = helpers.body25_pose(100, 300)
    jumped = helpers.body25_pose(100 + 0.6 * 220, 300)  # moved 0.6 of its ~217 px box diagonal
    assert [x.tolist() for x in associate_tracks([a[None], jumped[None]], max_distance=0.5)] == [[0], [1]]
    assert [x.tolist() for x in associate_tracks([a[None], jumped[None]], max_distance=0.7)] == [[0], [0]]
    empty = np.zeros((0, 25, 3))
    gap2 = [a[None], empty, None, a[None]]
    assert [x.tolist() for x in associate_tracks(gap2, max_gap=2)] == [[0], [], [], [0]]
    assert [x.tolist() for x in associate_tracks(gap2, max_gap=1)] == [[0], [], [], [1]]


def test_associate_tracks_checks_id_counts(helpers):
    with pytest.raises(ValueError, match="expected 1 person ids for a frame with 1 people, got 2"):
        associate_tracks([helpers.body25_pose(1, 1)[None]], [np.array([1, 2])])
    with pytest.raises(ValueError, match="expected person_ids for each of the 1 frames, got 2"):
        associate_tracks([np.zeros((0, 25, 3))], [None, None])


def test_track_rows_fill_gaps_with_zero_keypoints(helpers):
    a, b = helpers.body25_pose(100, 300), helpers.body25_pose(400, 300)
    dets = [np.stack([a, b]), a[None], None, np.stack([b, a]), np.zeros((0, 25, 3))]
    ids = [np.array([0, 1]), np.array([0]), np.array([], np.int64), np.array([1, 0]), np.array([], np.int64)]
    frames, tracks, kp = track_rows(np.array([10, 11, 12, 13, 14]), dets, ids, 25)
    assert tracks.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert frames.tolist() == [10, 11, 12, 13, 10, 11, 12, 13]
    assert kp.dtype == np.float32 and kp.shape == (8, 25, 3)
    np.testing.assert_array_equal(kp[[2, 5, 6]], 0)  # track 0 at frame 12, track 1 at frames 11 and 12
    np.testing.assert_allclose(kp[3], a, atol=1e-4)
    np.testing.assert_allclose(kp[7], b, atol=1e-4)
    # min_track_length drops track 1 (seen twice), keeps track 0 (seen three times)
    _, tracks3, _ = track_rows(np.array([10, 11, 12, 13, 14]), dets, ids, 25, min_track_length=3)
    assert sorted(set(tracks3.tolist())) == [0]


def test_video_with_nobody_gets_one_zero_row_per_readable_frame():
    empty = np.zeros((0, 17, 3))
    frames, tracks, kp = track_rows(np.array([0, 1, 2]), [empty, None, empty], [np.array([], np.int64)] * 3, 17)
    assert frames.tolist() == [0, 2] and tracks.tolist() == [0, 0]
    assert kp.shape == (2, 17, 3) and not kp.any()


def test_track_rows_needs_increasing_frames():
    with pytest.raises(ValueError, match="expected strictly increasing frame numbers"):
        track_rows(np.array([1, 1]), [None, None], [np.array([])] * 2, 25)
