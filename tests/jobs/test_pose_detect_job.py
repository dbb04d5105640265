"""``dl3d pose detect`` keeps the batch-job contract: row errors for undecodable videos, S3 output equal
to local, a second run skipping every shard, a dead worker replaced and a failing shard recorded (the
killed-driver resume is the runner's, checked once in test_resume_cli.py)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from contract_checks import check_dead_worker_and_failing_shard, check_second_run_skips_everything
from video_inputs import write_videos_dataset

from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.workers.pose_detect import PoseDetectWorker
from dl3d.workers.video_config import PoseDetectConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """3 one-video shards of 4 frames; shard 2's clip is deleted after ingest (it can no longer be decoded)."""
    url = str(tmp_path_factory.mktemp("pose") / "videos")
    return url, write_videos_dataset(url, shards=3, frames=4, missing=(2,))


def test_undecodable_video_gives_row_errors_and_s3_output_equals_local(local_ray, s3_server, videos, tmp_path):
    import s3fs

    src, rows = videos
    runner = RunnerConfig(workers=2, progress=False)
    local = run_shards("pose detect", PoseDetectWorker, PoseDetectConfig(), src, str(tmp_path / "local"), runner)
    assert local.exit_code == 0 and local.rows == rows == 12
    check_second_run_skips_everything(
        run_shards("pose detect", PoseDetectWorker, PoseDetectConfig(), src, str(tmp_path / "local"), runner), 3)
    table = pq.read_table(tmp_path / "local" / "part-00002.parquet").to_pylist()
    assert [r["frame"] for r in table] == [0, 1, 2, 3] and {r["status"] for r in table} == {"decode_error"}
    assert "decoding stopped at frame 0" in table[0]["error"] and table[0]["image_width"] == 96
    for shard in (0, 1):  # no person in these clips: every frame is a row with status no_person
        assert {r["status"] for r in pq.read_table(tmp_path / "local" / f"part-{shard:05d}.parquet").to_pylist()} == {"no_person"}
    assert local.row_status == {"no_person": 8, "decode_error": 4}

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.put(src, "dl3d-test/pose-in", recursive=True)
    remote = run_shards("pose detect", PoseDetectWorker, PoseDetectConfig(), "s3://dl3d-test/pose-in",
                        "s3://dl3d-test/pose-out", runner)
    assert remote.exit_code == 0 and remote.count("ok") == 3
    fs.invalidate_cache()
    for i in range(3):
        assert fs.cat_file(f"dl3d-test/pose-out/part-{i:05d}.parquet") == (tmp_path / "local" / f"part-{i:05d}.parquet").read_bytes()


def test_dead_worker_is_replaced_and_failing_shard_is_recorded(local_ray, videos, tmp_path):
    from faulty_workers import poisoned

    worker = poisoned(PoseDetectWorker, die_shard=0, fail_shard=1)
    report = run_shards("pose detect", worker, PoseDetectConfig(), videos[0], str(tmp_path / "out"),
                        RunnerConfig(workers=2, progress=False, max_attempts=3))
    check_dead_worker_and_failing_shard(report, tmp_path / "out")
