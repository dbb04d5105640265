"""One SynSin training step: the generator's losses and update, then the discriminator's (as the official
``BaseModel.__call__``: G step on ``L1 + perceptual + GAN + feature matching``, then D step on the
detached prediction).

Typical loop (``models`` from ``build_synsin``, ``opts`` from ``make_synsin_optimizers``)::

    g_losses, out = synsin_generator_step(models, batch, optimizer=opts["generator"])
    d_losses = synsin_discriminator_step(models, out["pred"], batch["tgt_img"], optimizer=opts["discriminator"])

``batch``: dict(src_img (N, 3, H, W) [0, 1], tgt_img (N, 3, H, W) [0, 1], K (N, 3, 3) pixels, rel_pose
(N, 4, 4) source -> target camera, optional K_target (N, 3, 3)).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dl3d.synsin.config import SynSinConfig
from dl3d.synsin.losses import feature_matching_loss, gan_loss, l1_loss, perceptual_loss

BATCH_KEYS = ("src_img", "tgt_img", "K", "rel_pose")


def _check_batch(batch: Mapping[str, torch.Tensor]) -> None:
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"SynSin batch is missing {missing}; expected keys {list(BATCH_KEYS)} "
                         f"(+ optional 'K_target')")


def discriminate(discriminator: torch.nn.Module, fake: torch.Tensor, real: torch.Tensor,
                 ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """One discriminator pass over ``cat(fake, real)`` (images in [0, 1], fed in [-1, 1]), split back.

    As the official ``discriminate``: a single forward per backward, which DistributedDataParallel needs.
    Returns (fake outputs, real outputs), each a list over scales of lists of layer outputs.
    """
    n = fake.shape[0]
    outs = discriminator(torch.cat((fake, real), dim=0) * 2.0 - 1.0)
    return [[t[:n] for t in scale] for scale in outs], [[t[n:] for t in scale] for scale in outs]


def synsin_generator_losses(pred: torch.Tensor, target: torch.Tensor, cfg: SynSinConfig, *,
                            discriminator: torch.nn.Module | None = None,
                            perceptual: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The generator's weighted loss terms for (N, 3, H, W) images in [0, 1].

    Returns dict(total, l1, [perceptual], [gan], [feature_matching], psnr) -- unweighted terms, ``total``
    their weighted sum; ``psnr`` (dB, detached) is for logging. The perceptual term is present only when
    ``perceptual`` is given and ``cfg.perceptual_enabled`` (a weights file was configured).
    """
    losses: dict[str, torch.Tensor] = {"l1": l1_loss(pred, target)}
    total = cfg.l1_weight * losses["l1"]
    if perceptual is not None and cfg.perceptual_enabled:
        losses["perceptual"] = perceptual_loss(pred, target, perceptual)
        total = total + cfg.perceptual_weight * losses["perceptual"]
    if cfg.uses_discriminator:
        if discriminator is None:
            raise ValueError("this config has GAN / feature-matching weights > 0 but no discriminator was given")
        fake, real = discriminate(discriminator, pred, target)
        losses["gan"] = gan_loss(fake, real=True, for_discriminator=False, mode=cfg.gan_mode)
        total = total + cfg.gan_weight * losses["gan"]
        if cfg.feature_matching_weight > 0:
            losses["feature_matching"] = feature_matching_loss(fake, real)
            total = total + cfg.feature_matching_weight * losses["feature_matching"]
    with torch.no_grad():
        mse = (pred.detach() - target).pow(2).flatten(1).mean(1).clamp_min(1e-12)
        losses["psnr"] = (-10.0 * torch.log10(mse)).mean()
    losses["total"] = total
    return losses


def synsin_discriminator_losses(pred: torch.Tensor, target: torch.Tensor, discriminator: torch.nn.Module,
                                cfg: SynSinConfig) -> dict[str, torch.Tensor]:
    """The discriminator's loss on a (detached) prediction and the real target, images in [0, 1].

    Returns dict(total, d_fake, d_real).
    """
    fake, real = discriminate(discriminator, pred.detach(), target)
    d_fake = gan_loss(fake, real=False, for_discriminator=True, mode=cfg.gan_mode)
    d_real = gan_loss(real, real=True, for_discriminator=True, mode=cfg.gan_mode)
    return {"total": d_fake + d_real, "d_fake": d_fake, "d_real": d_real}


def synsin_generator_step(models: Mapping[str, Any], batch: Mapping[str, torch.Tensor], *,
                          optimizer: torch.optim.Optimizer | None = None,
                          ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Forward the generator on ``batch``, compute its losses and, with ``optimizer``, update it.

    models: ``build_synsin``'s dict (generator, discriminator, perceptual, config); either network may be
    wrapped (e.g. in DistributedDataParallel). As in the official code the backward also leaves gradients
    on the discriminator's parameters; ``synsin_discriminator_step`` zeroes them before its own backward
    (a caller doing its own backward must zero them too). Returns (losses as ``synsin_generator_losses``,
    the generator's output dict); without ``optimizer`` the losses keep their graph, for the caller's
    ``backward``.
    """
    _check_batch(batch)
    cfg: SynSinConfig = models["config"]
    generator = models["generator"]
    out = generator(batch["src_img"], batch["K"], batch["rel_pose"], K_target=batch.get("K_target"))
    losses = synsin_generator_losses(out["pred"], batch["tgt_img"], cfg, discriminator=models.get("discriminator"),
                                     perceptual=models.get("perceptual"))
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
    return ({k: v.detach() for k, v in losses.items()} if optimizer is not None else losses), out


def synsin_discriminator_step(models: Mapping[str, Any], pred: torch.Tensor, target: torch.Tensor, *,
                              optimizer: torch.optim.Optimizer | None = None) -> dict[str, torch.Tensor]:
    """The discriminator's losses on (pred detached, target) and, with ``optimizer``, its update.

    Returns {} when the config uses no discriminator (GAN and feature-matching weights 0). Without
    ``optimizer`` the losses keep their graph, for the caller's ``backward``.
    """
    cfg: SynSinConfig = models["config"]
    discriminator = models.get("discriminator")
    if not cfg.uses_discriminator:
        return {}
    if discriminator is None:
        raise ValueError("this config has GAN / feature-matching weights > 0 but models has no discriminator")
    losses = synsin_discriminator_losses(pred, target, discriminator, cfg)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        return {k: v.detach() for k, v in losses.items()}
    return losses
