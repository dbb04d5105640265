"""GIRAFFE ``cpu-small`` learning on generated CLEVR scenes through the real driver (Ray Train, Ray Data,
checkpoints), for a fixed time budget; then held-out KID at step 0 vs the end, a PNG grid of samples, and the
disentanglement and controllability figures of the trained checkpoint.

    python bench/giraffe_training.py [--minutes 20] [--chunk 200] [--scenes 512] [--out DIR]

Data: `dl3d data make clevr` at 32 px with two objects (the preset's n_boxes), 4 shards, the last held out.
Training runs in chunks of ``--chunk`` steps (each chunk is the same command again: the driver resumes) until
the budget is spent. KID/FID use the seeded random-feature extractor (``kid_randfeat``: NOT comparable to
published KID), computed by the family's own ``evaluate_set`` on every held-out image against as many EMA
generator samples, at step 0 (the initial weights) and at the end.

Figures of the final (EMA) generator, all on its own samples:

- coverage: fraction of pixels where the union of the object alphas exceeds 0.5, against the data's
  object pixel fraction (union of the truth masks of the held-out images): ratio in [0.5, 2] is the target;
- background-only renders: mean RGB and per-image std against the data's pixels outside the object masks;
- controllability: ``object_translation_horizontal`` (the last object moves along world y): Spearman rho
  between the commanded value and the moved object's alpha centroid column, median over samples; and the
  mean abs change, between the first and each later frame, of pixels outside the moved object's masks
  (both frames, dilated by 2 px).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dl3d.data import list_shards, read_table  # noqa: E402
from dl3d.data.view_tables import IMAGES  # noqa: E402
from dl3d.giraffe.family import GIRAFFE_FAMILY, decode_batch, eval_generator, evaluate_set  # noqa: E402
from dl3d.giraffe.programs import program_scene  # noqa: E402
from dl3d.jobs.train import TrainConfig, run_training  # noqa: E402
from dl3d.synthetic.clevr import ClevrSpec, write_clevr_dataset  # noqa: E402
from dl3d.train.checkpoint import read_checkpoint  # noqa: E402


def _held_out(url: str, cfg):
    table = read_table(list_shards(url)[-1].url, IMAGES)
    batch = decode_batch(table, cfg, torch.device("cpu"))["image"]
    masks = []
    from PIL import Image
    import io

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


def _figures(gen, cfg, real: torch.Tensor, real_masks: torch.Tensor, n: int = 64) -> dict:
    s = cfg.image_size
    torch.manual_seed(7)
    scene = gen.sample_scene(n)
    with torch.no_grad():
        out = gen.render(**scene, return_alpha=True)
        bg = gen.render(**scene, only_background=True).image
    alpha = F.interpolate(out.alpha, size=(s, s), mode="bilinear", align_corners=False)
    union = 1 - (1 - alpha.clamp(0, 1)).prod(1)
    coverage = float((union > 0.5).float().mean())
    data_fraction = float(real_masks.float().mean())
    outside = real.permute(0, 2, 3, 1)[~real_masks]
    fig = {"coverage_model": coverage, "object_fraction_data": data_fraction,
           "coverage_ratio": coverage / max(data_fraction, 1e-9),
           "bg_mean_rgb_model": bg.mean((0, 2, 3)).tolist(), "bg_mean_rgb_data": outside.mean(0).tolist(),
           "bg_image_std_model": float(bg.flatten(2).std(-1).mean()),
           "bg_std_data_outside_masks": float(outside.std(0).mean())}
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


def _grid(fake: torch.Tensor, real: torch.Tensor, path: str) -> None:
    from PIL import Image

    rows = [torch.cat(list(x), dim=2) for x in (fake[:8], fake[8:16], real[:8], real[8:16])]
    grid = torch.cat(rows, dim=1).clamp(0, 1).permute(1, 2, 0).numpy()
    Image.fromarray((grid * 255).round().astype(np.uint8)).resize((grid.shape[1] * 3, grid.shape[0] * 3),
                                                                  Image.Resampling.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (chunks stop after it)")
    ap.add_argument("--chunk", type=int, default=200, help="steps per driver invocation")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--scenes", type=int, default=512)
    ap.add_argument("--cpus-per-worker", type=float, default=2.0)
    ap.add_argument("--data", default=None, help="reuse this CLEVR dataset (written there first if missing)")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "dl3d-giraffe-training"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cfg = GIRAFFE_FAMILY.config("cpu-small")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = args.data or f"{tmp}/clevr"
        if not os.path.exists(os.path.join(data, "_dataset.json")):
            write_clevr_dataset(data, ClevrSpec(scenes=args.scenes, image_size=cfg.image_size, shards=4,
                                                min_objects=2, max_objects=2, seed=0))
        data_s = time.perf_counter() - t0
        real, real_masks = _held_out(data, cfg)
        start = GIRAFFE_FAMILY.build(cfg)
        kid0 = _kid(start, real, cfg)
        print(f"data: {args.scenes} scenes in {data_s:.0f} s; held-out {len(real)} images; step 0: "
              f"kid_randfeat {kid0['kid_randfeat']:.4f}  fid_randfeat {kid0['fid_randfeat']:.2f}", flush=True)
        ray.init(address="local", num_cpus=int(args.cpus_per_worker) + 2, include_dashboard=False)
        t0 = time.perf_counter()
        steps, result = 0, None
        while time.perf_counter() - t0 < args.minutes * 60:
            steps += args.chunk
            result = run_training("giraffe", TrainConfig(
                data=data, storage=f"{tmp}/runs", name="bench", preset="cpu-small", steps=steps,
                batch_size=args.batch_size, workers=1, cpus_per_worker=args.cpus_per_worker, eval_every=0,
                checkpoint_every=args.chunk, log_every=max(1, args.chunk // 2)))
            print(f"  {result.final_step} steps after {time.perf_counter() - t0:.0f} s", flush=True)
        train_s = time.perf_counter() - t0
        ray.shutdown()
        state = read_checkpoint(result.checkpoint)
        modules = GIRAFFE_FAMILY.build(cfg)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        kid1 = _kid(modules, real, cfg)
        gen = eval_generator(modules["generator"])
        torch.manual_seed(3)
        with torch.no_grad():
            fake = gen(16, mode="eval")
        _grid(fake, real[:16], os.path.join(args.out, "samples.png"))
        fig = _figures(gen, cfg, real, real_masks)
    figures = {"steps": result.final_step, "train_seconds": round(train_s, 1), "batch_size": args.batch_size,
               "kid_randfeat_step0": kid0["kid_randfeat"], "kid_randfeat_end": kid1["kid_randfeat"],
               "fid_randfeat_step0": kid0["fid_randfeat"], "fid_randfeat_end": kid1["fid_randfeat"], **fig}
    with open(os.path.join(args.out, "figures.json"), "w") as f:
        json.dump(figures, f, indent=2)
    print(f"training: {result.final_step} steps (cpu-small, batch {args.batch_size}, 1 worker) in {train_s:.0f} s")
    print(f"held-out KID (random features): step 0 {kid0['kid_randfeat']:.4f} -> end {kid1['kid_randfeat']:.4f} "
          f"(x{kid1['kid_randfeat'] / kid0['kid_randfeat']:.2f}); FID (random features) {kid0['fid_randfeat']:.2f} -> "
          f"{kid1['fid_randfeat']:.2f}")
    print(f"object coverage {fig['coverage_model']:.3f} vs data object fraction {fig['object_fraction_data']:.3f} "
          f"(ratio {fig['coverage_ratio']:.2f}); background-only mean RGB "
          f"{[round(x, 3) for x in fig['bg_mean_rgb_model']]} vs data {[round(x, 3) for x in fig['bg_mean_rgb_data']]}")
    print(f"controllability: Spearman rho (command vs alpha centroid) median {fig['spearman_rho_median']:.3f} over "
          f"{fig['spearman_samples']} samples; mean abs change outside the moved object {fig['outside_change_mean']:.4f}")
    print(f"samples grid (rows 1-2 generated, 3-4 held-out data) and figures.json in {args.out}")


if __name__ == "__main__":
    main()
