"""GIRAFFE ``cpu-small`` learning on generated CLEVR scenes through the real driver (Ray Train, Ray Data,
checkpoints), for a fixed step budget; then held-out KID at step 0 vs the end, a PNG grid of samples and of
their object alphas, and the disentanglement and controllability figures of the trained checkpoint.

    python bench/giraffe_training.py [--steps 3000] [--minutes 0] [--out DIR] [--data DIR]
    python bench/giraffe_training.py --figures-only --checkpoint DIR/runs/bench/step-00003000 [--out DIR]

Data: `dl3d data make clevr` at 32 px with two objects (the preset's n_boxes), 4 shards, the last held out;
written to ``OUT/clevr`` unless ``--data`` names a dataset (written there first if missing). The run lives
in ``OUT/runs/bench`` (every checkpoint kept: re-running resumes it; ``--figures-only`` recomputes the figures from a
checkpoint without training). Training stops at ``--steps`` (the budget that does not depend on the
machine's load; 3000 = what the idle 2-core machine did in 20 minutes) or, with ``--minutes``, at the
first chunk boundary after that time. KID/FID use the seeded random-feature extractor (``kid_randfeat``:
NOT comparable to published KID), computed by the family's own ``evaluate_set`` on every held-out image
against as many EMA generator samples, at step 0 (the initial weights) and at the end.

Figures of the final (EMA) generator in eval mode (no depth jitter, no density noise), on its own samples:

- coverage: the fraction of pixels covered by the objects, ``union = 1 - prod_k (1 - alpha_k)`` of the
  per-object opacities, against the data's object pixel fraction (the union of the held-out truth masks,
  which are hard masks at the output resolution). ``coverage_model`` (the headline, target ratio
  [0.5, 2]) renders the alphas on the OUTPUT pixel grid (32 x 32 rays through the output pixel centres,
  the rays the data masks were rasterised through) with 4x the preset's depth samples, and counts
  ``union > 0.5``: the objects' footprint measured like the masks. The fields are continuous, so this only
  samples the same alpha more finely; the preset's own 16 x 16 / 16-sample alpha (bilinearly upsampled,
  ``coverage_model_feature_grid``) misses the silhouette rays that cross an object between two depth
  samples. Calibration (``coverage_perfect_model*``): the held-out scenes' own primitives, opaque, through
  the model's rays, score 0.98x the data's fraction on the headline measure and 0.79x on the feature grid.
  Soft versions (mean union alpha, no threshold), the areas of alpha > 0.1 and > 0.9 (how hard the object
  alphas are) and the coverage of training-mode renders (depth jitter, density noise) are reported beside.
- background-only renders: mean RGB and per-image std against the data's pixels outside the object masks;
- controllability: ``object_translation_horizontal`` (the last object moves along world y): Spearman rho
  between the commanded value and the moved object's alpha centroid column, median over samples; and the
  mean abs change, between the first and each later frame, of pixels outside the moved object's masks
  (both frames, dilated by 2 px).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dl3d.jobs.ray_env import ensure_ray  # noqa: E402
from dl3d.data import list_shards, read_table  # noqa: E402
from dl3d.data.view_tables import IMAGES  # noqa: E402
from dl3d.giraffe.family import GIRAFFE_FAMILY, decode_batch, eval_generator, evaluate_set  # noqa: E402
from dl3d.giraffe.programs import program_scene  # noqa: E402
from dl3d.synthetic.clevr import ClevrSpec, write_clevr_dataset  # noqa: E402
from dl3d.train.checkpoint import read_checkpoint  # noqa: E402

FINE_DEPTH_FACTOR = 4
"""Depth samples of the coverage alphas: this many times the preset's ``n_samples``."""


def held_out(url: str, cfg):
    """Held-out images (N, 3, S, S) and the union of their truth masks (N, S, S) bool."""
    from PIL import Image

    table = read_table(list_shards(url)[-1].url, IMAGES)
    batch = decode_batch(table, cfg, torch.device("cpu"))["image"]
    masks = []
    for row in table.column("object_masks").to_pylist():
        union = np.zeros((cfg.image_size, cfg.image_size), bool)
        for png in row:
            m = np.asarray(Image.open(io.BytesIO(png)).convert("L").resize((cfg.image_size,) * 2)) > 127
            union |= m
        masks.append(union)
    return batch, torch.from_numpy(np.stack(masks))


