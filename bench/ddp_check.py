"""DDP through a real process group, as the training driver wraps a family's modules: nccl on a GPU, gloo on CPU.

For each family named, builds its preset, wraps every module with trainable parameters in
``DistributedDataParallel`` (as ``dl3d.jobs.train_loop`` does), takes ``--steps`` training steps on a
random batch of the family's own kind and prints steps/s and the last losses; exits 1 when a loss is not
finite. One rank per process; ``--world-size 2`` spawns two ranks (on one GPU only with gloo: nccl
refuses two ranks on one device).

    python bench/ddp_check.py [--backend nccl|gloo] [--families toy,giraffe] [--steps 20]

Needs torch and pyarrow only (no Ray, no pytorch3d): it runs from a checkout with ``PYTHONPATH=.``
on a machine that has neither, e.g. a lent GPU machine.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dl3d.train.family import get_family  # noqa: E402

PRESETS = {"toy": None, "giraffe": "cpu-small"}


def random_batch(name: str, cfg, device: torch.device, batch: int) -> dict[str, torch.Tensor]:
    """A batch of the family's decoded kind (random values; this checks the mechanics, not learning)."""
    g = torch.Generator().manual_seed(0)
    if name == "giraffe":
        return {"image": torch.rand(batch, 3, cfg.image_size, cfg.image_size, generator=g).to(device)}
    if name == "toy":
        x = torch.randn(batch, cfg.features, generator=g)
        return {"x": x.to(device), "y": (x.sum(1) * 0.5).to(device)}
    raise ValueError(f"no random batch for family {name!r}; known: {sorted(PRESETS)}")


def run_family(name: str, device: torch.device, steps: int, batch: int) -> tuple[float, dict[str, float]]:
    family = get_family(name)
    preset = PRESETS[name] or next(iter(family.presets))
    cfg = family.presets[preset]
    modules = {k: m.to(device) for k, m in family.build(cfg).items()}
    ids = [device.index] if device.type == "cuda" else None
    wrapped = {k: DistributedDataParallel(m, device_ids=ids, find_unused_parameters=family.find_unused_parameters)
               if any(p.requires_grad for p in m.parameters()) else m for k, m in modules.items()}
    optimizers = family.make_optimizers(wrapped, cfg)
    data = random_batch(name, cfg, device, batch)
    for m in wrapped.values():
        m.train()
    metrics: dict[str, float] = {}
    family.train_step(wrapped, optimizers, data, 1, cfg)  # warm-up (cuDNN autotune, nccl rings)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for step in range(2, steps + 2):
        metrics = family.train_step(wrapped, optimizers, data, step, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - t0), metrics


def worker(rank: int, args: argparse.Namespace) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    dist.init_process_group(args.backend, rank=rank, world_size=args.world_size)
    device = torch.device("cuda", rank % torch.cuda.device_count()) if args.backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    ok = True
    for name in args.families.split(","):
        rate, metrics = run_family(name, device, args.steps, args.batch)
        finite = all(math.isfinite(v) for v in metrics.values())
        ok &= finite
        if rank == 0:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(f"{name:<8} backend {args.backend} world {args.world_size} on {device}: "
                  f"{rate:.1f} steps/s (batch {args.batch} per rank); last {shown}; finite {finite}", flush=True)
    t = torch.ones(1, device=device) * (rank + 1)
    dist.all_reduce(t)
    if rank == 0:
        expect = args.world_size * (args.world_size + 1) / 2
        print(f"all_reduce over {args.world_size} rank(s): {t.item():g} (expected {expect:g})", flush=True)
        ok &= t.item() == expect
    dist.destroy_process_group()
    if not ok:
        raise SystemExit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("nccl", "gloo"), default="nccl" if torch.cuda.is_available() else "gloo")
    ap.add_argument("--families", default="toy,giraffe")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--world-size", type=int, default=1)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args()
    print(f"torch {torch.__version__}; cuda {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))" if torch.cuda.is_available() else ""))
    if args.world_size == 1:
        worker(0, args)
    else:
        mp.spawn(worker, args=(args,), nprocs=args.world_size)


if __name__ == "__main__":
    main()
