"""Image metrics for view synthesis: PSNR, SSIM and (with user-given VGG16 weights) perceptual distance.

All take batched (N, C, H, W) float tensors and return one value per image, shape (N,).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from dl3d.data import fs as fsx
from dl3d.metrics.vgg_weights import load_sliced_vgg_state


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"expected pred and target of one shape (N, C, H, W), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, *, max_val: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio, dB: ``10 log10(max_val**2 / MSE)`` per image.

    pred, target: (N, C, H, W), values in [0, max_val]. Returns (N,); +inf where the images are equal.
    """
    _check_pair(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(max_val ** 2 / mse)).to(pred.dtype)


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """(size,) normalised 1D Gaussian, centred, summing to 1."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, *, max_val: float = 1.0, window_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), mean over channels and valid window positions.

    Gaussian window ``window_size`` x ``window_size`` with std ``sigma`` (11, 1.5), C1 = (k1 L)^2,
    C2 = (k2 L)^2 with L = max_val; statistics over 'valid' windows only (no padding), per channel.
    pred, target: (N, C, H, W) in [0, max_val], H and W >= window_size. Returns (N,); 1 for equal images.
    """
    _check_pair(pred, target)
    n, c, h, w = pred.shape
    if h < window_size or w < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size}x{window_size} pixels, got {h}x{w}")
    x = pred.double().reshape(n * c, 1, h, w)
    y = target.double().reshape(n * c, 1, h, w)
    g = gaussian_window(window_size, sigma, dtype=torch.float64, device=pred.device)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, 'valid' positions
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        return F.conv2d(t, g.view(1, 1, -1, 1))

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.reshape(n, -1).mean(1).to(pred.dtype)


# LPIPS-style input scaling used by SynSin's perceptual similarity (PNet): inputs in [-1, 1].
_PNET_SHIFT = (-0.030, -0.088, -0.188)
_PNET_SCALE = (0.458, 0.448, 0.450)
# vgg16.features slices ending at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG16_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


class VGG16PerceptualNet(nn.Module):
    """Frozen VGG16 feature slices (relu1_2 ... relu5_3) for ``perceptual_distance``."""

    def __init__(self):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        features = make_layers(cfgs["D"], batch_norm=False)  # == torchvision vgg16(weights=None).features
        self.slices = nn.ModuleList([nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in _VGG16_SLICES])
        self.register_buffer("shift", torch.tensor(_PNET_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_PNET_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image: (N, 3, H, W) in [0, 1]. Returns the five feature maps."""
        h = (image * 2.0 - 1.0 - self.shift) / self.scale
        outs = []
        for s in self.slices:
            h = s(h)
            outs.append(h)
        return outs


def load_perceptual_net(path: str | os.PathLike, device: str | torch.device = "cpu") -> VGG16PerceptualNet:
    """VGG16 for ``perceptual_distance`` from a weights file (torchvision vgg16 state_dict, whole or ``features``).

    path: a local path or any fsspec URL. There is no default: without ImageNet weights the distance
    means nothing, so none is ever made up.
    """
    path = os.fspath(path)
    state = torch.load(fsx.open_asset(path, what="VGG16 weights file for perceptual_distance"),
                       map_location="cpu", weights_only=True)
    net = VGG16PerceptualNet()
    load_sliced_vgg_state(net, state, _VGG16_SLICES, arch="VGG16", source=path)
    return net.to(device)


def perceptual_distance(pred: torch.Tensor, target: torch.Tensor, net: VGG16PerceptualNet) -> torch.Tensor:
    """SynSin's perceptual similarity ("PercSim", lower is better): ``sum_l (1 - mean cos(f_l(pred), f_l(gt)))``.

    f_l: the five VGG16 feature maps of ``net`` (from ``load_perceptual_net``, i.e. user-given weights),
    cosine similarity over channels at each position, averaged over positions. pred, target: (N, 3, H, W)
    in [0, 1]. Returns (N,); 0 for equal images wherever their features are non-zero (as the official
    metric, a position whose feature vector is all zero counts as cosine 0).
    """
    _check_pair(pred, target)
    if pred.shape[1] != 3:
        raise ValueError(f"expected RGB images of shape (N, 3, H, W), got {tuple(pred.shape)}")
    total = pred.new_zeros(pred.shape[0])
    for a, b in zip(net(pred), net(target)):
        cos = F.cosine_similarity(a, b, dim=1, eps=1e-10)
        total = total + (1.0 - cos.flatten(1).mean(1))
    return total
