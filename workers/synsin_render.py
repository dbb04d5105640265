"""``dl3d synsin render``: novel views of every source image along a trajectory, from a SynSin checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import torch

from dl3d.data import DataError, JobOutput, arrow_to_tensor, read_table, to_table
from dl3d.data.view_tables import IMAGES, SYNSIN_RENDER
from dl3d.workers.base import ShardTask, ShardWorker
from dl3d.workers.checkpoints import check_checkpoint, read_checkpoint_file
from dl3d.workers.synsin_config import SynSinRenderConfig

def load_render_checkpoint(url: str) -> dict:
    """A SynSin checkpoint dict from a training checkpoint folder (``state.pt`` + ``train.json``, as
    ``dl3d train synsin`` writes) or a SynSin ``.pt`` file, at any fsspec URL."""
    kind, ckpt = read_checkpoint_file(url, "SynSin checkpoint")
    if kind == "training":
        from dl3d.synsin.family import synsin_checkpoint_from_training

        return synsin_checkpoint_from_training(ckpt)
    return ckpt


class SynSinRenderWorker(ShardWorker):
    """Renders every requested view of every image of an ``images`` shard."""

    config_cls = SynSinRenderConfig
    job_kind = "synsin_render"

    @classmethod
    def preflight(cls, config: SynSinRenderConfig) -> None:
        check_checkpoint(config.checkpoint, "synsin", "SynSin checkpoint")

    def setup(self) -> None:
        from dl3d.synsin import load_synsin_checkpoint
        from dl3d.synsin.trajectory import trajectory

        models = load_synsin_checkpoint(load_render_checkpoint(self.config.checkpoint), device=self.device,
                                        with_discriminator=False)
        self.model = models["generator"].eval()
        self.cfg = models["config"]
        c = self.config
        self.poses = None if c.trajectory == "explicit" else trajectory(c.trajectory, c.steps, c.magnitude, c.pivot_depth)

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        from dl3d.data.images import decode_image, resize_image

        src = task.shard.url
        table = read_table(src, IMAGES)
        if self.poses is None and "target_poses" not in table.column_names:
            raise DataError(src, "trajectory 'explicit' needs a 'target_poses' column of (T, 4, 4) poses per row")
        h, w = self.cfg.image_height, self.cfg.image_width
        rows: dict[str, list] = {c.name: [] for c in SYNSIN_RENDER.columns}
        batch: list[tuple[int, str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        ids = [str(i) for i in table.column("id").to_pylist()]
        for i, source_id in enumerate(ids):
            poses = self._poses(table, i, src)
            where = f"{src} row {i} (id {source_id!r})"
            try:
                data = table.column("image")[i].as_py()
                if not data:
                    raise DataError(where, "no image bytes")
                img = decode_image(data, where)
            except DataError as exc:
                self._add_rows(rows, source_id, poses, None, "bad_image", str(exc))
                continue
            K = self._intrinsics(table, i, img.shape[1], img.shape[0], src)
            K_model = K.clone()
            K_model[0] *= w / img.shape[1]
            K_model[1] *= h / img.shape[0]
            x = torch.from_numpy(np.array(resize_image(img, (w, h)) if img.shape[:2] != (h, w) else img))
            batch.append((i, source_id, x.permute(2, 0, 1).float() / 255, K_model, poses))
            if len(batch) == self.config.batch_size:
                self._render(batch, rows, task, out)
                batch = []
        if batch:
            self._render(batch, rows, task, out)
        out.write_part(task.shard.index, to_table(SYNSIN_RENDER, rows))
        return len(rows["id"])

    def _render(self, batch, rows, task: ShardTask, out: JobOutput) -> None:
        from dl3d.data.images import encode_png

        with torch.inference_mode():
            groups: dict[int, list] = {}
            for item in batch:  # explicit trajectories may differ in length: group by T
                groups.setdefault(item[4].shape[0], []).append(item)
            for items in groups.values():
                imgs = torch.stack([it[2] for it in items]).to(self.device)
                Ks = torch.stack([it[3] for it in items]).to(self.device)
                poses = torch.stack([it[4] for it in items]).to(self.device)
                views = self.model.synthesize(imgs, Ks, poses).clamp(0, 1).cpu()
                for (row, source_id, _, _, pose), frames in zip(items, views):
                    paths = []
                    for t, frame in enumerate(frames):
                        rel = f"views/part-{task.shard.index:05d}/{row:06d}_{t:03d}.png"
                        out.write_file(rel, encode_png(frame.permute(1, 2, 0).numpy()))
                        paths.append(rel)
                    if self.config.gif:
                        out.write_file(f"gifs/part-{task.shard.index:05d}/{row:06d}.gif", _gif(frames))
                    self._add_rows(rows, source_id, pose, paths, "ok", None)

    def _poses(self, table: pa.Table, i: int, src: str) -> torch.Tensor:
        if self.poses is not None:
            return self.poses
        poses = arrow_to_tensor(table.column("target_poses").slice(i, 1), (None, 4, 4), name="target_poses", source=src)
        return torch.from_numpy(poses[0])

    @staticmethod
    def _intrinsics(table: pa.Table, i: int, width: int, height: int, src: str) -> torch.Tensor:
        if "intrinsics" in table.column_names and table.column("intrinsics")[i].is_valid:
            K = arrow_to_tensor(table.column("intrinsics").slice(i, 1), (3, 3), name="intrinsics", source=src)[0]
            return torch.from_numpy(K.copy())
        return torch.tensor([[float(width), 0, width / 2], [0, float(width), height / 2], [0, 0, 1]])

    @staticmethod
    def _add_rows(rows, source_id: str, poses: torch.Tensor, paths, status: str, error: str | None) -> None:
        for t in range(poses.shape[0]):
            rows["id"].append(f"{source_id}/{t:03d}")
            rows["source_id"].append(source_id)
            rows["view"].append(t)
            rows["pose"].append(poses[t].tolist())
            rows["image_path"].append(paths[t] if paths else None)
            rows["status"].append(status)
            rows["error"].append(error)


def _gif(frames: torch.Tensor) -> bytes:
    from PIL import Image

    images = [Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:] + images[-2:0:-1], duration=80, loop=0)
    return buf.getvalue()
