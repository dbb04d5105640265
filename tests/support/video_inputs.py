"""Small inputs for the video jobs (pose detect, smpl render): clips written with PyAV, a videos dataset
(one video per shard), and an smpl_fit dataset of known bodies for the same videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FOCAL, FPS = 96, 64, 100.0, 25.0


def clip_frames(n: int, seed: int) -> list[np.ndarray]:
    """n smooth, moving RGB frames of WIDTH x HEIGHT (no person in them)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return [np.stack([(xx * 3 + 7 * i + seed * 40) % 256, (yy * 2 + 5 * i) % 256, np.full_like(xx, 30 * seed % 256)], -1)
            .astype(np.uint8) for i in range(n)]


def write_videos_dataset(url: str, shards: int, frames: int = 4, missing: tuple[int, ...] = ()) -> int:
    """A videos dataset at ``url`` (local path), one clip per shard (``clip_000`` ...), clips kept in
    ``url + '-clips'``; the clips of shards in ``missing`` are deleted after ingest (their frames can
    no longer be decoded). Returns the number of frames, which is the pose detect job's row count."""
    from dl3d.video.decode import encode_video
    from dl3d.video.ingest import IngestVideosConfig, ingest_videos

    clips = Path(url + "-clips")
    clips.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        (clips / f"clip_{s:03d}.mp4").write_bytes(encode_video(clip_frames(frames, s), FPS))
    ingest_videos(str(clips), url, IngestVideosConfig(videos_per_shard=1, focal_length=FOCAL))
    for s in missing:
        (clips / f"clip_{s:03d}.mp4").unlink()
    return shards * frames


def write_fit_dataset(url: str, videos_url: str, body_model: str, shards: int, frames: int = 4,
                      not_ok: tuple[tuple[int, int], ...] = (), unknown_video_shard: int | None = None) -> int:
    """An smpl_fit dataset with one shard per clip of :func:`write_videos_dataset` (which it writes at
    ``videos_url``): a synthetic walk per video seen by the clips' camera. ``not_ok`` = (shard, frame)
    rows given status 'no_keypoints'; ``unknown_video_shard`` names a video the videos dataset lacks.
    Returns the render job's row count (one per video)."""
    import pyarrow as pa

    from dl3d.body import read_body_model_arrays
    from dl3d.data import DatasetWriter, tensor_to_arrow
    from dl3d.data.smpl_tables import SMPL_FIT
    from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video

    write_videos_dataset(videos_url, shards, frames)
    arrays = read_body_model_arrays(body_model)
    writer = DatasetWriter(url, SMPL_FIT, produced_by={"test": True})
    for s in range(shards):
        v = make_keypoint_video(arrays, KeypointVideoSpec(frames=frames, image_width=WIDTH, image_height=HEIGHT,
                                                         focal_length=FOCAL, min_depth=3.0, max_depth=3.0,
                                                         yaw_range_deg=30.0, seed=s))
        video = f"clip_{s:03d}" if s != unknown_video_shard else "not_in_videos"
        status = ["no_keypoints" if (s, f) in not_ok else "ok" for f in range(frames)]
        writer.write_shard(s, pa.table({
            "id": [f"{video}/0/{f:06d}" for f in range(frames)], "video": [video] * frames,
            "track": pa.array([0] * frames, pa.int64()), "frame": pa.array(range(frames), pa.int64()),
            "betas": pa.array(np.tile(v.betas.astype(np.float32), (frames, 1)).tolist(), pa.list_(pa.float32())),
            "global_orient": tensor_to_arrow(v.global_orient.astype(np.float32)),
            "body_pose": tensor_to_arrow(v.body_pose.astype(np.float32)),
            "transl": tensor_to_arrow(v.transl.astype(np.float32)),
            "joints": tensor_to_arrow(v.joints3d.astype(np.float32)),
            "focal_length": pa.array([FOCAL] * frames, pa.float64()),
            "principal_point": tensor_to_arrow(np.tile([WIDTH / 2, HEIGHT / 2], (frames, 1)), pa.float64()),
            "reprojection_error_px": pa.array([0.0] * frames, pa.float32()),
            "loss": pa.array([0.0] * frames, pa.float32()), "status": status,
            "flipped": pa.array([False] * frames),
        }, schema=SMPL_FIT.arrow_schema([c.name for c in SMPL_FIT.columns if c.name != "mesh_path"])))
    writer.close()
    return shards