def _kid(modules, images, cfg) -> dict:
    with torch.no_grad():
        return evaluate_set(modules, [{"image": images[i:i + 64]} for i in range(0, len(images), 64)], cfg)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def object_alpha(gen, scene: dict, resolution: int, n_samples: int, mode: str = "eval") -> torch.Tensor:
    """(B, K, resolution, resolution) per-object opacity of ``scene`` on a ``resolution``-square ray grid with
    ``n_samples`` depth samples (the same fields; only the sampling differs from the preset's); ``mode``
    "training" adds the training renders' depth jitter and density noise."""
    cfg = gen.cfg
    gen.cfg = cfg.replace(feature_resolution=resolution, n_samples=n_samples)
    try:
        with torch.no_grad():
            return gen.volume_render(**scene, mode=mode, return_alpha=True)[1]
    finally:
        gen.cfg = cfg


def _inside(shape: str, p: torch.Tensor, size: float) -> torch.Tensor:
    if shape == "cube":
        return (p.abs() <= size).all(-1)
    if shape == "sphere":
        return p.norm(dim=-1) <= size
    return (p[..., :2].norm(dim=-1) <= size) & (p[..., 2].abs() <= size)  # cylinder


def perfect_alpha(cfg, spec: ClevrSpec, indices, resolution: int, n_samples: int) -> torch.Tensor:
    """(N, K, r, r) opacity of a PERFECT model: scenes ``indices`` of ``spec`` (their true primitives, opaque)
    rendered by the model's own ray sampler (camera, eval depths) at ``resolution`` with ``n_samples``: what
    the coverage measure gives when the objects are exactly the data's. The metric's calibration."""
    import math

    from dl3d.giraffe.camera import camera_pose, focal_from_fov, pixel_rays
    from dl3d.giraffe.volume import sample_depths, volume_weights
    from dl3d.synthetic.clevr import sample_scene

    pose = camera_pose(torch.zeros(1), torch.tensor([cfg.range_v[0]]), cfg.radius)
    o, d = pixel_rays(resolution, focal_from_fov(cfg.fov), pose)
    depth = sample_depths(*cfg.depth_range, 1, d.shape[1], n_samples, jitter=False)
    pts = o[:, None, None] + depth[..., None] * d[:, :, None]
    out = []
    for i in indices:
        sc = sample_scene(spec, i)
        alphas = []
        for shape, pos, ang in zip(sc.shapes, sc.positions, sc.angles):
            c, si = math.cos(ang), math.sin(ang)
            local = (pts - torch.tensor(pos, dtype=torch.float32)) @ torch.tensor([[c, -si, 0], [si, c, 0], [0, 0, 1.0]])
            sigma = _inside(shape, local, spec.object_size).float() * 1e4
            alphas.append(volume_weights(depth, d.norm(dim=-1, keepdim=True), sigma, last_dist=0.0).sum(-1))
        out.append(torch.stack(alphas).reshape(len(alphas), resolution, resolution))
    return torch.stack(out)


def calibration(data: str, cfg, data_fraction: float) -> dict:
    """Both coverage measures of a perfect model on the held-out scenes (:func:`perfect_alpha`), when ``data``
    was written by ``dl3d data make clevr`` (its spec is in ``_dataset.json``); else {}."""
    from dl3d.data import read_meta

    made = (read_meta(data) or {}).get("produced_by", {})
    if made.get("generator") != "dl3d data make clevr":
        return {}
    spec = ClevrSpec(**made["spec"])
    held = np.array_split(np.arange(spec.scenes), spec.shards)[-1].tolist()
    s = cfg.image_size
    fine = perfect_alpha(cfg, spec, held, s, cfg.n_samples * FINE_DEPTH_FACTOR)
    coarse = perfect_alpha(cfg, spec, held, cfg.feature_resolution, cfg.n_samples)
    coarse = F.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
    cov = float(((1 - (1 - fine).prod(1)) > 0.5).float().mean())
    cov_grid = float(((1 - (1 - coarse).prod(1)) > 0.5).float().mean())
    return {"coverage_perfect_model": cov, "coverage_ratio_perfect_model": cov / max(data_fraction, 1e-9),
            "coverage_perfect_model_feature_grid": cov_grid,
            "coverage_ratio_perfect_model_feature_grid": cov_grid / max(data_fraction, 1e-9)}


