"""Mesh R-CNN ``cpu-small`` learning on rendered shapes through the real driver, for a fixed budget.

    python bench/meshrcnn_training.py [--steps 6500 | --minutes M] [--chunk 1000] [--images 8000]
                                      [--eval-images 64] [--workers 1] [--out meshrcnn_bench]
                                      [--voxel-only-steps V]   # a scaled-down schedule, not the preset's
                                      [--set FIELD=VALUE ...]  # a variant of cpu-small's config

Data: `dl3d data make shapes` (one solid per 64 px image; rendered on every core, outside the training
budget), a separate held-out set. 8000 training images, not 1000: on 1000 the refiner gained 12 F1@0.3
points over its cubified voxels on training images and 3 on held-out ones. Training runs
through ``dl3d.jobs.train.run_training``: by default one run of cpu-small's schedule (6500 steps: 3000
voxel-only, then everything, the learning rate decaying over the last 1200; about 20 minutes on an idle
2-core machine; the same training on a loaded one, only slower), evaluated every ``--chunk`` steps;
``--steps N`` runs N steps of that schedule instead; with ``--minutes`` (and no ``--steps``),
chunks of ``--chunk`` steps (each resumes the run and ends with an evaluation) until the budget is
spent. Reported from the last evaluation on the held-out images: F1@0.3 (and chamfer) of the refined
meshes, of the sphere in the GT box (``sphere_``) and of the model's own cubified voxels
(``cubified_``), voxel IoU; and the mean step time of the voxel-only and of the full steps.
``--out`` receives the trained checkpoint folder (``checkpoint/``), the figures (``figures.json``) and
a PNG of held-out images with the predicted mesh rendered beside the ground truth (same camera).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
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


def _figures(result, args, cfg, train_min: float) -> dict:
    last = [r for r in result.metrics if r.get("eval_f1@0.3") not in (None, "")][-1]
    ev = {k.removeprefix("eval_"): float(v) for k, v in last.items() if k.startswith("eval_") and v not in (None, "")}
    rows = [r for r in result.metrics if r.get("step_s") not in (None, "")]
    vox = [float(r["step_s"]) for r in rows if int(r["step"]) <= cfg.voxel_only_iters]
    full = [float(r["step_s"]) for r in rows if int(r["step"]) > cfg.voxel_only_iters]
    f1, sph, cub, iou = ev["f1@0.3"], ev["sphere_f1@0.3"], ev["cubified_f1@0.3"], ev["voxel_iou"]
    return {"steps": result.final_step, "evaluated_at_step": int(last["step"]), "batch_size": args.batch_size,
            "workers": result.workers, "train_images": args.images, "eval_images": args.eval_images,
            "train_minutes": round(train_min, 2), "cpu_count": os.cpu_count(),
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
            "mean_step_s_voxel_only": round(sum(vox) / len(vox), 4) if vox else None,
            "mean_step_s_full": round(sum(full) / len(full), 4) if full else None,
            "preset": "cpu-small", "overrides": args.set, "voxel_only_iters": cfg.voxel_only_iters, "eval": ev,
            "met": bool(f1 >= sph + 10 and f1 >= cub + 10 and iou > 0.5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None,
                    help="train exactly this many steps (default: the end of cpu-small's learning-rate decay, 6500)")
    ap.add_argument("--minutes", type=float, default=None, help="a training time budget instead of --steps")
    ap.add_argument("--chunk", type=int, default=1000, help="steps between evaluations")
    ap.add_argument("--images", type=int, default=8000)
    ap.add_argument("--eval-images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--voxel-only-steps", type=int, default=None,
                    help="override cpu-small's voxel_only_iters (only for a scaled-down run; default: the preset's)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a cpu-small config value for a variant run (e.g. num_samples=5000); repeatable")
    ap.add_argument("--out", default="meshrcnn_bench", help="folder for checkpoint/, figures.json and the PNG")
    args = ap.parse_args()
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"--steps must be >= 1, got {args.steps}")
    os.makedirs(args.out, exist_ok=True)
    from dl3d.meshrcnn.config import MESHRCNN_PRESETS

    cfg = MESHRCNN_PRESETS["cpu-small"]
    if args.voxel_only_steps is not None:
        cfg = cfg.replace(voxel_only_iters=args.voxel_only_steps)
    overrides = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in args.set)}
    if overrides:
        cfg = cfg.replace(**overrides)
        print(f"cpu-small with {overrides}", flush=True)
    if args.steps is None and args.minutes is None:
        args.steps = cfg.lr_decay_start + cfg.lr_decay_steps if cfg.lr_decay_steps else 3000
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_shapes_dataset(f"{tmp}/train", ShapesSpec(images=args.images, image_size=64, shards=8, seed=0),
                             processes=os.cpu_count() or 1)
        write_shapes_dataset(f"{tmp}/eval", ShapesSpec(images=args.eval_images, image_size=64, shards=1, seed=1))
        print(f"data: {time.perf_counter() - t0:.1f} s", flush=True)
        ray.init(address="local", num_cpus=max(4, args.workers + 2), include_dashboard=False)
        t0, steps, result = time.perf_counter(), 0, None
        while (steps < args.steps) if args.steps is not None else (time.perf_counter() - t0 < args.minutes * 60):
            steps = args.steps if args.steps is not None else steps + args.chunk
            result = run_training("meshrcnn", TrainConfig(
                data=f"{tmp}/train", eval_data=f"{tmp}/eval", storage=f"{tmp}/runs", name="bench", preset="cpu-small",
                steps=steps, batch_size=args.batch_size, workers=args.workers, eval_every=args.chunk,
                checkpoint_every=args.chunk, log_every=50), cfg)
            for r in result.metrics:
                if r.get("eval_f1@0.3") not in (None, "") and (args.steps is not None or int(r["step"]) > steps - args.chunk):
                    print(f"[step {r['step']}] held-out F1@0.3: model {float(r['eval_f1@0.3']):.1f}, sphere in GT box "
                          f"{float(r['eval_sphere_f1@0.3']):.1f}, own cubified voxels "
                          f"{float(r['eval_cubified_f1@0.3']):.1f}; voxel IoU {float(r['eval_voxel_iou']):.3f}", flush=True)
        ray.shutdown()
        fig = _figures(result, args, cfg, (time.perf_counter() - t0) / 60)
        ev = fig["eval"]
        f1, sph, cub = ev["f1@0.3"], ev["sphere_f1@0.3"], ev["cubified_f1@0.3"]
        print(f"\n{fig['steps']} steps of cpu-small (batch {args.batch_size}, {fig['workers']} worker(s), "
              f"{args.images} training images) in {fig['train_minutes']:.1f} min on {os.cpu_count()} cores "
              f"(1-min load average at the end {fig['load_avg_1min_at_end']}); mean step: voxel-only "
              f"{fig['mean_step_s_voxel_only']} s, full {fig['mean_step_s_full']} s")
        print(f"held-out ({args.eval_images} images) F1@0.3: model {f1:.1f} | sphere in GT box {sph:.1f} "
              f"({f1 - sph:+.1f}) | own cubified voxels {cub:.1f} ({f1 - cub:+.1f})")
        print(f"chamfer-L2 (GT box edge 10): model {ev['chamfer_l2']:.3f}, sphere {ev['sphere_chamfer_l2']:.3f}, "
              f"cubified {ev['cubified_chamfer_l2']:.3f}; voxel IoU {ev['voxel_iou']:.3f}")
        print("acceptance (F1 >= sphere + 10 and >= cubified + 10, IoU > 0.5): " + ("met" if fig["met"] else "NOT met"))
        ckpt = os.path.join(args.out, "checkpoint")
        shutil.rmtree(ckpt, ignore_errors=True)
        shutil.copytree(result.checkpoint, ckpt)
        with open(os.path.join(args.out, "figures.json"), "w") as f:
            json.dump(fig, f, indent=1)
        png = os.path.join(args.out, "meshrcnn_training.png")
        render_comparison(ckpt, f"{tmp}/eval", png)
        print(f"wrote {ckpt}/, {args.out}/figures.json and {png} (columns: input, predicted mesh, ground truth)")


if __name__ == "__main__":
    main()
