"""GIRAFFE rendering speed at 64 px, in one process: the official scheme (every object MLP on every ray
sample, density masked outside the box afterwards) against dl3d's (only the samples inside each object's
padded box are evaluated), on the same scenes; prints ms per image, the ratio and the max abs difference.

    python bench/giraffe_render.py [--device cuda|cpu] [--preset cars64] [--batch 16] [--repeats 10]

Imports only torch and the dl3d.giraffe model modules (no pytorch3d, no Ray): runs from a checkout with
``PYTHONPATH=.`` on any machine with torch. The generator is randomly initialised (timing does not depend
on training) with its object density bias raised so objects are opaque and the equality check compares
visible objects, not empty space. Eval mode (no depth jitter, no density noise), ``torch.inference_mode``;
each repeat times both schemes back to back (order alternating), the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dl3d.giraffe.config import GIRAFFE_PRESETS
from dl3d.giraffe.generator import GiraffeGenerator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(gen: GiraffeGenerator, scene: dict, scheme: str, device: torch.device) -> tuple[float, torch.Tensor]:
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        img = gen.render(**scene, mode="eval", scheme=scheme).image
    _sync(device)
    return time.perf_counter() - t0, img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="cars64", choices=sorted(GIRAFFE_PRESETS))
    ap.add_argument("--batch", type=int, default=16, help="images per render call")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = GIRAFFE_PRESETS[args.preset]
    torch.manual_seed(0)
    gen = GiraffeGenerator(cfg).to(device).eval()
    with torch.no_grad():
        gen.object_field.sigma_out.bias.fill_(3.0)
    scene = gen.sample_scene(args.batch)
    # how many object samples the box scheme evaluates
    from dl3d.giraffe.boxes import to_box
    from dl3d.giraffe.camera import pixel_rays
    from dl3d.giraffe.volume import sample_depths

    origin, rays = pixel_rays(cfg.feature_resolution, gen.focal, scene["camera"])
    d = sample_depths(*cfg.depth_range, args.batch, rays.shape[1], cfg.n_samples, jitter=False, device=device)
    pts = (origin[:, None, None] + d[..., None] * rays[:, :, None]).reshape(args.batch, -1, 3)
    s, t, R = scene["boxes"]
    inside = torch.stack([(to_box(pts, s[:, k], t[:, k], R[:, k]).abs() <= 1 + cfg.box_padding).all(-1)
                          for k in range(s.shape[1])])
    if scene.get("existence") is not None:
        inside &= scene["existence"].T[:, :, None]
    for _ in range(args.warmup):
        _time(gen, scene, "dense", device)
        _time(gen, scene, "box", device)
    dense_t, box_t = [], []
    for r in range(args.repeats):
        order = ("dense", "box") if r % 2 == 0 else ("box", "dense")
        for scheme in order:
            sec, img = _time(gen, scene, scheme, device)
            (dense_t if scheme == "dense" else box_t).append(sec)
            if scheme == "dense":
                img_dense = img
            else:
                img_box = img
    diff = float((img_dense - img_box).abs().max())
    md, mb = statistics.median(dense_t) * 1000 / args.batch, statistics.median(box_t) * 1000 / args.batch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"GIRAFFE render, preset {args.preset} ({cfg.image_size} px, {cfg.feature_resolution}^2 rays x "
          f"{cfg.n_samples} samples, {cfg.n_boxes} object(s)), batch {args.batch}, {name}, torch {torch.__version__}")
    print(f"  object samples inside their box: {float(inside.float().mean()) * 100:.2f} %")
    print(f"  official (dense, mask after): {md:8.3f} ms/image")
    print(f"  dl3d (box-masked):            {mb:8.3f} ms/image")
    print(f"  speed-up {md / mb:.2f}x   max abs difference {diff:.2e}   "
          f"(image range {float(img_box.min()):.3f}-{float(img_box.max()):.3f})")


if __name__ == "__main__":
    main()