def coverage_figures(gen, scene: dict, data_masks: torch.Tensor) -> dict:
    """Object coverage of the (eval) generator on ``scene`` vs the data's object pixel fraction; see the
    module docstring. data_masks: (N, S, S) bool union masks at the output resolution S."""
    cfg = gen.cfg
    s = cfg.image_size
    with torch.no_grad():
        coarse = gen.render(**scene, return_alpha=True).alpha  # (B, K, r, r), the preset's sampling
    up = F.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
    union_coarse = 1 - (1 - up.clamp(0, 1)).prod(1)
    fine = object_alpha(gen, scene, s, cfg.n_samples * FINE_DEPTH_FACTOR)
    union_fine = 1 - (1 - fine.clamp(0, 1)).prod(1)
    torch.manual_seed(11)
    train_union = 1 - (1 - object_alpha(gen, scene, s, cfg.n_samples * FINE_DEPTH_FACTOR, "training")).prod(1)
    data = float(data_masks.float().mean())
    cov = float((union_fine > 0.5).float().mean())
    return {"coverage_model": cov, "object_fraction_data": data, "coverage_ratio": cov / max(data, 1e-9),
            "coverage_model_soft": float(union_fine.mean()),
            "coverage_model_feature_grid": float((union_coarse > 0.5).float().mean()),
            "coverage_model_feature_grid_soft": float(union_coarse.mean()),
            "coverage_ratio_feature_grid": float((union_coarse > 0.5).float().mean()) / max(data, 1e-9),
            "coverage_model_alpha_over_0.1": float((union_fine > 0.1).float().mean()),
            "coverage_model_alpha_over_0.9": float((union_fine > 0.9).float().mean()),
            "coverage_model_training_mode": float((train_union > 0.5).float().mean())}


def figures(gen, cfg, real: torch.Tensor, real_masks: torch.Tensor, n: int = 64) -> dict:
    """Every disentanglement and controllability figure of the eval generator ``gen``."""
    s = cfg.image_size
    torch.manual_seed(7)
    scene = gen.sample_scene(n)
    fig = coverage_figures(gen, scene, real_masks)
    with torch.no_grad():
        bg = gen.render(**scene, only_background=True).image
    outside = real.permute(0, 2, 3, 1)[~real_masks]
    fig.update({"bg_mean_rgb_model": bg.mean((0, 2, 3)).tolist(), "bg_mean_rgb_data": outside.mean(0).tolist(),
                "bg_image_std_model": float(bg.flatten(2).std(-1).mean()),
                "bg_std_data_outside_masks": float(outside.std(0).mean())})
    rhos, changes = [], []
    frames = 8
    for i in range(16):
        sc = program_scene(cfg, "object_translation_horizontal", frames, 1000 + i)
        only = sc.pop("only_background")
        commanded = [c["translation_y"] for c in sc.pop("controls")]
        with torch.no_grad():
            r = gen.render(**sc, only_background=only, return_alpha=True)
        a = F.interpolate(r.alpha[:, -1:], size=(s, s), mode="bilinear", align_corners=False)[:, 0]
        cols = torch.arange(s, dtype=torch.float32)
        mass = a.sum((1, 2))
        if float(mass.min()) < 1.0:  # the moved object is (nearly) invisible in some frame: no centroid
            continue
        centroid = ((a.sum(1) * cols).sum(1) / mass).numpy()
        rhos.append(_spearman(np.array(commanded), centroid))
        moved = F.max_pool2d((a > 0.1).float()[:, None], 5, stride=1, padding=2)[:, 0] > 0
        for f in range(1, frames):
            keep = ~(moved[0] | moved[f])
            if keep.any():
                changes.append(float((r.image[f] - r.image[0]).abs().permute(1, 2, 0)[keep].mean()))
    fig.update(spearman_rho_median=float(np.median(rhos)) if rhos else float("nan"), spearman_samples=len(rhos),
               outside_change_mean=float(np.mean(changes)) if changes else float("nan"))
    return fig


