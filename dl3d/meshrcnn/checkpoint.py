"""Mesh R-CNN checkpoints: this library's own ``.pt`` dicts, or training checkpoint folders of the driver.

``{"format": "dl3d.meshrcnn", "version": 1, "config": {...}, "model": state_dict, "categories": [...] | None,
"step": int | None}``. Official facebookresearch/meshrcnn ``.pth`` files (detectron2 layouts) are refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dl3d.meshrcnn.config import MeshRCNNConfig

CHECKPOINT_FORMAT = "dl3d.meshrcnn"
CHECKPOINT_VERSION = 1


def meshrcnn_checkpoint(model: nn.Module, cfg: MeshRCNNConfig, *, categories: list[str] | None = None,
                        step: int | None = None) -> dict[str, Any]:
    """A checkpoint dict (for ``torch.save``) of a model built by ``build_meshrcnn(cfg)``."""
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": dataclasses.asdict(cfg),
            "model": model.state_dict(), "categories": categories, "step": step}


def meshrcnn_config_of(ckpt: Mapping[str, Any], source: str = "checkpoint") -> MeshRCNNConfig:
    """The config a checkpoint dict was written with, after checking its format, version and fields
    (nothing is built).

    Raises:
        ValueError: not a dl3d Mesh R-CNN checkpoint, another version, or unknown config fields.
    """
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != CHECKPOINT_FORMAT:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{source}: not a dl3d Mesh R-CNN checkpoint (expected format {CHECKPOINT_FORMAT!r}; "
                         f"found {keys})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{source}: unsupported Mesh R-CNN checkpoint version {ckpt.get('version')!r}")
    fields = {f.name for f in dataclasses.fields(MeshRCNNConfig)}
    unknown = sorted(set(ckpt["config"]) - fields)
    if unknown:
        raise ValueError(f"{source}: checkpoint config has unknown fields {unknown}")
    return MeshRCNNConfig(**{**ckpt["config"], "backbone_weights": None})


def load_meshrcnn_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint", device: str | torch.device = "cpu"
                             ) -> tuple[nn.Module, MeshRCNNConfig, list[str] | None]:
    """(model in eval mode on ``device``, its config, category names or None) from a checkpoint dict.

    Raises:
        ValueError: not a dl3d Mesh R-CNN checkpoint, another version, unknown config fields, or a
            state_dict that does not fit the config's model.
    """
    from dl3d.meshrcnn.train_step import build_meshrcnn

    cfg = meshrcnn_config_of(ckpt, source)
    model = build_meshrcnn(cfg, load_weights=False)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"{source}: its weights do not fit a {cfg.arch} model: {str(exc)[:300]}") from None
    return model.to(device).eval(), cfg, ckpt.get("categories")
