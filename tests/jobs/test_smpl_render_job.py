"""``dl3d smpl render`` keeps the batch-job contract: row errors (a video not in --videos, frames whose fit
is not ok), S3 output equal to local, a second run skipping every shard, a dead worker replaced and a
failing shard recorded (the killed-driver resume is the runner's, checked once in test_resume_cli.py)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from contract_checks import check_dead_worker_and_failing_shard, check_second_run_skips_everything
from video_inputs import HEIGHT, WIDTH, write_fit_dataset

from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.video.decode import VideoRef, iter_frames
from dl3d.workers.smpl_render import SmplRenderWorker
from dl3d.workers.video_config import SmplRenderConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fits(tmp_path_factory, body_model_path):
    """3 one-video fit shards of 4 frames; frame 1 of shard 0 not fitted; shard 2 names a video --videos lacks."""
    root = tmp_path_factory.mktemp("render")
    rows = write_fit_dataset(str(root / "fit"), str(root / "videos"), body_model_path, shards=3, frames=4,
                             not_ok=((0, 1),), unknown_video_shard=2)
    return str(root / "fit"), str(root / "videos"), rows


def _frames(path) -> np.ndarray:
    return np.stack(list(iter_frames(VideoRef("r", url=str(path)))))


def test_row_errors_and_s3_output_equals_local(local_ray, s3_server, fits, body_model_path, tmp_path):
    import s3fs

    src, videos, rows = fits
    cfg = SmplRenderConfig(videos=videos, model=body_model_path)
    runner = RunnerConfig(workers=2, progress=False)
    local = run_shards("smpl render", SmplRenderWorker, cfg, src, str(tmp_path / "local"), runner)
    assert local.exit_code == 0 and local.rows == rows == 3
    check_second_run_skips_everything(
        run_shards("smpl render", SmplRenderWorker, cfg, src, str(tmp_path / "local"), runner), 3)
    index = {r["id"]: r for i in range(3)
             for r in pq.read_table(tmp_path / "local" / f"part-{i:05d}.parquet").to_pylist()}
    a, b, missing = index["clip_000"], index["clip_001"], index["not_in_videos"]
    assert (a["frames"], a["drawn"], a["not_fitted"], a["no_fit_row"], a["status"]) == (4, 3, 1, 0, "ok")
    assert (b["frames"], b["drawn"], b["status"]) == (4, 4, "ok")
    assert missing["status"] == "no_video" and missing["video_path"] is None and "not_in_videos" in missing["error"]
    frames = _frames(tmp_path / "local" / a["video_path"])
    assert frames.shape == (4, HEIGHT, WIDTH, 3)

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.put(src, "dl3d-test/smpl-render-in", recursive=True)
    remote = run_shards("smpl render", SmplRenderWorker, cfg, "s3://dl3d-test/smpl-render-in", "s3://dl3d-test/smpl-render-out",
                        runner)
    assert remote.exit_code == 0 and remote.count("ok") == 3
    fs.invalidate_cache()
    for i in range(3):
        assert fs.cat_file(f"dl3d-test/smpl-render-out/part-{i:05d}.parquet") == (tmp_path / "local" / f"part-{i:05d}.parquet").read_bytes()
    for r in (a, b):  # libx264 is not bit-exact run to run: the decoded frames must agree
        (tmp_path / "s3.mp4").write_bytes(fs.cat_file(f"dl3d-test/smpl-render-out/{r['video_path']}"))
        diff = np.abs(_frames(tmp_path / "s3.mp4").astype(int) - _frames(tmp_path / "local" / r["video_path"]))
        assert diff.mean() < 1.0, f"{r['id']}: S3 and local renders differ by {diff.mean():.2f} levels on average"


def test_dead_worker_is_replaced_and_failing_shard_is_recorded(local_ray, fits, body_model_path, tmp_path):
    from faulty_workers import poisoned

    src, videos, _ = fits
    worker = poisoned(SmplRenderWorker, die_shard=0, fail_shard=1)
    report = run_shards("smpl render", worker, SmplRenderConfig(videos=videos, model=body_model_path), src,
                        str(tmp_path / "out"), RunnerConfig(workers=2, progress=False, max_attempts=3))
    check_dead_worker_and_failing_shard(report, tmp_path / "out")
