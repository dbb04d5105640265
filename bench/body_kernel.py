"""Micro-benchmark: smplx's full SMPL forward against the fitting kernel, in one process.

Times forward (no grad) and forward+backward for a batch of 256 through (a) ``smplx.SMPL`` (all
6890 vertices) and (b) ``SelectedPointsKernel`` (24 joints + 11 keypoint vertices), plus the
kernel's ``keypoints("body25")`` path, and prints frames/s and the ratio to smplx. Then compares the
two kinematic-chain strategies (per tree level vs per joint) over batch sizes. Prints, no asserts.

    python bench/body_kernel.py [--batch 256] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import smplx  # noqa: E402
from smplx.utils import Struct  # noqa: E402

from dl3d.body.joints_kernel import build_points_kernel  # noqa: E402


def body_arrays() -> tuple[dict[str, np.ndarray], str]:
    """The procedural body model when present, else the test suite's random SMPL arrays."""
    try:
        from dl3d.body.procedural import make_procedural_body_model
    except ImportError:
        from tests.body.test_joints_kernel import random_smpl_arrays

        arrays, name = random_smpl_arrays(), "random SMPL-format arrays (tests fixture)"
    else:
        arrays, name = dict(make_procedural_body_model(num_betas=10, seed=0)), "procedural body model"
    out = {}
    for key, val in arrays.items():
        val = np.asarray(val.toarray() if hasattr(val, "toarray") else val)
        out[key] = val.astype(np.float32) if val.dtype.kind == "f" else val
    return out, name


def time_calls(fns: list[Callable[[], object]], device: torch.device, min_time: float = 0.3,
               rounds: int = 7) -> list[float]:
    """Median seconds per call of each of ``fns``, timed in interleaved rounds after a warm-up
    (interleaving keeps a noisy shared machine from favouring whichever ran first)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    calls = []
    for fn in fns:
        for _ in range(3):
            fn()
        sync()
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < min_time / rounds or count < 2:
            fn()
            count += 1
        sync()
        calls.append(count)
    per: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, count, out in zip(fns, calls, per):
            start = time.perf_counter()
            for _ in range(count):
                fn()
            sync()
            out.append((time.perf_counter() - start) / count)
    return [statistics.median(p) for p in per]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, n = torch.device(args.device), args.batch
    arrays, name = body_arrays()
    model = smplx.SMPL("", data_struct=Struct(**arrays), num_betas=10).to(device)
    kernel = build_points_kernel(arrays).to(device)
    g = torch.Generator().manual_seed(0)
    inputs = {
        "betas": torch.randn(n, 10, generator=g),
        "global_orient": 0.3 * torch.randn(n, 3, generator=g),
        "body_pose": 0.3 * torch.randn(n, 69, generator=g),
        "transl": torch.randn(n, 3, generator=g),
    }
    inputs = {k: v.to(device).requires_grad_() for k, v in inputs.items()}
    ids = list(kernel.vertex_ids)

    def smplx_out() -> torch.Tensor:
        out = model(**inputs)
        return torch.cat([out.joints[:, :24], out.vertices[:, ids]], 1)

    def kernel_out() -> torch.Tensor:
        out = kernel(**inputs)
        return torch.cat([out.joints, out.points], 1)

    def body25_out() -> torch.Tensor:
        return kernel.keypoints("body25", **inputs)

    def fwd(fn: Callable[[], torch.Tensor]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return fn()
        return run

    def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], object]:
        def run() -> object:
            return torch.autograd.grad(fn().square().sum(), list(inputs.values()))
        return run

    print(f"torch {torch.__version__}, smplx 0.1.28, {torch.get_num_threads()} threads, device {device}, "
          f"batch {n}, model: {name}")
    print(f"{'path':<34}{'fwd frames/s':>14}{'x smplx':>9}{'fwd+bwd frames/s':>19}{'x smplx':>9}")
    paths = [("smplx SMPL (6890 verts)", smplx_out), ("kernel (24 joints + 11 verts)", kernel_out),
             ("kernel.keypoints('body25')", body25_out)]
    t_f = time_calls([fwd(fn) for _, fn in paths], device)
    t_fb = time_calls([fwd_bwd(fn) for _, fn in paths], device)
    for (label, _), f, fb in zip(paths, t_f, t_fb):
        print(f"{label:<34}{n / f:>14.0f}{t_f[0] / f:>9.1f}{n / fb:>19.0f}{t_fb[0] / fb:>9.1f}")

    print("\nkinematic chain, kernel fwd+bwd frames/s: per tree level vs per joint")
    for size in (64, 256, 1024):
        x = {k: v.detach()[:1].expand(size, -1).clone().requires_grad_() for k, v in inputs.items()}
        pose = lambda: torch.cat([x["global_orient"], x["body_pose"]], 1).view(size, 24, 3)  # noqa: E731
        runs = []
        for chain in ("level", "joint"):
            def run(chain: str = chain) -> object:
                joints, points = kernel.full.run(x["betas"], pose(), x["transl"], chain=chain)
                return torch.autograd.grad(joints.sum() + points.square().sum(), list(x.values()))
            runs.append(run)
        rates = [size / t for t in time_calls(runs, device)]
        print(f"  N={size:<5} level {rates[0]:>9.0f}   joint {rates[1]:>9.0f}   level/joint {rates[0] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
