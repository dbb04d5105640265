"""``dl3d smpl render``: the fitted bodies drawn over the original frames, one MP4 per video.

Input: a ``dl3d smpl fit`` output (its shards are the units of work); ``--videos``: the ``videos``
dataset the keypoints were detected in (frames are streamed from it). For each video of a fit
shard the worker decodes the frames, poses the body model with each frame's fitted parameters,
renders the meshes with pytorch3d through the fit's own camera (focal length and principal point)
and blends them over the frame; with ``--side-view`` the same meshes, turned 90 degrees about the
vertical through the pelvis, are drawn on grey to the right. Frames are encoded with PyAV (H.264).

Output per shard: ``renders/part-NNNNN/VVV.mp4`` and an index table, one row per video, that
accounts for every frame: ``frames`` = ``drawn`` (a mesh drawn) + ``not_fitted`` (the fit row's
status was not ok: the frame is kept as it is) + ``no_fit_row`` (no fit row for that frame).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from dl3d.data import JobOutput, arrow_to_tensor, list_shards, read_table, to_table
from dl3d.data.smpl_tables import SMPL_FIT, SMPL_RENDER
from dl3d.data.video_tables import VIDEOS
from dl3d.video.rows import VideoRow, decode_videos_table
from dl3d.workers.base import ShardTask, ShardWorker
from dl3d.workers.video_config import SmplRenderConfig

SIDE_BACKGROUND = 96
"""Grey level of the side-view panel."""


def _video_index(url: str) -> dict[str, tuple[str, int]]:
    """Video id -> (shard URL, row) over a whole ``videos`` dataset, reading only the id column."""
    index: dict[str, tuple[str, int]] = {}
    for shard in list_shards(url):
        for row, vid in enumerate(read_table(shard.url, None, columns=["id"]).column("id").to_pylist()):
            index[str(vid)] = (shard.url, row)
    return index


class SmplRenderWorker(ShardWorker):
    """Renders every video of a ``smpl_fit`` shard with its fitted meshes."""

    config_cls = SmplRenderConfig
    job_kind = "smpl_render"

    @classmethod
    def preflight(cls, config: SmplRenderConfig) -> None:
        from dl3d.body import read_body_model_arrays

        read_body_model_arrays(config.model)
        list_shards(config.videos)

    def setup(self) -> None:
        from dl3d.body import load_body_model

        self.model = load_body_model(self.config.model, device=self.device)
        self.faces = torch.as_tensor(np.asarray(self.model.faces, dtype=np.int64), device=self.device)
        self.index = _video_index(self.config.videos)

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        src = task.shard.url
        table = read_table(src, SMPL_FIT)
        fit = {
            "video": [str(v) for v in table.column("video").to_pylist()],
            "frame": np.asarray(table.column("frame").to_pylist(), np.int64),
            "status": table.column("status").to_pylist(),
            "betas": arrow_to_tensor(table.column("betas"), (None,), name="betas", source=src),
            "global_orient": arrow_to_tensor(table.column("global_orient"), (3,), name="global_orient", source=src),
            "body_pose": arrow_to_tensor(table.column("body_pose"), (69,), name="body_pose", source=src),
            "transl": arrow_to_tensor(table.column("transl"), (3,), name="transl", source=src),
            "pelvis": arrow_to_tensor(table.column("joints"), (24, 3), name="joints", source=src)[:, 0],
            "focal": np.asarray(table.column("focal_length").to_pylist(), np.float32),
            "pp": arrow_to_tensor(table.column("principal_point"), (2,), name="principal_point", source=src),
        }
        by_video: dict[str, list[int]] = defaultdict(list)
        for i, v in enumerate(fit["video"]):
            by_video[v].append(i)
        rows: dict[str, list] = {c.name: [] for c in SMPL_RENDER.columns}
        for n, (vid, idx) in enumerate(sorted(by_video.items())):
            rel = f"renders/part-{task.shard.index:05d}/{n:03d}.mp4"
            self._render_video(vid, np.asarray(idx), fit, rel, out, rows)
        out.write_part(task.shard.index, to_table(SMPL_RENDER, rows))
        return len(rows["id"])

    def _load_video(self, vid: str) -> VideoRow | None:
        if vid not in self.index:
            return None
        url, row = self.index[vid]
        return decode_videos_table(read_table(url, VIDEOS).slice(row, 1), url)[0]

    def _render_video(self, vid: str, idx: np.ndarray, fit: dict, rel: str, out: JobOutput, rows: dict) -> None:
        from dl3d.video.decode import encode_video, iter_frame_batches
        from dl3d.workers.pose_detect import _decode_errors

        def record(path, counts, fps, status, error):
            for key, value in zip(("id", "video_path", "frames", "drawn", "not_fitted", "no_fit_row", "fps",
                                   "status", "error"), (vid, path, *counts, fps, status, error)):
                rows[key].append(value)

        video = self._load_video(vid)
        if video is None:
            record(None, (0, 0, 0, 0), None, "no_video", f"video {vid!r} is not in {self.config.videos}")
            return
        if not video.usable:
            record(None, (0, 0, 0, 0), video.fps, video.status, video.error)
            return
        per_frame: dict[int, list[int]] = defaultdict(list)
        for i in idx:
            per_frame[int(fit["frame"][i])].append(int(i))
        counts = np.zeros(4, np.int64)  # frames, drawn, not_fitted, no_fit_row
        error: list[str] = []

        def frames():
            start = 0
            try:
                rotation = video.rotation if self.config.upright else 0
                for batch in iter_frame_batches(video.ref, self.config.batch_size, rotation=rotation):
                    yield from self._draw(batch, start, per_frame, fit, counts)
                    start += len(batch)
            except _decode_errors() as exc:
                error.append(f"decoding stopped at frame {start}: {type(exc).__name__}: {exc}")

        fps = video.fps or 30.0
        try:
            data = encode_video(frames(), fps, crf=self.config.crf)
        except ValueError as exc:  # no frame decoded at all
            record(None, tuple(counts), fps, "decode_error", "; ".join(error) or str(exc))
            return
        out.write_file(rel, data)
        record(rel, tuple(counts), fps, "decode_error" if error else "ok", "; ".join(error) or None)

    def _draw(self, batch: np.ndarray, start: int, per_frame: dict, fit: dict, counts: np.ndarray):
        """Frames of ``batch`` (B, H, W, 3) uint8 with their meshes drawn; updates ``counts``."""
        from dl3d.video.overlay import overlay, render_meshes, side_view_vertices
        from dl3d.workers.smpl_export import smpl_forward

        b, h, w = batch.shape[:3]
        rows = [[i for i in per_frame.get(start + k, []) if fit["status"][i] == "ok"] for k in range(b)]
        counts[0] += b
        for k in range(b):
            if rows[k]:
                counts[1] += 1
            elif per_frame.get(start + k):
                counts[2] += 1
            else:
                counts[3] += 1
        drawn = batch.copy()
        side = np.full_like(batch, SIDE_BACKGROUND)
        flat = [i for r in rows for i in r]
        if flat:
            sel = np.asarray(flat)
            _, verts = smpl_forward(self.model, fit["betas"][sel], fit["global_orient"][sel], fit["body_pose"][sel],
                                    fit["transl"][sel], batch_size=1024, vertices=True)
            verts = torch.from_numpy(verts).to(self.device)
            frames_of = np.repeat(np.arange(b), [len(r) for r in rows])
            for k in np.unique(frames_of):  # all tracks of a frame as one mesh, so they occlude each other
                mine = np.flatnonzero(frames_of == k)
                i0 = sel[mine[0]]
                focal, pp = torch.tensor([fit["focal"][i0]]), torch.from_numpy(fit["pp"][i0][None])
                v, f = self._merge(verts[mine])
                rgb, cover = render_meshes(v[None], f, h, w, focal, pp)
                drawn[k] = overlay(batch[k:k + 1], rgb, cover, self.config.alpha)[0]
                if self.config.side_view:
                    centre = torch.from_numpy(fit["pelvis"][sel[mine]].mean(0)).to(self.device)[None]
                    rgb, cover = render_meshes(side_view_vertices(v[None], centre), f, h, w, focal, pp)
                    side[k] = overlay(side[k:k + 1], rgb, cover, 1.0)[0]
        for k in range(b):
            yield np.concatenate([drawn[k], side[k]], axis=1) if self.config.side_view else drawn[k]

    def _merge(self, verts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, V, 3) meshes of one frame -> one mesh: (T V, 3) vertices and (T F, 3) faces."""
        t, v = verts.shape[:2]
        faces = torch.cat([self.faces + j * v for j in range(t)])
        return verts.reshape(t * v, 3), faces

