"""Set-level metrics of image generators: KID (unbiased, block-averaged) and FID, on image features.

Both compare two sets of feature vectors, real ``(N, D)`` and generated ``(M, D)``:

- **KID** (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the polynomial kernel
  ``k(x, y) = (x . y / D + 1)^3``, computed on disjoint blocks of ``block_size`` real and as many
  generated vectors (both sets shuffled with a fixed seed) and averaged over the blocks;
  :func:`kid` returns the mean and the standard deviation over the blocks.
- **FID** (Heusel et al. 2017): ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` with the
  unbiased covariances, in float64; the trace of the matrix square root is taken from the eigenvalues
  of ``S_r^(1/2) S_g S_r^(1/2)`` (symmetric, so no general ``sqrtm`` is needed).

The features are the user's choice. The standard ones are the 2048-d pool features of the FID
Inception network, whose weights cannot be downloaded here: :func:`load_fid_inception` takes them from
a file (the pytorch-fid state dict). :class:`RandomFeatures` is the stand-in without them: a fixed,
seeded random convolutional network. Metrics on it are NOT comparable to published FID/KID and must be
reported under other names (``fid_randfeat``, ``kid_randfeat``); they still fall when two image sets
get closer in colour, layout and texture statistics, which is what a learning test needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_features(real: Tensor, fake: Tensor) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected features (N, D) and (M, D), got {tuple(real.shape)} and {tuple(fake.shape)}")


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """(N, D), (M, D) -> (N, M): ``(x . y / D + 1)^3``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased squared MMD of two equal-size sets (m, D) with :func:`polynomial_kernel` (m >= 2)."""
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise ValueError(f"expected two sets of m >= 2 vectors each, got {x.shape[0]} and {y.shape[0]}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off = m * (m - 1)
    return (kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off - 2 * kxy.mean()


def kid(real: Tensor, fake: Tensor, block_size: int = 100, seed: int = 0) -> tuple[float, float]:
    """KID between feature sets: mean and std over ``min(N, M) // block_size`` disjoint blocks.

    With fewer than ``block_size`` vectors in a set, one block of ``min(N, M)`` vectors is used.
    Raises ValueError for fewer than 2 vectors or mismatched widths.
    """
    _check_features(real, fake)
    n = min(real.shape[0], fake.shape[0])
    if n < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated feature vectors, got {real.shape[0]} and "
                         f"{fake.shape[0]}")
    m = min(block_size, n)
    blocks = n // m
    g = torch.Generator().manual_seed(seed)
    pr, pf = torch.randperm(real.shape[0], generator=g), torch.randperm(fake.shape[0], generator=g)
    x, y = real.double()[pr], fake.double()[pf]
    vals = torch.stack([mmd2_unbiased(x[i * m:(i + 1) * m], y[i * m:(i + 1) * m]) for i in range(blocks)])
    return float(vals.mean()), float(vals.std(unbiased=False)) if blocks > 1 else 0.0


def _sqrt_psd(a: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def fid(real: Tensor, fake: Tensor) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets (unbiased covariances, float64)."""
    _check_features(real, fake)
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 vectors per set, got {real.shape[0]} and {fake.shape[0]}")
    x, y = real.double(), fake.double()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = torch.cov(x.T).reshape(x.shape[1], -1), torch.cov(y.T).reshape(y.shape[1], -1)
    r = _sqrt_psd(s1)
    cross = torch.linalg.eigvalsh(r @ s2 @ r).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * cross)


class RandomFeatures(nn.Module):
    """A fixed random feature extractor: (B, 3, H, W) images in [0, 1] -> (B, 3.5 * width) features.

    Images are resized to 64 x 64 (bilinear, antialiased) and mapped to [-1, 1]; three 4x4 stride-2 convs
    (widths width/4, width/2, width; weights N(0, 2 / fan_in), no bias) with LeakyReLU(0.2) follow. The
    features are every layer's per-channel mean and standard deviation over the image, last layer first
    (``2 * (width + width/2 + width/4)`` values). The weights come from
    ``torch.Generator().manual_seed(seed)`` on the CPU, so the same seed gives the same extractor on any
    machine. Not trained: see the module docstring before comparing its numbers with anything.
    """

    def __init__(self, width: int = 128, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        widths = [3, width // 4, width // 2, width]
        for i in range(3):
            fan_in = widths[i] * 16
            w = torch.randn(widths[i + 1], widths[i], 4, 4, generator=g) * math.sqrt(2.0 / fan_in)
            self.register_buffer(f"w{i}", w)
        self.dim = 2 * sum(widths[1:])

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = F.interpolate(images.float(), size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        x = x * 2 - 1
        stats = []
        for i in range(3):
            x = F.leaky_relu(F.conv2d(x, getattr(self, f"w{i}"), stride=2, padding=1), 0.2)
            stats.append(torch.cat((x.mean((2, 3)), x.std((2, 3))), dim=1))
        return torch.cat(stats[::-1], dim=1)


__all__ = ["RandomFeatures", "fid", "kid", "mmd2_unbiased", "polynomial_kernel"]
