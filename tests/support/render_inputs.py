"""Small inputs for the SynSin render job: an images dataset and an untrained cpu-small checkpoint."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dl3d.data import DatasetWriter, tensor_to_arrow
from dl3d.data.images import encode_png
from dl3d.data.view_tables import IMAGES


def write_images_dataset(url: str, shards: int = 2, per_shard: int = 2, size: int = 32, seed: int = 0) -> int:
    """Smooth random colour images with intrinsics; returns the number of images."""
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(url, IMAGES, produced_by={"test": True})
    for s in range(shards):
        yy, xx = np.mgrid[0:size, 0:size] / size
        imgs = [np.stack([np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + rng.uniform(0, 6)), xx * yy], -1) * 0.5 + 0.5
                for _ in range(per_shard)]
        K = np.tile(np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float32), (per_shard, 1, 1))
        writer.write_shard(s, pa.table({
            "id": [f"img{s}_{i}" for i in range(per_shard)],
            "image": pa.array([encode_png(im) for im in imgs], pa.binary()),
            "width": pa.array([size] * per_shard, pa.int64()), "height": pa.array([size] * per_shard, pa.int64()),
            "intrinsics": tensor_to_arrow(K),
        }, schema=IMAGES.arrow_schema(["id", "image", "width", "height", "intrinsics"])))
    writer.close()
    return shards * per_shard


def write_untrained_checkpoint(path: str, seed: int = 0) -> str:
    """An untrained cpu-small SynSin checkpoint (the render job's plumbing, not its quality, is under test)."""
    import torch

    from dl3d.synsin import SYNSIN_PRESETS, build_synsin, synsin_checkpoint

    torch.manual_seed(seed)
    models = build_synsin(SYNSIN_PRESETS["cpu-small"], load_perceptual=False)
    torch.save(synsin_checkpoint(models, step=0), path)
    return path
