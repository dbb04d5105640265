"""SynSinConfig validation, presets (paper values) and the network layouts they give."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch

from dl3d.synsin import SYNSIN_PRESETS, SynSinConfig, build_synsin
from dl3d.synsin.depth_net import DepthUNet, sigmoid_to_depth
from dl3d.synsin.feature_net import feature_net_widths
from dl3d.synsin.refinement_net import refinement_plan


def test_paper_preset_holds_the_official_values():
    cfg = SYNSIN_PRESETS["paper256"]
    assert (cfg.image_height, cfg.image_width) == (256, 256)
    assert cfg.radius == pytest.approx(4 * 2 / 256)  # --radius 4 (pixels) at 256 px
    assert cfg.points_per_pixel == 128 and cfg.accumulation == "alphacomposite" and cfg.gamma == 1.0
    assert (cfg.min_depth, cfg.max_depth) == (0.5, 10.0)
    assert (cfg.l1_weight, cfg.perceptual_weight, cfg.gan_weight, cfg.feature_matching_weight) == (1, 10, 1, 10)
    assert cfg.gan_mode == "hinge" and (cfg.disc_scales, cfg.disc_layers, cfg.disc_width) == (2, 4, 64)
    assert (cfg.lr_generator, cfg.lr_discriminator, cfg.adam_beta1, cfg.adam_beta2) == (5e-4, 2e-3, 0.0, 0.9)
    assert cfg.perceptual_weights is None and not cfg.perceptual_enabled
    assert cfg.lr_schedule == "none" and cfg.lr_factor(1) == cfg.lr_factor(10**6) == 1.0  # constant rates
    assert (SYNSIN_PRESETS["realestate256"].min_depth, SYNSIN_PRESETS["realestate256"].max_depth) == (1.0, 100.0)


def test_paper_layouts_match_the_official_networks():
    # resnet_256W8UpDown64: encoder [3, 32, 32, 32, 64, 64, 64, 64, 64]; decoder 64 -> 64 -> 128 (down)
    # -> 256 (down) -> 256 -> 128 (up) -> 128 (up) -> 128 -> 3.
    assert feature_net_widths(feature_width=64, feature_dim=64, blocks=8) == [3, 32, 32, 32, 64, 64, 64, 64, 64]
    assert refinement_plan(in_channels=64, width=64, downsamples=2, mid_blocks=1) == [
        (64, 64, "none"), (64, 128, "down"), (128, 256, "down"), (256, 256, "none"),
        (256, 128, "up"), (128, 128, "up"), (128, 128, "none"), (128, 3, "none")]
    # U-Net: 8 levels, 32 filters: 256 px down to 1x1, widths 32, 64, 128, 256, 256, ...
    unet = DepthUNet(filters=32, levels=8)
    assert [c.weight.shape[0] for c in unet.down] == [32, 64, 128, 256, 256, 256, 256, 256]
    assert unet(torch.rand(2, 3, 256, 256)).shape == (2, 1, 256, 256)  # BN needs N > 1 at 2x2


def test_depth_mappings():
    s = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(sigmoid_to_depth(s, min_depth=0.5, max_depth=10.0), torch.tensor([0.5, 5.25, 10.0]))
    # inverse with min = 1/10.01, max = 100 is the official 1 / (10 s + 0.01)
    torch.testing.assert_close(sigmoid_to_depth(s, min_depth=1 / 10.01, max_depth=100.0, mapping="inverse"),
                               1.0 / (10 * s + 0.01))


def test_every_preset_builds_and_cpu_small_runs():
    for name, cfg in SYNSIN_PRESETS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = build_synsin(cfg, load_perceptual=False)
        assert models["config"] is cfg, name
        assert ("discriminator" in models and models["discriminator"] is not None) == cfg.uses_discriminator, name
    cfg = SYNSIN_PRESETS["cpu-small"]
    torch.manual_seed(0)
    g = build_synsin(cfg, load_perceptual=False)["generator"].eval()
    n_params = sum(p.numel() for p in g.parameters())
    assert n_params < 1_000_000  # measured 423,143
    # It runs: two target views of one 32x32 image, the identity and a 0.3 m sideways move.
    h, w = cfg.image_height, cfg.image_width
    K = torch.tensor([[[float(w), 0, w / 2], [0, float(w), h / 2], [0, 0, 1]]])
    move = torch.eye(4)
    move[0, 3] = 0.3
    poses = torch.stack([torch.eye(4), move])[None]
    with torch.no_grad():
        views = g.synthesize(torch.rand(1, 3, h, w), K, poses)
    assert views.shape == (1, 2, 3, h, w) and torch.isfinite(views).all()
    assert views.min() >= 0 and views.max() <= 1
    assert (views[0, 0] - views[0, 1]).abs().mean() > 1e-4, "the target pose must change the rendered view"


@pytest.mark.parametrize("changes,message", [
    ({"image_height": 100}, r"image size 100x256 must be divisible by 2\*\*depth_levels = 256"),
    ({"feature_dim": 0}, r"feature_dim must be an integer >= 1, got 0"),
    ({"depth_levels": 2.5}, r"depth_levels must be an integer >= 1, got 2.5"),
    ({"min_depth": 5.0, "max_depth": 1.0}, r"need 0 < min_depth < max_depth \(metres\), got min_depth=5.0"),
    ({"min_depth": 0.0}, r"need 0 < min_depth < max_depth"),
    ({"depth_mapping": "log"}, r"depth_mapping must be one of linear, inverse; got 'log'"),
    ({"radius": 0.0}, r"radius must be in \(0, 2\] NDC units \(pixels \* 2 / min\(H, W\)\), got 0.0"),
    ({"points_per_pixel": 200}, r"points_per_pixel must be <= 150 \(pytorch3d's rasterizer limit\), got 200"),
    ({"accumulation": "max"}, r"accumulation must be one of alphacomposite, wsum, wsumnorm; got 'max'"),
    ({"gamma": -1.0}, r"gamma must be > 0, got -1.0"),
    ({"gan_mode": "wgan"}, r"gan_mode must be one of hinge, ls, original; got 'wgan'"),
    ({"perceptual_weight": -1.0}, r"perceptual_weight must be >= 0, got -1.0"),
    ({"lr_generator": 0.0}, r"lr_generator must be > 0, got 0.0"),
    ({"adam_beta2": 1.0}, r"adam_beta2 must be in \[0, 1\), got 1.0"),
    ({"refine_downsamples": -1}, r"refine_downsamples must be an integer >= 0, got -1"),
    ({"perceptual_weights": "  "}, r"perceptual_weights must be a file path or None, got an empty string"),
    ({"lr_schedule": "step"}, r"lr_schedule must be one of none, cosine; got 'step'"),
    ({"lr_decay_steps": -1}, r"lr_decay_steps must be an integer >= 0, got -1"),
    ({"lr_schedule": "cosine"}, r"lr_schedule 'cosine' needs lr_decay_steps >= 1 \(the run's length in steps\), got 0"),
])
def test_config_validation_messages(changes, message):
    with pytest.raises(ValueError, match=message):
        SynSinConfig(**changes)


def test_config_fields_generate_cli_options():
    from dl3d.jobs.cli_args import add_dataclass_arguments, dataclass_from_args

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, SynSinConfig)
    ns = parser.parse_args(["--radius", "0.1", "--no-spectral-norm", "--perceptual-weights", "/w/vgg19.pth",
                            "--accumulation", "wsumnorm"])
    cfg = dataclass_from_args(SynSinConfig, ns)
    assert cfg == SynSinConfig(radius=0.1, spectral_norm=False, perceptual_weights="/w/vgg19.pth",
                               accumulation="wsumnorm")
    assert cfg.perceptual_enabled


def test_cosine_schedule_factors_and_the_family_step_applies_them():
    cfg = SYNSIN_PRESETS["cpu-small"].replace(lr_schedule="cosine", lr_decay_steps=4)
    # (1 + cos(pi * (step - 1) / 4)) / 2 for steps 1..5, then held at 0
    expected = [1.0, 0.8535534, 0.5, 0.1464466, 0.0, 0.0]
    assert [cfg.lr_factor(s) for s in (1, 2, 3, 4, 5, 50)] == pytest.approx(expected, abs=1e-6)
    from dl3d.synsin.family import SYNSIN_FAMILY

    modules = SYNSIN_FAMILY.build(cfg)
    optimizers = SYNSIN_FAMILY.make_optimizers(modules, cfg)
    K = torch.tensor([[[32.0, 0, 16], [0, 32.0, 16], [0, 0, 1]]]).repeat(2, 1, 1)
    batch = {"src_img": torch.rand(2, 3, 32, 32), "tgt_img": torch.rand(2, 3, 32, 32), "K": K,
             "rel_pose": torch.eye(4).repeat(2, 1, 1)}
    before = [p.detach().clone() for p in modules["generator"].parameters()]
    metrics = SYNSIN_FAMILY.train_step(modules, optimizers, batch, 3, cfg)  # e.g. the first step after a resume
    assert metrics["lr_factor"] == pytest.approx(0.5)
    assert optimizers["generator"].param_groups[0]["lr"] == pytest.approx(cfg.lr_generator * 0.5)
    moved = sum(float((p - b).abs().max()) > 0 for p, b in zip(modules["generator"].parameters(), before))
    assert moved > 0
    SYNSIN_FAMILY.train_step(modules, optimizers, batch, 5, cfg)  # past the decay: rate 0, no update
    frozen = [p.detach().clone() for p in modules["generator"].parameters()]
    SYNSIN_FAMILY.train_step(modules, optimizers, batch, 6, cfg)
    assert optimizers["generator"].param_groups[0]["lr"] == 0.0
    assert all(torch.equal(p, f) for p, f in zip(modules["generator"].parameters(), frozen))
