"""PSNR, SSIM and perceptual distance against hand-computed values and a naive SSIM."""

from __future__ import annotations

import math

import pytest
import torch

from dl3d.metrics.image import gaussian_window, load_perceptual_net, perceptual_distance, psnr, ssim


def test_psnr_identical_is_inf():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_constant_offset_by_hand():
    # MSE of a constant 0.1 offset is 0.01 -> 10 log10(1 / 0.01) = 20 dB; 0.05 -> 26.0206 dB.
    x = torch.full((2, 3, 4, 5), 0.3)
    out = psnr(x + torch.tensor([0.1, 0.05]).view(2, 1, 1, 1), x)
    torch.testing.assert_close(out, torch.tensor([20.0, 20 * math.log10(1 / 0.05)]), atol=1e-4, rtol=0)
    # max_val = 255: same images scaled -> same PSNR.
    torch.testing.assert_close(psnr((x + 0.1) * 255, x * 255, max_val=255.0)[0], torch.tensor(20.0),
                               atol=1e-3, rtol=0)


def _ssim_naive(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5) -> float:
    """Per-pixel loop: SSIM of one (C, H, W) pair over valid 11x11 Gaussian windows (Wang et al. 2004)."""
    g = gaussian_window(size, sigma)
    w2 = g[:, None] * g[None, :]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    c, h, w = x.shape
    for ch in range(c):
        for i in range(h - size + 1):
            for j in range(w - size + 1):
                px, py = x[ch, i:i + size, j:j + size], y[ch, i:i + size, j:j + size]
                mx, my = (w2 * px).sum(), (w2 * py).sum()
                vx = (w2 * (px - mx) ** 2).sum()
                vy = (w2 * (py - my) ** 2).sum()
                cxy = (w2 * (px - mx) * (py - my)).sum()
                vals.append(((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).item())
    return sum(vals) / len(vals)


def test_ssim_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 14, 13, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(2, 3, 14, 13, generator=g, dtype=torch.float64)).clamp(0, 1)
    out = ssim(x, y)
    assert out.shape == (2,)
    for n in range(2):
        assert out[n].item() == pytest.approx(_ssim_naive(x[n], y[n]), abs=1e-5)
    assert 0.2 < out.min().item() < 0.95


def test_ssim_identical_is_one_and_window_sums_to_one():
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(ssim(x, x), torch.ones(1), atol=1e-6, rtol=0)
    assert gaussian_window().sum().item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"expected pred and target of one shape \(N, C, H, W\)"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15))


def test_perceptual_distance_needs_a_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="VGG16 weights file for perceptual_distance not found"):
        load_perceptual_net(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"not a VGG16 state_dict: missing '0.bias'"):
        load_perceptual_net(tmp_path / "partial.pth")


def test_perceptual_distance_with_given_weights(tmp_path):
    # Stand-in weights (random, saved in torchvision's vgg16 'features.*' layout): they test the
    # plumbing and the formula, not perceptual quality.
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    feats = make_layers(cfgs["D"])
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, tmp_path / "vgg16.pth")
    net = load_perceptual_net(tmp_path / "vgg16.pth")
    torch.testing.assert_close(net.slices[0][0].weight, feats[0].weight)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g)
    y = (x + 0.3 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    d_same = perceptual_distance(x, x, net)
    d_diff = perceptual_distance(x, y, net)
    assert d_same.shape == (2,)
    assert d_same.abs().max().item() < 1e-5
    assert (d_diff > 0.01).all() and (d_diff <= 5.0).all()
    torch.testing.assert_close(d_diff, perceptual_distance(y, x, net), atol=1e-5, rtol=0)
