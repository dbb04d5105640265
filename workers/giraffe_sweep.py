"""``dl3d giraffe sweep``: controllable render sweeps of a trained GIRAFFE generator over a plan dataset.

Each input row (``giraffe_plan``: id, program, seed, frames[, controls]) is one sample: its frames are
the program's scene controls (``dl3d.giraffe.programs``), rendered in eval mode with the checkpoint's EMA
generator. Per shard: ``part-NNNNN.parquet`` (``GIRAFFE_SWEEP``: one row per frame), PNG frames under
``frames/``, with ``--alpha`` one grey PNG per object and frame under ``alpha/`` (its opacity rendered
alone, upsampled bilinearly from the feature resolution to the image size), and one GIF per sample under
``gifs/``. Every random number of a sample comes from its seed (CPU generator), so a retried shard writes
the same bytes. A row whose program or controls are invalid gets status ``bad_plan`` on each of its frames.
"""

from __future__ import annotations

import io
import json

import numpy as np
import torch
import torch.nn.functional as F

from dl3d.data import DataError, JobOutput, read_table, to_table
from dl3d.data.giraffe_tables import GIRAFFE_PLAN, GIRAFFE_SWEEP
from dl3d.workers.base import ShardTask, ShardWorker
from dl3d.workers.checkpoints import check_checkpoint, read_checkpoint_file
from dl3d.workers.giraffe_config import GiraffeSweepConfig


WHAT = "GIRAFFE checkpoint"


def load_sweep_checkpoint(url: str) -> dict:
    """The training checkpoint dict at ``url``; ValueError naming the file when it is corrupt or not GIRAFFE's.

    Raises:
        FileNotFoundError: no checkpoint there (the message names the missing file).
        ValueError: unreadable, or written by another family.
    """
    check_checkpoint(url, "giraffe", WHAT, folder_only=True)
    return read_checkpoint_file(url, WHAT)[1]


