"""Build SynSin from a config, with its discriminator, perceptual net and optimisers; save and load checkpoints.

Checkpoints are this library's own: ``{"format": "dl3d.synsin", "version": 1, "config": {...},
"generator": state_dict, "discriminator": state_dict | None, ...}``. Official facebookresearch/synsin
``.pth`` files use another module layout and are refused with a message saying so.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from dl3d.data import fs as fsx
from dl3d.synsin.config import SynSinConfig
from dl3d.synsin.discriminator import MultiScaleDiscriminator
from dl3d.synsin.model import SynSin
from dl3d.synsin.vgg import VGG19Features, load_vgg19_features

CHECKPOINT_FORMAT = "dl3d.synsin"
CHECKPOINT_VERSION = 1
PERCEPTUAL_OFF_MESSAGE = ("SynSin perceptual (VGG19) loss is OFF: no perceptual_weights file was given, so its "
                          "weight is 0 (random VGG weights are never used). Give the path of a torchvision "
                          "vgg19 state_dict to turn it on.")


def synsin_kwargs(cfg: SynSinConfig) -> dict[str, Any]:
    """The keyword arguments of ``SynSin`` taken from a config."""
    return dict(
        feature_dim=cfg.feature_dim, feature_width=cfg.feature_width, feature_blocks=cfg.feature_blocks,
        depth_filters=cfg.depth_filters, depth_levels=cfg.depth_levels, min_depth=cfg.min_depth,
        max_depth=cfg.max_depth, depth_mapping=cfg.depth_mapping, radius=cfg.radius,
        points_per_pixel=cfg.points_per_pixel, gamma=cfg.gamma, accumulation=cfg.accumulation,
        refine_width=cfg.refine_width, refine_downsamples=cfg.refine_downsamples,
        refine_mid_blocks=cfg.refine_mid_blocks, spectral_norm=cfg.spectral_norm,
    )


def build_synsin(cfg: SynSinConfig, device: str | torch.device = "cpu", *,
                 with_discriminator: bool | None = None, load_perceptual: bool = True) -> dict[str, Any]:
    """Build the SynSin generator, its multi-scale discriminator and (when configured) the perceptual net.

    with_discriminator: default ``cfg.uses_discriminator``; pass False for inference only.
    load_perceptual: read ``cfg.perceptual_weights`` (set False for inference).
    Returns dict(generator=SynSin, discriminator=MultiScaleDiscriminator | None,
    perceptual=VGG19Features | None, config=cfg). Warns (PERCEPTUAL_OFF_MESSAGE) when the config asks for
    a perceptual weight > 0 without a weights file.
    """
    if not isinstance(cfg, SynSinConfig):
        raise ValueError(f"expected a SynSinConfig, got {type(cfg).__name__}")
    generator = SynSin(**synsin_kwargs(cfg)).to(device)
    if with_discriminator is None:
        with_discriminator = cfg.uses_discriminator
    discriminator = None
    if with_discriminator:
        discriminator = MultiScaleDiscriminator(in_channels=3, width=cfg.disc_width, layers=cfg.disc_layers,
                                                scales=cfg.disc_scales).to(device)
    perceptual: VGG19Features | None = None
    if load_perceptual:
        if cfg.perceptual_enabled:
            perceptual = load_vgg19_features(cfg.perceptual_weights, device=device)
        elif cfg.perceptual_weight > 0:
            warnings.warn(PERCEPTUAL_OFF_MESSAGE, stacklevel=2)
    return {"generator": generator, "discriminator": discriminator, "perceptual": perceptual, "config": cfg}


def make_synsin_optimizers(models: Mapping[str, Any], cfg: SynSinConfig) -> dict[str, torch.optim.Optimizer | None]:
    """Adam for the generator and the discriminator with the config's rates and betas."""
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    g = torch.optim.Adam(models["generator"].parameters(), lr=cfg.lr_generator, betas=betas)
    d = models.get("discriminator")
    return {"generator": g,
            "discriminator": None if d is None else torch.optim.Adam(d.parameters(), lr=cfg.lr_discriminator,
                                                                     betas=betas)}


def synsin_checkpoint(models: Mapping[str, Any], *, optimizers: Mapping[str, Any] | None = None,
                      step: int | None = None) -> dict[str, Any]:
    """A checkpoint dict (for ``torch.save``) of ``build_synsin``'s models and, optionally, optimisers."""
    cfg: SynSinConfig = models["config"]
    d = models.get("discriminator")
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": dataclasses.asdict(cfg),
        "generator": models["generator"].state_dict(), "discriminator": None if d is None else d.state_dict(),
        "step": step,
    }
    if optimizers is not None:
        ckpt["optimizers"] = {k: (None if o is None else o.state_dict()) for k, o in optimizers.items()}
    return ckpt


def load_synsin_checkpoint(path_or_dict: str | os.PathLike | Mapping[str, Any], device: str | torch.device = "cpu",
                           *, with_discriminator: bool = True, load_perceptual: bool = False,
                           config_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild models from a checkpoint written by ``synsin_checkpoint``.

    path_or_dict: the checkpoint dict, or its ``.pt`` file at a local path or any fsspec URL.

    config_overrides: config fields to change (e.g. ``perceptual_weights`` on a new machine); only fields
    that do not change the network shapes make sense here. Returns ``build_synsin``'s dict plus ``step``
    and ``optimizers`` (state dicts, when saved); the models are on ``device``, the generator in eval mode.
    """
    if isinstance(path_or_dict, Mapping):
        ckpt, source = path_or_dict, "checkpoint dict"
    else:
        source = os.fspath(path_or_dict)
        ckpt = torch.load(fsx.open_asset(source, what="SynSin checkpoint"), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != CHECKPOINT_FORMAT:
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt and "opts" in ckpt:
            raise ValueError(f"{source}: this looks like an official facebookresearch/synsin checkpoint "
                             f"('state_dict' + 'opts'); its module layout differs and it is not supported")
        keys = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{source}: not a dl3d SynSin checkpoint (expected format {CHECKPOINT_FORMAT!r}; "
                         f"found {keys})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{source}: unsupported SynSin checkpoint version {ckpt.get('version')!r}, "
                         f"expected {CHECKPOINT_VERSION}")
    fields = {f.name for f in dataclasses.fields(SynSinConfig)}
    unknown = sorted(set(ckpt["config"]) - fields)
    if unknown:
        raise ValueError(f"{source}: checkpoint config has unknown fields {unknown}")
    cfg = SynSinConfig(**{**ckpt["config"], **dict(config_overrides or {})})
    has_d = with_discriminator and ckpt.get("discriminator") is not None
    models = build_synsin(cfg, device, with_discriminator=has_d, load_perceptual=load_perceptual)
    models["generator"].load_state_dict(ckpt["generator"])
    models["generator"].eval()
    if has_d:
        models["discriminator"].load_state_dict(ckpt["discriminator"])
    models["step"] = ckpt.get("step")
    models["optimizers"] = ckpt.get("optimizers")
    return models
