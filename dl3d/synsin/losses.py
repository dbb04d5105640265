"""SynSin's losses: L1, VGG19 perceptual, GAN (hinge / LS / original) and discriminator feature matching.

Weights and forms follow the official code: ``1.0 * L1 + 10.0 * perceptual`` on the images
(``--losses 1.0_l1 10.0_content``), the perceptual term ``sum_i w_i * L1(vgg_i(pred), vgg_i(gt))`` with
w = (1/32, 1/16, 1/8, 1/4, 1) over relu1_1 ... relu5_1, a hinge GAN averaged over the discriminator
scales, and feature matching ``sum_scales sum_layers L1(D(pred), D(gt).detach()) * lambda_feat / scales``
over every discriminator layer but the last. The L1 is taken on images mapped to [-1, 1] (the official
``--normalize_image``); the perceptual net sees [0, 1] images, ImageNet-normalised.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from dl3d.synsin.vgg import VGG19Features

PERCEPTUAL_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
GanMode = Literal["hinge", "ls", "original"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
        raise ValueError(f"expected pred and target images of one shape (N, 3, H, W), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of (N, 3, H, W) images in [0, 1], measured in [-1, 1] units (2x the [0, 1] error)."""
    _check_pair(pred, target)
    return 2.0 * (pred - target).abs().mean()


def perceptual_loss(pred: torch.Tensor, target: torch.Tensor, vgg: VGG19Features) -> torch.Tensor:
    """Weighted L1 between VGG19 relu{1..5}_1 features of (N, 3, H, W) images in [0, 1] (the target's detached).

    ``vgg`` must hold real (ImageNet-trained) weights loaded from a file; see ``load_vgg19_features``.
    """
    _check_pair(pred, target)
    fp = vgg(pred)
    with torch.no_grad():
        ft = vgg(target)
    return sum(w * F.l1_loss(a, b) for w, a, b in zip(PERCEPTUAL_LAYER_WEIGHTS, fp, ft))


def gan_loss(logits: list[list[torch.Tensor]] | list[torch.Tensor], *, real: bool, for_discriminator: bool,
             mode: GanMode = "hinge") -> torch.Tensor:
    """Adversarial loss averaged over discriminator scales.

    logits: a multi-scale discriminator's output (list over scales of lists of layer outputs, the last
    being (N, 1, h, w) patch logits), or a list of logit maps. real: whether the images are to be judged
    real. for_discriminator: hinge only -- the discriminator's ``max(0, 1 -+ D)`` form, else the
    generator's ``-D`` (which requires real=True).
    """
    maps = [s[-1] if isinstance(s, (list, tuple)) else s for s in logits]
    if not maps:
        raise ValueError("expected logits from at least one discriminator scale, got none")
    total = maps[0].new_zeros(())
    for x in maps:
        if mode == "hinge":
            if for_discriminator:
                total = total + (F.relu(1.0 - x) if real else F.relu(1.0 + x)).mean()
            else:
                if not real:
                    raise ValueError("the generator's hinge loss must target real (real=True)")
                total = total - x.mean()
        elif mode == "ls":
            total = total + F.mse_loss(x, torch.full_like(x, 1.0 if real else 0.0))
        elif mode == "original":
            total = total + F.binary_cross_entropy_with_logits(x, torch.full_like(x, 1.0 if real else 0.0))
        else:
            raise ValueError(f"mode must be 'hinge', 'ls' or 'original', got {mode!r}")
    return total / len(maps)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean over scales of the summed L1 between fake and (detached) real discriminator features.

    Every layer output but the last (the logits) is matched. Multiply by the config's
    ``feature_matching_weight`` (the official ``lambda_feat`` / scales is this weight times the mean).
    """
    if len(fake) != len(real) or not fake:
        raise ValueError(f"expected features from the same non-zero number of scales, got {len(fake)} and {len(real)}")
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real):
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + F.l1_loss(f, r.detach())
    return total / len(fake)
