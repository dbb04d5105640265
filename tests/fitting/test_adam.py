"""dl3d's fused Adam equals torch.optim.Adam(fused=True) step for step, and the fitting path no longer
imports torch._dynamo (the import it saves each worker)."""

from __future__ import annotations

import subprocess
import sys

import torch

from dl3d.fitting.adam import FusedAdam


def test_steps_equal_torch_optim_fused_adam_with_a_changing_step_size():
    gen = torch.Generator().manual_seed(0)
    shapes = [(50, 3), (50, 69), (4, 10)]
    ours = [torch.randn(s, generator=gen, requires_grad=True) for s in shapes]
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    start = ours[0].detach().clone()
    opt, ref_opt = FusedAdam(ours, lr=0.03), torch.optim.Adam(ref, lr=0.03, fused=True)
    for it in range(25):
        grads = [torch.randn(s, generator=gen) * (it + 1) for s in shapes]
        opt.zero_grad()
        ref_opt.zero_grad(set_to_none=True)
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        if it == 7:  # a parameter without a gradient is left alone by both
            ours[2].grad = ref[2].grad = None
        opt.lr = ref_opt.param_groups[0]["lr"] = 0.03 * (1 - it / 30)
        opt.step()
        ref_opt.step()
        for p, q in zip(ours, ref):
            assert torch.equal(p, q), f"step {it}: max difference {(p - q).abs().max().item():.3g}"
    assert float((ours[0] - start).abs().min()) > 0, "every coordinate moved"


def test_a_fit_does_not_import_torch_dynamo(body_model_path):
    code = f"""
import sys
import numpy as np
from dl3d.body import read_body_model_arrays
from dl3d.body.joints_kernel import build_points_kernel
from dl3d.fitting import SMPLIFY_PRESETS, fit_smplify
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos
arrays = read_body_model_arrays({body_model_path!r})
b = stack_videos([make_keypoint_video(arrays, KeypointVideoSpec(frames=8, seed=0))])
cfg = SMPLIFY_PRESETS["fast"]
r = fit_smplify(build_points_kernel(arrays), b["keypoints"], "body25", b["track_index"], b["frame"], b["focal"],
                b["principal_point"], cfg)
assert np.isfinite(r.joints3d).all()
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
