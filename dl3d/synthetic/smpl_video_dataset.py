"""``dl3d data make smpl-video``: synthetic keypoint videos on disk, in OpenPose's JSON format, with truth.

Layout under the output URL:

    openpose/<video>/<video>_<frame:012d>_keypoints.json   what a detector would have written
    truth/part-NNNNN.parquet + _dataset.json              smpl_params of every frame (camera frame) + joints
    camera.json                                            image size and focal length (pixels)

Ingest ``openpose/`` with ``dl3d ingest openpose --image-width W --image-height H --focal-length F``
(values from ``camera.json``), fit it with ``dl3d smpl fit``, then score with ``dl3d smpl evaluate``.
Truth ids are the ids ingest gives: ``{video}/0/{frame:06d}`` (one person, track 0).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from dl3d.config import opt
from dl3d.data import DatasetWriter, to_table
from dl3d.data import fs as fsx
from dl3d.data.smpl_tables import SMPL_PARAMS
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video


@dataclass
class SmplVideoDatasetSpec(KeypointVideoSpec):
    """What ``dl3d data make smpl-video`` generates: many videos of ``KeypointVideoSpec``."""

    videos: int = opt(8, "number of videos (one person each)")
    videos_per_shard: int = opt(4, "videos per shard of the truth dataset")

    def __post_init__(self):
        super().__post_init__()
        if self.videos < 1 or self.videos_per_shard < 1:
            raise ValueError(f"videos and videos_per_shard must be >= 1, got {self.videos}, {self.videos_per_shard}")
        if self.keypoint_format != "body25":
            raise ValueError("smpl-video writes OpenPose JSON, which holds BODY_25 keypoints: keypoint_format must be body25")


def write_smpl_video_dataset(url: str, arrays: Mapping[str, Any], spec: SmplVideoDatasetSpec) -> dict[str, Any]:
    """Generate ``spec.videos`` videos with the body model ``arrays`` and write them under ``url``."""
    from dl3d.ingest import write_openpose_video

    fs, root = fsx.resolve(url)
    video_spec = {f.name: getattr(spec, f.name) for f in dataclasses.fields(KeypointVideoSpec)}
    truth = DatasetWriter(fsx.join(url, "truth"), SMPL_PARAMS,
                          produced_by={"generator": "dl3d data make smpl-video", "synthetic": True})
    rows: dict[str, list] = {}
    for v in range(spec.videos):
        name = f"video{v:04d}"
        video = make_keypoint_video(arrays, KeypointVideoSpec(**(video_spec | {"seed": spec.seed * 100003 + v})))
        frames = video.keypoints2d.shape[0]
        write_openpose_video(fsx.join(url, "openpose"), name, video.keypoints2d[:, None],
                             person_ids=np.zeros((frames, 1), np.int64))
        _append(rows, name, video)
        if (v + 1) % spec.videos_per_shard == 0 or v + 1 == spec.videos:
            truth.write_shard(truth.num_shards, _truth_table(rows))
            rows = {}
    meta = truth.close(synthetic_spec=dataclasses.asdict(spec))
    camera = {"image_width": spec.image_width, "image_height": spec.image_height, "focal_length": spec.focal_length,
              "principal_point": [spec.image_width / 2, spec.image_height / 2], "convention": "OpenCV pinhole, pixels"}
    fsx.put_bytes(fs, fsx.join(root, "camera.json"), (json.dumps(camera, indent=2) + "\n").encode())
    return meta | {"camera": camera}


def _append(rows: dict[str, list], name: str, video) -> None:
    frames = video.keypoints2d.shape[0]
    rows.setdefault("id", []).extend(f"{name}/0/{f:06d}" for f in range(frames))
    rows.setdefault("video", []).extend([name] * frames)
    rows.setdefault("frame", []).extend(range(frames))
    rows.setdefault("betas", []).append(np.repeat(video.betas[None], frames, 0))
    for key in ("global_orient", "body_pose", "transl"):
        rows.setdefault(key, []).append(getattr(video, key))
    rows.setdefault("joints", []).append(video.joints3d)


def _truth_table(rows: dict[str, list]) -> pa.Table:
    n = len(rows["id"])
    arrays = {k: np.concatenate(rows[k]) for k in ("betas", "global_orient", "body_pose", "transl", "joints")}
    return to_table(SMPL_PARAMS, {"id": rows["id"], "video": rows["video"], "track": [0] * n, "frame": rows["frame"],
                                  **arrays})
