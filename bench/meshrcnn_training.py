"""Mesh R-CNN ``cpu-small`` learning on rendered shapes through the real driver, for a time budget.

    python bench/meshrcnn_training.py [--minutes 20] [--chunk 100] [--images 400] [--eval-images 32]
                                      [--workers 1] [--png meshrcnn_training.png]

Data: `dl3d data make shapes` (one solid per 64 px image), a separate held-out set. Training runs
through ``dl3d.jobs.train.run_training`` in chunks of ``--chunk`` steps (each chunk resumes the run
and ends with an evaluation on the whole held-out set) until the budget is spent. Reported from the
same evaluation pass on the same held-out images: F1@0.3 (and chamfer) of the refined meshes, of the
sphere in the GT box (``sphere_``) and of the model's own cubified voxels (``cubified_``), voxel IoU.
A PNG shows held-out images with the predicted mesh rendered beside the ground truth (same camera).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402

from dl3d.jobs.train import TrainConfig, run_training  # noqa: E402
from dl3d.synthetic.shapes import ShapesSpec, write_shapes_dataset  # noqa: E402


def render_comparison(checkpoint: str, data: str, path: str, count: int = 6) -> None:
    """Rows of (input image, predicted mesh, GT mesh), both meshes rendered with the image's K."""
    from PIL import Image

    from dl3d.data import list_shards, read_table
    from dl3d.meshrcnn.family import MESHRCNN_FAMILY, meshrcnn_checkpoint_from_training
    from dl3d.meshrcnn.train_step import build_meshrcnn
    from dl3d.synthetic.shapes import render_objects
    from dl3d.train.checkpoint import read_checkpoint

    cfg, state = meshrcnn_checkpoint_from_training(read_checkpoint(checkpoint))
    model = build_meshrcnn(cfg, load_weights=False)
    model.load_state_dict(state)
    model.eval()
    table = read_table(list_shards(data)[0].url, MESHRCNN_FAMILY.schema).slice(0, count)
    batch = MESHRCNN_FAMILY.decode_batch(table, cfg, torch.device("cpu"))
    with torch.no_grad():
        pred = model(batch["images"], batch["K"])["meshes"][-1]
    s, tiles = cfg.image_size, []
    for i in range(table.num_rows):
        K = batch["K"][i].double().numpy()
        light, bg, colour = np.array([1.0, -1.0, 0.0]), np.zeros(3), np.array([0.8, 0.8, 0.8])
        v, f = pred.get_mesh_verts_faces(i)
        p, _ = render_objects([{"verts": v.numpy(), "faces": f.numpy(), "colour": colour}], K, s, light, bg)
        g, _ = render_objects([{"verts": batch["verts"][i].numpy(), "faces": batch["faces"][i].numpy(),
                                "colour": colour}], K, s, light, bg)
        tiles.append(np.concatenate([batch["images"][i].permute(1, 2, 0).numpy(), p, g], axis=1))
    grid = (np.concatenate(tiles, axis=0) * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    ap.add_argument("--chunk", type=int, default=100, help="steps per resumed chunk (each ends with an evaluation)")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--eval-images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--png", default="meshrcnn_training.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_shapes_dataset(f"{tmp}/train", ShapesSpec(images=args.images, image_size=64, shards=4, seed=0))
        write_shapes_dataset(f"{tmp}/eval", ShapesSpec(images=args.eval_images, image_size=64, shards=1, seed=1))
        print(f"data: {time.perf_counter() - t0:.1f} s", flush=True)
        ray.init(num_cpus=max(4, args.workers + 2), include_dashboard=False)
        t0, steps, result = time.perf_counter(), 0, None
        while time.perf_counter() - t0 < args.minutes * 60:
            steps += args.chunk
            result = run_training("meshrcnn", TrainConfig(
                data=f"{tmp}/train", eval_data=f"{tmp}/eval", storage=f"{tmp}/runs", name="bench", preset="cpu-small",
                steps=steps, batch_size=args.batch_size, workers=args.workers, eval_every=args.chunk,
                checkpoint_every=args.chunk, log_every=max(1, args.chunk // 2)))
            last = [r for r in result.metrics if r.get("eval_f1@0.3") not in (None, "")][-1]
            print(f"[{(time.perf_counter() - t0) / 60:.1f} min, step {last['step']}] held-out F1@0.3: model "
                  f"{float(last['eval_f1@0.3']):.1f}, sphere in GT box {float(last['eval_sphere_f1@0.3']):.1f}, "
                  f"own cubified voxels {float(last['eval_cubified_f1@0.3']):.1f}; voxel IoU "
                  f"{float(last['eval_voxel_iou']):.3f}", flush=True)
        ray.shutdown()
        train_min = (time.perf_counter() - t0) / 60
        f1, sph, cub = (float(last[k]) for k in ("eval_f1@0.3", "eval_sphere_f1@0.3", "eval_cubified_f1@0.3"))
        print(f"\n{result.final_step} steps of cpu-small (batch {args.batch_size}, {result.workers} worker(s)) in "
              f"{train_min:.1f} min on {os.cpu_count()} cores")
        print(f"held-out ({args.eval_images} images) F1@0.3: model {f1:.1f} | sphere in GT box {sph:.1f} "
              f"({f1 - sph:+.1f}) | own cubified voxels {cub:.1f} ({f1 - cub:+.1f})")
        print(f"chamfer-L2 (GT box edge 10): model {float(last['eval_chamfer_l2']):.3f}, sphere "
              f"{float(last['eval_sphere_chamfer_l2']):.3f}, cubified {float(last['eval_cubified_chamfer_l2']):.3f}; "
              f"voxel IoU {float(last['eval_voxel_iou']):.3f}")
        print("acceptance (F1 >= sphere + 10 and > cubified, IoU > 0.5): "
              + ("met" if f1 >= sph + 10 and f1 > cub and float(last["eval_voxel_iou"]) > 0.5 else "NOT met"))
        render_comparison(result.checkpoint, f"{tmp}/eval", args.png)
        print(f"wrote {args.png} (columns: input, predicted mesh, ground truth)")


if __name__ == "__main__":
    main()
