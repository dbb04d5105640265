"""Synthetic ``smpl_params`` datasets: smooth random body motions, one video per sequence of rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dl3d.config import opt
from dl3d.data import DatasetWriter, to_table
from dl3d.data.smpl_tables import SMPL_PARAMS


@dataclass
class SmplParamsSpec:
    """What ``dl3d data make smpl-params`` generates."""

    videos: int = opt(8, "number of videos (motion sequences)")
    frames: int = opt(50, "frames per video")
    shards: int = opt(4, "number of Parquet shards; a video never straddles two")
    num_betas: int = opt(10, "shape coefficients per row")
    seed: int = opt(0, "random seed")

    def __post_init__(self):
        for name in ("videos", "frames", "shards", "num_betas"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def smooth_motion(rng: np.random.Generator, frames: int, num_betas: int, fps: float = 30.0) -> dict[str, np.ndarray]:
    """One person's motion: fixed shape, poses that are sums of slow sinusoids.

    Returns betas (F, B), global_orient (F, 3), body_pose (F, 69) axis-angle radians, transl (F, 3) metres.
    """
    t = np.arange(frames, dtype=np.float64)[:, None] / fps
    amp = rng.uniform(0.0, 0.35, size=(1, 69))
    freq = rng.uniform(0.2, 1.2, size=(1, 69))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 69))
    body_pose = rng.normal(0, 0.1, size=(1, 69)) + amp * np.sin(2 * np.pi * freq * t + phase)
    yaw = rng.uniform(-np.pi, np.pi) + 0.3 * np.sin(2 * np.pi * 0.1 * t[:, 0])
    global_orient = np.stack([np.zeros(frames), yaw, np.zeros(frames)], 1)  # upright (y up), turning
    transl = np.stack([0.3 * np.sin(0.5 * t[:, 0]), np.zeros(frames), 4.0 + 0.5 * np.cos(0.3 * t[:, 0])], 1)
    betas = np.repeat(rng.normal(0, 1, size=(1, num_betas)), frames, axis=0)
    return {"betas": betas, "global_orient": global_orient, "body_pose": body_pose, "transl": transl}


def write_smpl_params_dataset(url: str, spec: SmplParamsSpec) -> dict:
    """Write a synthetic ``smpl_params`` dataset to ``url`` and return its ``_dataset.json`` content."""
    rng = np.random.default_rng(spec.seed)
    writer = DatasetWriter(url, SMPL_PARAMS, produced_by={"generator": "dl3d data make smpl-params",
                                                          "spec": spec.__dict__, "synthetic": True})
    per_shard = np.array_split(np.arange(spec.videos), min(spec.shards, spec.videos))
    for shard, videos in enumerate(per_shard):
        cols: dict[str, list] = {k: [] for k in ("id", "video", "frame", "betas", "global_orient", "body_pose", "transl")}
        for v in videos:
            m = smooth_motion(rng, spec.frames, spec.num_betas)
            cols["id"] += [f"v{v:04d}_f{f:05d}" for f in range(spec.frames)]
            cols["video"] += [f"v{v:04d}"] * spec.frames
            cols["frame"] += list(range(spec.frames))
            for k in ("betas", "global_orient", "body_pose", "transl"):
                cols[k].append(m[k])
        for k in ("betas", "global_orient", "body_pose", "transl"):
            cols[k] = np.concatenate(cols[k])
        writer.write_shard(shard, to_table(SMPL_PARAMS, cols))
    return writer.close()
