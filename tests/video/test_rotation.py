"""Display rotation: frames turned as a player shows them, and pose detect reports the turned size."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from video_files import gradient_frames, write_video

from dl3d.data import Shard
from dl3d.video.decode import upright
from dl3d.workers.base import ShardTask


def test_upright_turns_counter_clockwise_by_the_display_angle():
    frame = np.zeros((2, 3, 3), np.uint8)
    frame[0, 0] = 255  # top-left corner
    ccw = upright(frame, 90)
    assert ccw.shape == (3, 2, 3) and ccw[-1, 0, 0] == 255  # counter-clockwise: top-left goes to bottom-left
    cw = upright(frame, 270)  # a phone held upright: -90 in FFmpeg, 270 here
    assert cw.shape == (3, 2, 3) and cw[0, -1, 0] == 255  # clockwise: top-left goes to top-right
    assert upright(frame, 180)[-1, -1, 0] == 255 and upright(frame, 0) is frame
    with pytest.raises(ValueError, match="multiple of 90 degrees, got 45"):
        upright(frame, 45)


@pytest.mark.parametrize("turn", [True, False])
def test_pose_detect_reports_the_turned_image_size(tmp_path, turn):
    from dl3d.video.ingest import ingest_videos
    from dl3d.workers.pose_detect import PoseDetectWorker
    from dl3d.workers.video_config import PoseDetectConfig

    write_video(tmp_path / "clips" / "phone.mp4", gradient_frames(3, 64, 48), 30, "libx264", rotation=90)
    ingest_videos(str(tmp_path / "clips"), str(tmp_path / "videos"))
    worker = PoseDetectWorker(PoseDetectConfig(upright=turn))
    result = worker.process(ShardTask(Shard(0, str(tmp_path / "videos" / "part-00000.parquet")), str(tmp_path / "kp")))
    assert result.status == "ok", result.error
    rows = pq.read_table(tmp_path / "kp" / "part-00000.parquet").to_pylist()
    sizes = {(r["image_width"], r["image_height"]) for r in rows}
    assert len(rows) == 3 and sizes == ({(48, 64)} if turn else {(64, 48)})
    focal = rows[0]["focal_length"]
    assert focal == pytest.approx(80.0)  # the default: the image diagonal, the same either way