class GiraffeSweepWorker(ShardWorker):
    """Renders every sample of a ``giraffe_plan`` shard."""

    config_cls = GiraffeSweepConfig
    job_kind = "giraffe_sweep"

    @classmethod
    def preflight(cls, config: GiraffeSweepConfig) -> None:
        check_checkpoint(config.checkpoint, "giraffe", WHAT, folder_only=True)

    def setup(self) -> None:
        from dl3d.giraffe.family import load_giraffe_generator

        self.generator, self.cfg = load_giraffe_generator(load_sweep_checkpoint(self.config.checkpoint), self.device,
                                                          use_ema=self.config.use_ema)

    def run_shard(self, task: ShardTask, out: JobOutput) -> int:
        from dl3d.giraffe.programs import program_scene

        src = task.shard.url
        table = read_table(src, GIRAFFE_PLAN)
        rows: dict[str, list] = {k: [] for k in GIRAFFE_SWEEP.by_name}
        has_controls = "controls" in table.column_names
        for i, plan in enumerate(table.to_pylist()):
            sample, frames = str(plan["id"]), plan["frames"]
            where = f"{src} row {i} (id {sample!r})"
            if frames is None or plan["seed"] is None or not plan["program"]:
                raise DataError(src, f"row {i}: program, seed and frames must not be null")
            try:
                scene = program_scene(self.cfg, plan["program"], int(frames), int(plan["seed"]),
                                      plan["controls"] if has_controls else None)
            except ValueError as exc:
                for f in range(max(int(frames), 1)):
                    self._add(rows, sample, f, plan, {}, None, None, "bad_plan", f"{where}: {exc}")
                continue
            images, alphas = self._render(scene)
            part = f"part-{task.shard.index:05d}"
            for f in range(int(frames)):
                image_path = f"frames/{part}/{i:06d}_{f:03d}.png"
                out.write_file(image_path, _png(images[f]))
                alpha_paths = None
                if self.config.alpha:
                    alpha_paths = []
                    for k in range(alphas.shape[1]):
                        path = f"alpha/{part}/{i:06d}_{f:03d}_obj{k}.png"
                        out.write_file(path, _png(alphas[f, k]))
                        alpha_paths.append(path)
                self._add(rows, sample, f, plan, scene["controls"][f], image_path, alpha_paths, "ok", None)
            if self.config.gif:
                out.write_file(f"gifs/{part}/{i:06d}.gif", _gif(images))
        out.write_part(task.shard.index, to_table(GIRAFFE_SWEEP, rows))
        return len(rows["id"])

    def _render(self, scene: dict) -> tuple[np.ndarray, np.ndarray]:
        """(F, S, S, 3) uint8 frames and (F, K, S, S) uint8 object opacities of one sample."""
        dev, bs = self.device, self.config.batch_size
        n = scene["camera"].shape[0]
        size = self.cfg.image_size
        imgs, alphas = [], []
        with torch.inference_mode():
            for a in range(0, n, bs):
                sl = slice(a, min(a + bs, n))
                part = {"latents": tuple(z[sl].to(dev) for z in scene["latents"]), "camera": scene["camera"][sl].to(dev),
                        "boxes": tuple(x[sl].to(dev) for x in scene["boxes"]), "bg_rotation": scene["bg_rotation"][sl].to(dev),
                        "existence": None if scene["existence"] is None else scene["existence"][sl].to(dev)}
                out = self.generator.render(**part, mode="eval", return_alpha=self.config.alpha,
                                            only_background=scene["only_background"])
                imgs.append(out.image.clamp(0, 1).permute(0, 2, 3, 1).cpu())
                if self.config.alpha:
                    al = out.alpha
                    if al.shape[1]:
                        al = F.interpolate(al, size=(size, size), mode="bilinear", align_corners=False)
                    else:
                        al = al.new_zeros(al.shape[0], 0, size, size)
                    alphas.append(al.clamp(0, 1).cpu())
        to8 = lambda x: (x.numpy() * 255).round().astype(np.uint8)  # noqa: E731
        return to8(torch.cat(imgs)), (to8(torch.cat(alphas)) if alphas else np.zeros((n, 0, size, size), np.uint8))

    @staticmethod
    def _add(rows, sample, frame, plan, controls, image_path, alpha_paths, status, error) -> None:
        rows["id"].append(f"{sample}/{frame:03d}")
        rows["sample_id"].append(sample)
        rows["frame"].append(frame)
        rows["program"].append(plan["program"])
        rows["seed"].append(plan["seed"])
        rows["controls"].append(json.dumps(controls, sort_keys=True))
        rows["image_path"].append(image_path)
        rows["alpha_paths"].append(alpha_paths)
        rows["status"].append(status)
        rows["error"].append(error)


def _png(arr: np.ndarray) -> bytes:
    """PNG bytes of (H, W, 3) RGB or (H, W) grey uint8 (deterministic: fixed zlib level, no metadata)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _gif(frames: np.ndarray) -> bytes:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buf.getvalue()


def write_plan(url: str, spec) -> dict:
    """A ``giraffe_plan`` dataset of ``spec`` (``GiraffePlanSpec``) at ``url``; returns its ``_dataset.json``."""
    import dataclasses

    from dl3d.data import DatasetWriter
    from dl3d.giraffe.programs import PROGRAMS

    if spec.program not in PROGRAMS or spec.program == "explicit":
        raise ValueError(f"program must be one of {', '.join(p for p in PROGRAMS if p != 'explicit')} "
                         f"(explicit controls need a plan dataset of your own), got {spec.program!r}")
    writer = DatasetWriter(url, GIRAFFE_PLAN, produced_by={"generator": "dl3d giraffe plan",
                                                           "spec": dataclasses.asdict(spec)})
    for shard, idx in enumerate(np.array_split(np.arange(spec.samples), spec.shards)):
        writer.write_shard(shard, to_table(GIRAFFE_PLAN, {
            "id": [f"{spec.program}-{i:05d}" for i in idx], "program": [spec.program] * len(idx),
            "seed": [spec.seed * 1_000_003 + int(i) for i in idx], "frames": [spec.frames] * len(idx)}))
    return writer.close()


__all__ = ["GiraffeSweepWorker", "load_sweep_checkpoint", "write_plan"]
