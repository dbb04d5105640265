"""The GIRAFFE training family without Ray: every preset takes a CPU step, the losses are the official ones
(non-saturating GAN, R1 = 10 * batch mean of sum ||grad_x D||^2), the EMA follows its formula, decoding crops."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from dl3d.data.images import encode_png
from dl3d.giraffe import GIRAFFE_PRESETS
from dl3d.giraffe.ema import ema_copy
from dl3d.giraffe.family import GIRAFFE_FAMILY, decode_batch, discriminator_losses, eval_generator
from dl3d.train.family import get_family


def _params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("preset", sorted(GIRAFFE_PRESETS))
def test_every_preset_builds_and_takes_one_cpu_step(preset):
    """One full training step (G step, EMA, D step with R1) of each preset at batch 1 (cpu-small: 2)."""
    cfg = GIRAFFE_PRESETS[preset]
    family = get_family("giraffe")
    torch.manual_seed(0)
    modules = family.build(cfg)
    optimizers = family.make_optimizers(modules, cfg)
    g0, d0 = _params(modules["generator"]), _params(modules["discriminator"])
    batch = 2 if preset == "cpu-small" else 1
    real = torch.rand(batch, 3, cfg.image_size, cfg.image_size)
    metrics = family.train_step(modules, optimizers, {"image": real}, 1, cfg)
    assert set(metrics) == {"g_loss", "d_real", "d_fake", "d_r1"}
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    g1, d1 = _params(modules["generator"]), _params(modules["discriminator"])
    assert any(not torch.equal(g0[k], g1[k]) for k in g0) and any(not torch.equal(d0[k], d1[k]) for k in d0)
    # EMA after one step: beta * initial + (1 - beta) * updated, for every parameter
    ema = modules["generator"].ema
    for k in ("object_field.fc_in.weight", "neural_renderer.conv_rgb.0.bias"):
        expected = cfg.ema_beta * g0[k] + (1 - cfg.ema_beta) * g1[k]
        assert torch.allclose(getattr(ema, k.replace(".", "__")), expected, atol=1e-7)


def test_r1_and_bce_terms_equal_their_official_definitions():
    cfg = GIRAFFE_PRESETS["cpu-small"]
    modules = GIRAFFE_FAMILY.build(cfg)
    disc = modules["discriminator"]
    torch.manual_seed(1)
    real, fake = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    losses = {k: v.detach() for k, v in discriminator_losses(modules, real, fake, cfg).items()}
    per_sample = []
    for i in range(3):  # ||grad_x D(x_i)||^2 one image at a time
        x = real[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(disc(x).sum(), x)
        per_sample.append(float(g.pow(2).sum()))
    assert abs(float(losses["r1"]) - np.mean(per_sample)) < 1e-6 * max(1.0, np.mean(per_sample))
    assert float(losses["r1"]) > 0
    with torch.no_grad():
        d_real, d_fake = disc(real), disc(fake)
    assert abs(float(losses["real"]) - float(F.softplus(-d_real).mean())) < 1e-6
    assert abs(float(losses["fake"]) - float(F.softplus(d_fake).mean())) < 1e-6
    total = float(losses["real"] + losses["fake"] + 10.0 * losses["r1"])
    assert abs(float(losses["total"]) - total) < 1e-5


def test_evaluation_renders_with_the_ema_weights():
    cfg = GIRAFFE_PRESETS["cpu-small"]
    modules = GIRAFFE_FAMILY.build(cfg)
    gen = modules["generator"]
    with torch.no_grad():
        gen.ema.neural_renderer__conv_rgb__0__bias.add_(5.0)  # EMA differs from the live weights
    ema_gen = eval_generator(gen)
    assert not hasattr(ema_gen, "ema") and not ema_gen.training
    assert torch.allclose(ema_gen.neural_renderer.conv_rgb[0].bias, gen.neural_renderer.conv_rgb[0].bias + 5.0)
    assert all(not p.requires_grad for p in ema_copy(gen).parameters())
    torch.manual_seed(0)
    real = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        out = GIRAFFE_FAMILY.evaluate_set(modules, [{"image": real[:2]}, {"image": real[2:]}], cfg)
    assert set(out) == {"kid_randfeat", "kid_randfeat_std", "fid_randfeat", "images"}
    assert out["images"] == 4 and out["fid_randfeat"] > 0 and np.isfinite(out["kid_randfeat"])
    with torch.no_grad():
        again = GIRAFFE_FAMILY.evaluate_set(modules, [{"image": real[:2]}, {"image": real[2:]}], cfg)
    assert again == out, "the generated set is seeded: the same modules give the same numbers"


def test_decode_batch_centre_crops_and_resizes():
    cfg = GIRAFFE_PRESETS["cpu-small"]
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 255  # the centre square is white, the sides black
    small = np.full((32, 32, 3), 64, np.uint8)
    table = pa.table({"id": ["a", "b"], "image": pa.array([encode_png(wide), encode_png(small)], pa.binary())})
    batch = decode_batch(table, cfg, torch.device("cpu"))
    img = batch["image"]
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32
    assert float(img[0].min()) > 0.98, "the centre square of a wide image is kept"
    assert torch.allclose(img[1], torch.full((3, 32, 32), 64 / 255)), "an image at the right size is unchanged"
