"""keypoints2d tables and datasets from arrays: validation, sharding of whole videos, replacement of old output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dl3d.data import arrow_to_tensor, list_shards, read_meta, read_table
from dl3d.data.keypoint_tables import KEYPOINTS2D
from dl3d.ingest import INGEST_ERRORS, VideoKeypoints, keypoints_table, write_keypoint_dataset
from dl3d.ingest.writer import shard_videos


def _video(name: str, rows: int, fmt: str = "body25", seed: int = 0, **kw) -> VideoKeypoints:
    j = 25 if fmt == "body25" else 17
    rng = np.random.default_rng(seed)
    return VideoKeypoints(name, np.arange(rows), np.zeros(rows, np.int64), rng.uniform(0, 1, (rows, j, 3)), fmt, **kw)


def test_video_rows_are_sorted_by_track_then_frame():
    kp = np.arange(4 * 17 * 3, dtype=np.float32).reshape(4, 17, 3)
    v = VideoKeypoints("v", [5, 3, 4, 3], [1, 1, 0, 0], kp, "coco17")
    assert v.tracks.tolist() == [0, 0, 1, 1] and v.frames.tolist() == [3, 4, 3, 5]
    np.testing.assert_array_equal(v.keypoints, kp[[3, 2, 1, 0]])
    assert v.num_rows == 4 and v.num_tracks == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"keypoints": np.zeros((2, 18, 3))},
     r"video 'v': expected keypoints of shape \(2, 25, 3\) for 2 frames of body25, got \(2, 18, 3\)"),
    ({"keypoint_format": "h36m"}, r"video 'v': keypoint_format must be one of \['body25', 'body25b', 'coco17', 'coco18', 'posetrack'\], got 'h36m'"),
    ({"tracks": [0]}, "video 'v': expected 2 track ids, got 1"),
    ({"frames": [4, 4]}, "video 'v': track 0 has two rows for frame 4"),
    ({"keypoints": np.full((2, 25, 3), np.nan)}, "video 'v': keypoints contain NaN or infinite values"),
    ({"image_size": (0, 10)}, "video 'v': image size must be positive, got 0x10"),
    ({"video": ""}, "expected a non-empty video id"),
])
def test_video_keypoints_validation(kwargs, message):
    args = {"video": "v", "frames": [0, 1], "tracks": [0, 0], "keypoints": np.zeros((2, 25, 3)),
            "keypoint_format": "body25"}
    with pytest.raises(ValueError, match=message):
        VideoKeypoints(**{**args, **kwargs})


def test_table_holds_the_numbers_and_nulls():
    a = _video("a", 3, "body25", seed=1, image_size=(640, 480), focal_length=800.0)
    b = _video("b", 2, "coco17", seed=2)
    table = keypoints_table([a, b])
    KEYPOINTS2D.validate(table, "test")
    assert table.column("id").to_pylist() == ["a/0/000000", "a/0/000001", "a/0/000002", "b/0/000000", "b/0/000001"]
    assert table.column("image_width").to_pylist() == [640] * 3 + [None] * 2
    assert table.column("focal_length").to_pylist() == [800.0] * 3 + [None] * 2
    assert table.column("keypoint_format").to_pylist() == ["body25"] * 3 + ["coco17"] * 2
    got_a = arrow_to_tensor(table.column("keypoints").slice(0, 3), (None, 3), name="keypoints", source="t")
    got_b = arrow_to_tensor(table.column("keypoints").slice(3, 2), (None, 3), name="keypoints", source="t")
    np.testing.assert_array_equal(got_a, a.keypoints)
    np.testing.assert_array_equal(got_b, b.keypoints)
    assert keypoints_table([]).num_rows == 0


@pytest.mark.parametrize("rows,per_video,per_rows,want", [
    ([3, 3, 3, 3, 3], 2, None, [[0, 1], [2, 3], [4]]),
    ([3, 3, 3], 16, 6, [[0, 1], [2]]),
    ([10, 1, 1, 9], 16, 5, [[0], [1, 2], [3]]),  # a long video gets a shard of its own
    ([1, 1, 1], 1, 100, [[0], [1], [2]]),
    ([], 4, None, []),
])
def test_shard_videos(rows, per_video, per_rows, want):
    assert shard_videos(rows, per_video, per_rows) == want


def test_shard_videos_checks_limits():
    with pytest.raises(ValueError, match="videos_per_shard must be >= 1, got 0"):
        shard_videos([1], 0)
    with pytest.raises(ValueError, match="rows_per_shard must be >= 1 or None, got 0"):
        shard_videos([1], 1, 0)


def test_dataset_is_sorted_sharded_by_video_and_replaces_old_output(tmp_path):
    url = str(tmp_path / "ds")
    videos = [_video(f"v{i}", 2 + i, seed=i) for i in (3, 0, 2, 1, 4)]
    meta = write_keypoint_dataset(url, videos, 2, {"test": True}, errors=[{"name": "x.json", "reason": "bad"}])
    assert (meta["num_rows"], meta["num_shards"], meta["num_videos"], meta["keypoint_format"]) == (20, 3, 5, "body25")
    per_shard = [read_table(s.url, KEYPOINTS2D).column("video").to_pylist() for s in list_shards(url)]
    assert per_shard == [["v0"] * 2 + ["v1"] * 3, ["v2"] * 4 + ["v3"] * 5, ["v4"] * 6]
    assert json.loads((tmp_path / "ds" / INGEST_ERRORS).read_text()) == [{"name": "x.json", "reason": "bad"}]
    write_keypoint_dataset(url, videos[:1], 2)
    assert [s.index for s in list_shards(url)] == [0]
    assert read_meta(url)["num_rows"] == 5
    assert json.loads((tmp_path / "ds" / INGEST_ERRORS).read_text()) == []


def test_dataset_needs_unique_videos(tmp_path):
    with pytest.raises(ValueError, match=r"video ids must be unique, got \['a'\] more than once"):
        write_keypoint_dataset(str(tmp_path), [_video("a", 1), _video("a", 2)])
    with pytest.raises(ValueError, match="no videos to write"):
        write_keypoint_dataset(str(tmp_path), [])
