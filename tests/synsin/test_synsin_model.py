"""The full SynSin generator/discriminator on the cpu-small preset: shapes, losses, training, checkpoints."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from dl3d.synsin import (
    PERCEPTUAL_OFF_MESSAGE,
    SYNSIN_PRESETS,
    build_synsin,
    load_synsin_checkpoint,
    make_synsin_optimizers,
    synsin_checkpoint,
    synsin_discriminator_losses,
    synsin_discriminator_step,
    synsin_generator_losses,
    synsin_generator_step,
)
from dl3d.synsin.losses import feature_matching_loss, gan_loss, l1_loss, perceptual_loss

CFG = SYNSIN_PRESETS["cpu-small-gan"]
S = 32


def _build(cfg=CFG, seed: int = 0, **kw):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_synsin(cfg, **kw)


def _pair(n: int = 2) -> dict[str, torch.Tensor]:
    """A fixed pair: smooth images, the target a 4-px crop shift of a wider source scene."""
    g = torch.Generator().manual_seed(10)
    scene = F.interpolate(torch.rand(n, 3, 8, 12, generator=g), size=(S, S + 16), mode="bicubic",
                          align_corners=False).clamp(0, 1)
    K = torch.tensor([[32.0, 0.0, 16.0], [0.0, 32.0, 16.0], [0.0, 0.0, 1.0]]).expand(n, 3, 3).clone()
    pose = torch.eye(4).expand(n, 4, 4).clone()
    pose[:, 0, 3] = -0.5
    return {"src_img": scene[..., :S], "tgt_img": scene[..., 4:S + 4], "K": K, "rel_pose": pose}


def test_forward_shapes_and_ranges():
    models = _build(CFG.replace(radius=0.125))  # 2-px splats: the coverage bounds below are for them
    g = models["generator"]
    batch = _pair()
    out = g(batch["src_img"], batch["K"], batch["rel_pose"])
    assert out["pred"].shape == (2, 3, S, S)
    assert out["depth"].shape == (2, 1, S, S)
    assert out["features"].shape == out["rendered_features"].shape == (2, CFG.feature_dim, S, S)
    assert out["coverage"].shape == (2, 1, S, S)
    assert 0.0 <= out["pred"].min().item() and out["pred"].max().item() <= 1.0
    assert CFG.min_depth < out["depth"].min().item() and out["depth"].max().item() < CFG.max_depth
    # Points move by -f * 0.5 m / depth <= -1.6 px (depth <= 10 m) with 2-px splats: the last column is
    # at most grazed (measured max 0.32), the left half fully covered.
    assert out["coverage"][..., -1].max().item() < 0.5
    assert out["coverage"][..., :S // 2].min().item() > 0.5
    with pytest.raises(ValueError, match=r"expected src_img of shape \(N, 3, H, W\) with H and W divisible by 32"):
        g(torch.rand(1, 3, 48, 48), batch["K"][:1], batch["rel_pose"][:1])


def test_discriminator_outputs_per_scale_and_layer():
    d = _build()["discriminator"]
    outs = d(torch.rand(2, 3, S, S) * 2 - 1)
    assert len(outs) == CFG.disc_scales
    assert [len(o) for o in outs] == [CFG.disc_layers + 1] * CFG.disc_scales
    assert outs[0][-1].shape[:2] == (2, 1) and outs[1][-1].shape[:2] == (2, 1)
    assert outs[1][0].shape[-1] < outs[0][0].shape[-1]  # the second scale sees a 2x smaller image


def test_generator_and_discriminator_losses_are_finite_and_weighted():
    models = _build()
    batch = _pair()
    losses, out = synsin_generator_step(models, batch)  # no optimizer: losses keep their graph
    assert set(losses) == {"l1", "gan", "feature_matching", "psnr", "total"}  # no perceptual: no weights file
    for v in losses.values():
        assert torch.isfinite(v)
    expected = CFG.l1_weight * losses["l1"] + CFG.gan_weight * losses["gan"] \
        + CFG.feature_matching_weight * losses["feature_matching"]
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    losses["total"].backward()
    assert models["generator"].depth_net.unet.down[0].parametrizations.weight.original.grad.abs().sum() > 0
    d = models["discriminator"]
    assert any(p.grad is not None for p in d.parameters())  # as the official code: the G backward reaches D
    # The D step zeroes those before its own backward: its gradients equal a clean D-loss backward
    # (Adam with lr 0 keeps the parameters, so both see the same network).
    reference = copy.deepcopy(d)
    reference.zero_grad(set_to_none=True)
    synsin_discriminator_losses(out["pred"], batch["tgt_img"], reference, CFG)["total"].backward()
    d_losses = synsin_discriminator_step(models, out["pred"], batch["tgt_img"],
                                         optimizer=torch.optim.Adam(d.parameters(), lr=0.0))
    for p, q in zip(d.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert set(d_losses) == {"total", "d_fake", "d_real"}
    assert torch.isfinite(d_losses["total"])
    assert d_losses["total"].item() == pytest.approx((d_losses["d_fake"] + d_losses["d_real"]).item(), rel=1e-6)


def test_a_few_steps_reduce_l1_on_a_fixed_pair():
    # Full objective (L1 + hinge GAN + feature matching), Adam (0, 0.9), lr_G 5e-4, lr_D 2e-3.
    # Measured L1, first step -> mean of the last 3 of 10 steps: seed 0: 0.629 -> 0.357 (seeds 1-3:
    # 0.593 -> 0.334, 0.629 -> 0.372, 0.582 -> 0.371), i.e. ratios 0.56-0.64 against the 0.75 bound.
    models = _build(seed=0)
    opts = make_synsin_optimizers(models, CFG)
    batch = _pair()
    l1 = []
    for _ in range(10):
        g_losses, out = synsin_generator_step(models, batch, optimizer=opts["generator"])
        d_losses = synsin_discriminator_step(models, out["pred"], batch["tgt_img"], optimizer=opts["discriminator"])
        assert all(torch.isfinite(v) for v in (*g_losses.values(), *d_losses.values()))
        l1.append(g_losses["l1"].item())
    assert sum(l1[-3:]) / 3 < 0.75 * l1[0], l1


def test_synthesize_matches_forward_per_view():
    models = _build()
    g = models["generator"].eval()
    batch = _pair()
    poses = torch.stack([batch["rel_pose"], torch.eye(4).expand(2, 4, 4)], dim=1)
    with torch.inference_mode():
        views = g.synthesize(batch["src_img"], batch["K"], poses)
        assert views.shape == (2, 2, 3, S, S)
        for t in range(2):
            torch.testing.assert_close(views[:, t], g(batch["src_img"], batch["K"], poses[:, t])["pred"])


def test_checkpoint_round_trip(tmp_path):
    models = _build()
    opts = make_synsin_optimizers(models, CFG)
    batch = _pair()
    synsin_generator_step(models, batch, optimizer=opts["generator"])
    torch.save(synsin_checkpoint(models, optimizers=opts, step=1), tmp_path / "ckpt.pt")
    loaded = load_synsin_checkpoint(tmp_path / "ckpt.pt")
    assert loaded["config"] == CFG and loaded["step"] == 1
    assert set(loaded["optimizers"]) == {"generator", "discriminator"}
    g0 = models["generator"].eval()
    with torch.inference_mode():
        a = g0(batch["src_img"], batch["K"], batch["rel_pose"])["pred"]
        b = loaded["generator"](batch["src_img"], batch["K"], batch["rel_pose"])["pred"]
    torch.testing.assert_close(a, b)
    sd0, sd1 = models["discriminator"].state_dict(), loaded["discriminator"].state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    with pytest.raises(ValueError, match="official facebookresearch/synsin checkpoint"):
        load_synsin_checkpoint({"state_dict": {}, "opts": None})
    with pytest.raises(ValueError, match="not a dl3d SynSin checkpoint"):
        load_synsin_checkpoint({"generator": {}})
    with pytest.raises(FileNotFoundError, match="SynSin checkpoint not found"):
        load_synsin_checkpoint(tmp_path / "nope.pt")


def test_perceptual_loss_is_off_without_weights_and_says_so():
    assert not CFG.perceptual_enabled and CFG.effective_perceptual_weight == 0.0
    with pytest.warns(UserWarning, match="perceptual \\(VGG19\\) loss is OFF: no perceptual_weights file"):
        models = build_synsin(CFG)
    assert models["perceptual"] is None
    assert "OFF" in PERCEPTUAL_OFF_MESSAGE
    losses, _ = synsin_generator_step(models, _pair())
    assert "perceptual" not in losses
    # Turning the weight to 0 explicitly is silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_synsin(CFG.replace(perceptual_weight=0.0))


@pytest.fixture(scope="module")
def vgg19_weights(tmp_path_factory):
    """Stand-in VGG19 weights: a randomly initialised torchvision vgg19, saved in torchvision's key layout.

    Only the ``features.*`` entries are saved (the classifier's 500 MB is never read by the loss).
    They test loading and the loss plumbing, not perceptual quality.
    """
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    feats = make_layers(cfgs["E"])  # what torchvision.models.vgg19(weights=None).features builds
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    return path, feats


def test_perceptual_loss_with_a_weights_file(vgg19_weights):
    path, feats = vgg19_weights
    cfg = CFG.replace(perceptual_weights=str(path))
    assert cfg.perceptual_enabled and cfg.effective_perceptual_weight == 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "OFF" warning
        models = _build(cfg)
    vgg = models["perceptual"]
    assert vgg is not None and not any(p.requires_grad for p in vgg.parameters())
    torch.testing.assert_close(vgg.slices[0][0].weight, feats[0].weight)
    batch = _pair()
    losses, _ = synsin_generator_step(models, batch)
    assert losses["perceptual"].item() > 0
    expected = losses["l1"] + 10.0 * losses["perceptual"] + losses["gan"] + 10.0 * losses["feature_matching"]
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert perceptual_loss(batch["tgt_img"], batch["tgt_img"], vgg).item() == 0.0


def test_bad_vgg_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="VGG19 weights file for the perceptual loss not found"):
        _build(CFG.replace(perceptual_weights=str(tmp_path / "none.pth")))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64),
                "features.2.weight": torch.zeros(32, 64, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"'2.weight' has shape \(32, 64, 3, 3\), expected \(64, 64, 3, 3\)"):
        _build(CFG.replace(perceptual_weights=str(tmp_path / "bad.pth")))


def test_loss_functions_by_hand():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.25)
    assert l1_loss(a, b).item() == pytest.approx(0.5)  # 0.25 in [0, 1] is 0.5 in [-1, 1]
    x = [[torch.tensor([[2.0, -0.5]])], [torch.tensor([[0.0]])]]  # two scales, logits only
    # hinge D, real: mean(relu(1 - x)) per scale = (0 + 1.5)/2, 1 -> mean over scales 0.875
    assert gan_loss(x, real=True, for_discriminator=True).item() == pytest.approx(0.875)
    # hinge D, fake: relu(1 + x) = (3 + 0.5)/2, 1 -> 1.375
    assert gan_loss(x, real=False, for_discriminator=True).item() == pytest.approx(1.375)
    # hinge G: -mean(x) = -0.75, 0 -> -0.375
    assert gan_loss(x, real=True, for_discriminator=False).item() == pytest.approx(-0.375)
    assert gan_loss(x, real=True, for_discriminator=True, mode="ls").item() == pytest.approx(
        ((1.0 + 2.25) / 2 + 1.0) / 2)
    with pytest.raises(ValueError, match="generator's hinge loss must target real"):
        gan_loss(x, real=False, for_discriminator=False)
    f = [[torch.ones(1, 2), torch.zeros(1, 1)], [torch.full((1, 2), 3.0), torch.zeros(1, 1)]]
    r = [[torch.zeros(1, 2), torch.ones(1, 1)], [torch.ones((1, 2)), torch.ones(1, 1)]]
    assert feature_matching_loss(f, r).item() == pytest.approx((1.0 + 2.0) / 2)  # logits excluded


def test_generator_losses_require_a_discriminator_when_gan_is_on():
    with pytest.raises(ValueError, match="no discriminator was given"):
        synsin_generator_losses(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), CFG)
    cfg = CFG.replace(gan_weight=0.0, feature_matching_weight=0.0)
    models = _build(cfg)
    assert models["discriminator"] is None
    losses, out = synsin_generator_step(models, _pair())
    assert set(losses) == {"l1", "psnr", "total"}
    assert synsin_discriminator_step(models, out["pred"], _pair()["tgt_img"]) == {}
    with pytest.raises(ValueError, match="SynSin batch is missing \\['rel_pose'\\]"):
        synsin_generator_step(models, {k: v for k, v in _pair().items() if k != "rel_pose"})