def _grid(rows: list[torch.Tensor], path: str) -> None:
    """Rows of 8 images (8, 3, S, S) each, stacked, enlarged 3x."""
    from PIL import Image

    grid = torch.cat([torch.cat(list(x[:8]), dim=2) for x in rows], dim=1).clamp(0, 1).permute(1, 2, 0).numpy()
    Image.fromarray((grid * 255).round().astype(np.uint8)).resize((grid.shape[1] * 3, grid.shape[0] * 3),
                                                                  Image.Resampling.NEAREST).save(path)


def train(args, data: str) -> tuple[str, int, float]:
    """Train (or resume) ``OUT/runs/bench`` to ``--steps``; returns (latest checkpoint, steps, seconds)."""
    import ray

    from dl3d.jobs.console import console_filter
    from dl3d.jobs.train import TrainConfig, run_training

    ensure_ray(num_cpus=int(args.cpus_per_worker) + 2)  # as quiet as the CLI's: Ray's chatter stays in its logs
    t0 = time.perf_counter()
    steps, result = 0, None
    with console_filter():
        chunk = args.chunk or (args.checkpoint_every if args.minutes else args.steps)
        while steps < args.steps and (not args.minutes or time.perf_counter() - t0 < args.minutes * 60):
            steps = min(steps + chunk, args.steps)
            result = run_training("giraffe", TrainConfig(
                data=data, storage=os.path.join(args.out, "runs"), name="bench", preset="cpu-small", steps=steps,
                batch_size=args.batch_size, workers=1, cpus_per_worker=args.cpus_per_worker, eval_every=0,
                checkpoint_every=args.checkpoint_every, keep_checkpoints=100, log_every=100))
            print(f"  {result.final_step} steps after {time.perf_counter() - t0:.0f} s", flush=True)
    train_s = time.perf_counter() - t0
    ray.shutdown()
    return result.checkpoint, result.final_step, train_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="step budget (the same whatever the machine's load)")
    ap.add_argument("--minutes", type=float, default=0.0, help="also stop after this many minutes (0 = no limit)")
    ap.add_argument("--chunk", type=int, default=0, help="steps per driver invocation (0: one invocation, or one "
                    "per checkpoint with --minutes)")
    ap.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint (all kept) every K steps")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--scenes", type=int, default=512)
    ap.add_argument("--cpus-per-worker", type=float, default=2.0)
    ap.add_argument("--data", default=None, help="reuse this CLEVR dataset (written there first if missing)")
    ap.add_argument("--out", default="giraffe-bench", help="figures, grids, the data and the run (OUT/runs/bench)")
    ap.add_argument("--figures-only", action="store_true", help="no training: figures of --checkpoint")
    ap.add_argument("--checkpoint", default=None, help="with --figures-only: a step-NNNNNNNN folder of the run")
    args = ap.parse_args()
    if args.figures_only and not args.checkpoint:
        ap.error("--figures-only needs --checkpoint")
    os.makedirs(args.out, exist_ok=True)
    cfg = GIRAFFE_FAMILY.config("cpu-small")
    t0 = time.perf_counter()
    data = args.data or os.path.join(args.out, "clevr")
    if not os.path.exists(os.path.join(data, "_dataset.json")):
        write_clevr_dataset(data, ClevrSpec(scenes=args.scenes, image_size=cfg.image_size, shards=4,
                                            min_objects=2, max_objects=2, seed=0))
    data_s = time.perf_counter() - t0
    real, real_masks = held_out(data, cfg)
    kid0 = _kid(GIRAFFE_FAMILY.build(cfg), real, cfg)
    print(f"data: {data} ({data_s:.0f} s); held-out {len(real)} images; step 0: "
          f"kid_randfeat {kid0['kid_randfeat']:.4f}  fid_randfeat {kid0['fid_randfeat']:.2f}", flush=True)
    if args.figures_only:
        checkpoint, train_s = args.checkpoint, float("nan")
    else:
        checkpoint, _, train_s = train(args, data)
    state = read_checkpoint(checkpoint)
    step = int(state.get("step", state.get("meta", {}).get("step", -1)))
    modules = GIRAFFE_FAMILY.build(cfg)
    for k, m in modules.items():
        m.load_state_dict(state["modules"][k])
    kid1 = _kid(modules, real, cfg)
    gen = eval_generator(modules["generator"])
    torch.manual_seed(3)
    scene = gen.sample_scene(16)
    with torch.no_grad():
        fake = gen.render(**scene).image
    alpha = object_alpha(gen, scene, cfg.image_size, cfg.n_samples * FINE_DEPTH_FACTOR)
    union = (1 - (1 - alpha.clamp(0, 1)).prod(1))[:, None].expand(-1, 3, -1, -1)
    masks = real_masks[:16, None].float().expand(-1, 3, -1, -1)
    _grid([fake[:8], union[:8], fake[8:16], union[8:16], real[:8], masks[:8], real[8:16], masks[8:16]],
          os.path.join(args.out, "samples.png"))
    fig = figures(gen, cfg, real, real_masks)
    fig.update(calibration(data, cfg, fig["object_fraction_data"]))
    figs = {"checkpoint": str(checkpoint), "step": step, "train_seconds": round(train_s, 1),
            "batch_size": args.batch_size, "kid_randfeat_step0": kid0["kid_randfeat"],
            "kid_randfeat_end": kid1["kid_randfeat"], "fid_randfeat_step0": kid0["fid_randfeat"],
            "fid_randfeat_end": kid1["fid_randfeat"], **fig}
    with open(os.path.join(args.out, "figures.json"), "w") as f:
        json.dump(figs, f, indent=2)
    print(f"checkpoint {checkpoint}: step {step} (cpu-small, batch {args.batch_size}, 1 worker); "
          f"training {train_s:.0f} s")
    print(f"held-out KID (random features): step 0 {kid0['kid_randfeat']:.4f} -> end {kid1['kid_randfeat']:.5f} "
          f"(x{kid1['kid_randfeat'] / kid0['kid_randfeat']:.4f}); FID (random features) {kid0['fid_randfeat']:.2f} -> "
          f"{kid1['fid_randfeat']:.2f}")
    print(f"object coverage {fig['coverage_model']:.4f} (soft {fig['coverage_model_soft']:.4f}) vs data object "
          f"fraction {fig['object_fraction_data']:.4f}: ratio {fig['coverage_ratio']:.2f}; on the preset's 16x16 "
          f"feature grid {fig['coverage_model_feature_grid']:.4f} (soft {fig['coverage_model_feature_grid_soft']:.4f}, "
          f"ratio {fig['coverage_ratio_feature_grid']:.2f}); alpha > 0.1: {fig['coverage_model_alpha_over_0.1']:.4f}, > 0.9: "
          f"{fig['coverage_model_alpha_over_0.9']:.4f}; training-mode renders (noise, jitter): "
          f"{fig['coverage_model_training_mode']:.4f}")
    if "coverage_perfect_model" in fig:
        print(f"calibration: a perfect model (the held-out scenes' own primitives, opaque, through the model's rays) "
              f"scores {fig['coverage_perfect_model']:.4f} (ratio {fig['coverage_ratio_perfect_model']:.2f}); on the "
              f"feature grid {fig['coverage_perfect_model_feature_grid']:.4f} "
              f"(ratio {fig['coverage_ratio_perfect_model_feature_grid']:.2f})")
    print(f"background-only mean RGB {[round(x, 3) for x in fig['bg_mean_rgb_model']]} vs data "
          f"{[round(x, 3) for x in fig['bg_mean_rgb_data']]}; image std {fig['bg_image_std_model']:.3f} vs data "
          f"outside masks {fig['bg_std_data_outside_masks']:.3f}")
    print(f"controllability: Spearman rho (command vs alpha centroid) median {fig['spearman_rho_median']:.3f} over "
          f"{fig['spearman_samples']} samples; mean abs change outside the moved object {fig['outside_change_mean']:.4f}")
    print(f"grid (rows: generated, its object alpha, generated, alpha, held-out data, its masks, data, masks) and "
          f"figures.json in {args.out}")


if __name__ == "__main__":
    main()
