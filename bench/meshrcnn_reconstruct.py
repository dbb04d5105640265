"""Throughput of ``dl3d meshrcnn reconstruct``, 1 worker vs N workers, in one run: images/s and the ratio.

    python bench/meshrcnn_reconstruct.py [--images 1024] [--shards 8] [--workers 2] [--checkpoint CKPT]
                                         [--preset cpu-small|rcnn]

Input: rendered shapes images (``dl3d data make shapes``, stored as an ``images`` dataset with their K).
Without ``--checkpoint`` an untrained checkpoint of ``--preset`` is written (rcnn at 64 px, 5 classes;
the job's plumbing, not its accuracy, is measured). Each worker gets one CPU (one torch thread), so on
an N-core box the ideal ratio is N; worker start-up (model load) is included. An untimed warm-up run
goes first (``bench/scaling.py``), so the 1-worker run does not alone pay the machine's cold costs.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402

from dl3d.jobs.ray_env import ensure_ray  # noqa: E402
from dl3d.data import DatasetWriter, tensor_to_arrow  # noqa: E402
from dl3d.data.images import encode_png  # noqa: E402
from dl3d.data.view_tables import IMAGES  # noqa: E402
from scaling import worker_scaling  # noqa: E402  (bench/scaling.py)
from dl3d.meshrcnn import MESHRCNN_PRESETS, build_meshrcnn  # noqa: E402
from dl3d.meshrcnn.checkpoint import meshrcnn_checkpoint  # noqa: E402
from dl3d.synthetic.shapes import KINDS, ShapesSpec, render_shapes_image  # noqa: E402
from dl3d.workers.meshrcnn_config import MeshRCNNReconstructConfig  # noqa: E402
from dl3d.workers.meshrcnn_reconstruct import MeshRCNNReconstructWorker  # noqa: E402


def write_images(url: str, images: int, shards: int, size: int, max_objects: int) -> None:
    spec = ShapesSpec(images=images, image_size=size, shards=shards, max_objects=max_objects, seed=7)
    writer = DatasetWriter(url, IMAGES, produced_by={"bench": "meshrcnn_reconstruct"})
    for s, idx in enumerate(np.array_split(np.arange(images), shards)):
        rows = [render_shapes_image(int(i), spec) for i in idx]
        writer.write_shard(s, pa.table({
            "id": [f"img{i:05d}" for i in idx], "image": pa.array([encode_png(r["image"]) for r in rows], pa.binary()),
            "intrinsics": tensor_to_arrow(np.stack([r["K"] for r in rows]).astype(np.float32)),
        }, schema=IMAGES.arrow_schema(["id", "image", "intrinsics"])))
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="workers in the second run")
    ap.add_argument("--checkpoint", default=None, help="a Mesh R-CNN checkpoint (default: an untrained --preset)")
    ap.add_argument("--preset", default="cpu-small", choices=["cpu-small", "rcnn"])
    ap.add_argument("--ray-address", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_images(f"{tmp}/imgs", args.images, args.shards, 64, 1 if args.preset == "cpu-small" else 3)
        ckpt = args.checkpoint
        if ckpt is None:
            over = dict(min_size=64, max_size=64, num_classes=len(KINDS)) if args.preset == "rcnn" else {}
            cfg = MESHRCNN_PRESETS[args.preset].replace(**over)
            torch.manual_seed(0)
            ckpt = f"{tmp}/model.pt"
            torch.save(meshrcnn_checkpoint(build_meshrcnn(cfg), cfg, categories=list(KINDS)), ckpt)
        ensure_ray(args.ray_address, num_cpus=max(args.workers, 1) + 1)
        job = MeshRCNNReconstructConfig(checkpoint=ckpt, score_threshold=0.5)
        worker_scaling(MeshRCNNReconstructWorker, job, f"{tmp}/imgs", f"{tmp}/out", args.workers, "images",
                       count=lambda report: args.images, detail=lambda report: f" ({report.rows} rows)", digits=2)
        ray.shutdown()


if __name__ == "__main__":
    main()
