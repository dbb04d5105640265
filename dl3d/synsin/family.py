"""SynSin as a model family of the training driver (``dl3d train synsin``), on ``view_pairs`` datasets.

Two players: the generator (feature net, depth net, point renderer, refinement net) and the
multi-scale discriminator, each with its own Adam (the config's learning rates and betas, scaled each
step by its ``lr_schedule``). One training step is a generator update then a discriminator update,
as the official code does.
Evaluation reports L1, PSNR and SSIM of the synthesised target view, and the PSNR of the baseline
that copies the source image (a model must beat it to be worth anything).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from dl3d.data import arrow_to_tensor
from dl3d.data.images import decode_image, resize_image
from dl3d.data.view_tables import VIEW_PAIRS
from dl3d.metrics.image import psnr, ssim
from dl3d.synsin.builder import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, build_synsin
from dl3d.synsin.vgg import load_vgg19_features
from dl3d.synsin.config import SYNSIN_PRESETS, SynSinConfig
from dl3d.synsin.train_step import synsin_discriminator_step, synsin_generator_step
from dl3d.train.family import Batch, ModelFamily, Modules, Optimizers

INIT_SEED = 0
"""Seed of the parameter initialisation (every worker builds the same replicas)."""


def build(cfg: SynSinConfig) -> Modules:
    """Generator and (when the losses use one) discriminator, freshly initialised on the CPU."""
    torch.manual_seed(INIT_SEED)
    models = build_synsin(cfg, load_perceptual=False)
    modules = {"generator": models["generator"]}
    if models["discriminator"] is not None:
        modules["discriminator"] = models["discriminator"]
    return modules


def make_optimizers(modules: Modules, cfg: SynSinConfig) -> Optimizers:
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    opts = {"generator": torch.optim.Adam(modules["generator"].parameters(), lr=cfg.lr_generator, betas=betas)}
    if "discriminator" in modules:
        opts["discriminator"] = torch.optim.Adam(modules["discriminator"].parameters(), lr=cfg.lr_discriminator,
                                                 betas=betas)
    return opts


def decode_batch(table: pa.Table, cfg: SynSinConfig, device: torch.device) -> Batch:
    """``view_pairs`` rows -> src_img, tgt_img (N, 3, H, W) in [0, 1] at the config's size, K (N, 3, 3)
    scaled to that size, rel_pose (N, 4, 4) = T_tgt @ inv(T_src) (source camera -> target camera)."""
    h, w = cfg.image_height, cfg.image_width
    src, tgt = [], []
    K = torch.from_numpy(arrow_to_tensor(table.column("intrinsics"), (3, 3), name="intrinsics", source="batch").copy())
    for i in range(table.num_rows):
        a = decode_image(table.column("src_image")[i].as_py(), f"row {i} src_image")
        b = decode_image(table.column("tgt_image")[i].as_py(), f"row {i} tgt_image")
        K[i, 0] *= w / a.shape[1]
        K[i, 1] *= h / a.shape[0]
        src.append(_to_tensor(a, w, h))
        tgt.append(_to_tensor(b, w, h))
    src_pose = torch.from_numpy(arrow_to_tensor(table.column("src_pose"), (4, 4), name="src_pose", source="batch").copy())
    tgt_pose = torch.from_numpy(arrow_to_tensor(table.column("tgt_pose"), (4, 4), name="tgt_pose", source="batch").copy())
    rel = tgt_pose.double() @ torch.linalg.inv(src_pose.double())
    return {"src_img": torch.stack(src).to(device), "tgt_img": torch.stack(tgt).to(device), "K": K.to(device),
            "rel_pose": rel.float().to(device)}


def _to_tensor(img: np.ndarray, w: int, h: int) -> torch.Tensor:
    if img.shape[:2] != (h, w):
        img = resize_image(img, (w, h))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


@lru_cache(maxsize=2)
def _perceptual(path: str | None, device: str):
    return load_vgg19_features(path, device=device) if path else None


def _models(modules: Modules, cfg: SynSinConfig, device: torch.device) -> dict[str, Any]:
    perceptual = _perceptual(cfg.perceptual_weights, str(device)) if cfg.perceptual_enabled else None
    return {"generator": modules["generator"], "discriminator": modules.get("discriminator"),
            "perceptual": perceptual, "config": cfg}


def train_step(modules: Modules, optimizers: Optimizers, batch: Batch, step: int, cfg: SynSinConfig) -> dict[str, float]:
    models = _models(modules, cfg, batch["src_img"].device)
    factor = cfg.lr_factor(step)  # set from the step every time, so a resumed run follows the same schedule
    base = {"generator": cfg.lr_generator, "discriminator": cfg.lr_discriminator}
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            group["lr"] = base[name] * factor
    g_losses, out = synsin_generator_step(models, batch, optimizer=optimizers["generator"])
    metrics = {f"g_{k}": float(v) for k, v in g_losses.items()}
    metrics["lr_factor"] = factor
    if "discriminator" in optimizers:
        d_losses = synsin_discriminator_step(models, out["pred"].detach(), batch["tgt_img"],
                                             optimizer=optimizers["discriminator"])
        metrics.update({k if k.startswith("d_") else f"d_{k}": float(v) for k, v in d_losses.items()})
    return metrics


def evaluate(modules: Modules, batch: Batch, cfg: SynSinConfig) -> dict[str, float]:
    pred = modules["generator"](batch["src_img"], batch["K"], batch["rel_pose"])["pred"].clamp(0, 1)
    tgt = batch["tgt_img"]
    return {"l1": float((pred - tgt).abs().mean()), "psnr": float(psnr(pred, tgt).mean()),
            "ssim": float(ssim(pred, tgt).mean()), "psnr_copy_source": float(psnr(batch["src_img"], tgt).mean())}


SYNSIN_FAMILY = ModelFamily(
    name="synsin", config_cls=SynSinConfig, presets=SYNSIN_PRESETS, dataset_kind=VIEW_PAIRS.kind, schema=VIEW_PAIRS,
    build=build, make_optimizers=make_optimizers, decode_batch=decode_batch, train_step=train_step,
    evaluate=evaluate, find_unused_parameters=False,
    doc="SynSin single-image novel view synthesis (Wiles et al. 2020) on view_pairs datasets",
)


def synsin_checkpoint_from_training(state: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint of this family (``dl3d.train.read_checkpoint``'s dict) as a SynSin checkpoint
    dict for ``load_synsin_checkpoint`` (what ``dl3d synsin render --checkpoint`` loads)."""
    family = state.get("meta", {}).get("family")
    if family != SYNSIN_FAMILY.name:
        raise ValueError(f"this training checkpoint was written by model family {family!r}, not 'synsin'")
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": state["meta"]["model_config"],
            "generator": state["modules"]["generator"], "discriminator": state["modules"].get("discriminator"),
            "step": state["step"]}
