"""The per-step scalar objective equals the per-row terms it is a fast rewrite of."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dl3d.fitting.interpenetration import sphere_body
from dl3d.fitting.priors import GmmPosePrior, builtin_pose_prior
from dl3d.fitting.stages import Problem, StageWeights, _constants, evaluate, stage_loss, total_loss
from dl3d.fitting.tracks import consecutive_mask
from dl3d.keypoints import FORMATS
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos


def _gmm3() -> GmmPosePrior:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 69, 69)) / 10
    return GmmPosePrior(rng.normal(0, 0.2, (3, 69)), 0.05 * (a @ a.transpose(0, 2, 1) + np.eye(69)), [0.2, 0.3, 0.5])


@pytest.mark.parametrize("prior", [builtin_pose_prior(), _gmm3()], ids=["one_component", "three_components"])
def test_stage_loss_matches_evaluate(kernel, prior):
    b = stack_videos([make_keypoint_video(kernel, KeypointVideoSpec(frames=6, seed=s)) for s in (0, 1)])
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    problem = Problem(kernel=kernel, prior=prior, spheres=sphere_body(scale=2.0), xy=t(b["keypoints"][..., :2]),
                      weight=t(b["keypoints"][..., 2]), focal=t(b["focal"]), principal_point=t(b["principal_point"]),
                      beta_index=torch.as_tensor(b["track_index"]),
                      consecutive=t(consecutive_mask(b["track_index"], b["frame"])),
                      fmt_index=torch.as_tensor(FORMATS["body25"].smpl_index), sigma=50.0, data_weight=2.0)
    w = StageWeights(pose=4.0, shape=3.0, bending=5.0, interpenetration=1e4, temporal=1e3)
    betas = torch.randn(2, 10) * 0.5
    go, pose, transl = t(b["global_orient"]), t(b["body_pose"]) + 0.3 * torch.randn(12, 69), t(b["transl"])
    reference = total_loss(evaluate(problem, betas, go, pose, transl, w))
    fast = stage_loss(problem, _constants(problem, betas, w, None), betas, go, pose, transl)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-2)
    assert evaluate(problem, betas, go, pose, transl, w)["interpenetration"].sum() > 0  # every term is exercised
    assert evaluate(problem, betas, go, pose, transl, w)["temporal"].sum() > 0
