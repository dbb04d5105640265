"""GIRAFFE as a model family of the training driver (``dl3d train giraffe``), on ``images`` datasets.

Two players, each with RMSprop (official ``optimizer: RMSprop``, lr 5e-4 generator / 1e-4 discriminator
at 64 px). One training step is the official one: a generator step (non-saturating loss
``BCE(D(G(z)), 1)``), the EMA update of the generator (beta 0.999), then a discriminator step on a
fresh fake batch: ``BCE(D(x), 1) + BCE(D(G(z)), 0) + r1_weight * R1`` with
``R1 = mean over the batch of sum ||grad_x D(x)||^2`` on the reals (official ``compute_grad2``,
reg 10, no 1/2 factor). The discriminator sees reals and fakes in ONE forward (it has no
normalisation, so this equals two forwards; DDP needs one forward per backward).

Evaluation (with the EMA generator): per batch, the discriminator's mean probability on reals and on
fakes; over the whole held-out split (:func:`evaluate_set`), KID and FID between the held-out images and
as many generated ones, on Inception features when ``inception_weights`` is given (``kid``, ``fid``),
else on :class:`dl3d.metrics.gan.RandomFeatures` (``kid_randfeat``, ``fid_randfeat``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from dl3d.data.images import decode_image, resize_image
from dl3d.data.view_tables import IMAGES
from dl3d.giraffe.config import GIRAFFE_PRESETS, GiraffeConfig
from dl3d.giraffe.discriminator import DCDiscriminator
from dl3d.giraffe.ema import attach_ema, ema_copy, update_ema
from dl3d.giraffe.generator import GiraffeGenerator
from dl3d.train.family import Batch, ModelFamily, Modules, Optimizers, unwrap

INIT_SEED = 0
"""Seed of the parameter initialisation (every worker builds the same replicas)."""
EVAL_SEED = 1234
"""Seed of the generated images of every set-level evaluation (the same latents each time)."""


def build_giraffe(cfg: GiraffeConfig, *, ema: bool = True) -> Modules:
    """Generator (with EMA buffers) and discriminator, freshly initialised on the CPU from ``INIT_SEED``."""
    torch.manual_seed(INIT_SEED)
    gen = GiraffeGenerator(cfg)
    if ema:
        attach_ema(gen)
    return {"generator": gen, "discriminator": DCDiscriminator(image_size=cfg.image_size, top_width=cfg.disc_features)}


def make_optimizers(modules: Modules, cfg: GiraffeConfig) -> Optimizers:
    return {"generator": torch.optim.RMSprop(modules["generator"].parameters(), lr=cfg.lr_generator),
            "discriminator": torch.optim.RMSprop(modules["discriminator"].parameters(), lr=cfg.lr_discriminator)}


def decode_batch(table: pa.Table, cfg: GiraffeConfig, device: torch.device) -> Batch:
    """``images`` rows -> image (N, 3, S, S) in [0, 1]: centre-cropped to a square, resized to ``image_size``."""
    s = cfg.image_size
    out = []
    for i in range(table.num_rows):
        img = decode_image(table.column("image")[i].as_py(), f"row {i} image")
        out.append(to_square_tensor(img, s))
    return {"image": torch.stack(out).to(device)}


def to_square_tensor(img: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) float in [0, 1]: centre square crop, then bicubic resize."""
    h, w = img.shape[:2]
    if h != w:
        m = min(h, w)
        y0, x0 = (h - m) // 2, (w - m) // 2
        img = img[y0:y0 + m, x0:x0 + m]
    if img.shape[0] != size:
        img = resize_image(img, (size, size))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def generator_losses(modules: Modules, batch_size: int, cfg: GiraffeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-saturating generator loss of a fresh fake batch; returns (loss, fake images)."""
    fake = modules["generator"](batch_size, mode="training")
    return F.binary_cross_entropy_with_logits(d := modules["discriminator"](fake), torch.ones_like(d)), fake


def discriminator_losses(modules: Modules, real: torch.Tensor, fake: torch.Tensor,
                         cfg: GiraffeConfig) -> dict[str, torch.Tensor]:
    """BCE on reals (1) and fakes (0) from one discriminator forward, and R1 on the reals."""
    real = real.detach().requires_grad_(True)
    logits = modules["discriminator"](torch.cat((real, fake.detach())))
    d_real, d_fake = logits[:real.shape[0]], logits[real.shape[0]:]
    loss_real = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
    loss_fake = F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    if cfg.r1_weight > 0:
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        r1 = grad.pow(2).flatten(1).sum(1).mean()
    else:
        r1 = torch.zeros((), device=real.device)
    return {"real": loss_real, "fake": loss_fake, "r1": r1, "total": loss_real + loss_fake + cfg.r1_weight * r1}


def train_step(modules: Modules, optimizers: Optimizers, batch: Batch, step: int, cfg: GiraffeConfig) -> dict[str, float]:
    real = batch["image"]
    optimizers["generator"].zero_grad(set_to_none=True)
    g_loss, _ = generator_losses(modules, real.shape[0], cfg)
    g_loss.backward()
    optimizers["generator"].step()
    if cfg.ema_beta > 0:
        update_ema(unwrap(modules["generator"]), cfg.ema_beta)
    with torch.no_grad():  # a fresh fake batch, from the updated generator (official)
        fake = unwrap(modules["generator"])(real.shape[0], mode="training")
    optimizers["discriminator"].zero_grad(set_to_none=True)  # drops the generator step's D gradients too
    d = discriminator_losses(modules, real, fake, cfg)
    d["total"].backward()
    optimizers["discriminator"].step()
    return {"g_loss": g_loss.item(), "d_real": d["real"].item(), "d_fake": d["fake"].item(), "d_r1": d["r1"].item()}


def eval_generator(generator: torch.nn.Module) -> torch.nn.Module:
    """The generator to evaluate and render with: its EMA copy when it has one, else itself (eval mode)."""
    plain = unwrap(generator)
    return ema_copy(plain) if hasattr(plain, "ema") else plain.eval()


def evaluate(modules: Modules, batch: Batch, cfg: GiraffeConfig) -> dict[str, float]:
    """Discriminator probabilities on the held-out reals and on as many EMA-generator fakes."""
    real = batch["image"]
    with torch.random.fork_rng(devices=[real.device] if real.device.type == "cuda" else []):
        torch.manual_seed(EVAL_SEED)
        fake = eval_generator(modules["generator"])(real.shape[0], mode="eval")
    d = modules["discriminator"]
    return {"d_prob_real": float(torch.sigmoid(d(real)).mean()), "d_prob_fake": float(torch.sigmoid(d(fake)).mean())}


@lru_cache(maxsize=2)
def feature_extractor(weights: str | None, device: str) -> tuple[torch.nn.Module, str]:
    """(extractor, metric suffix): the FID Inception network from ``weights`` (suffix ``""``), or the seeded
    random features (suffix ``"_randfeat"``)."""
    if weights:
        from dl3d.metrics.fid_inception import load_fid_inception

        return load_fid_inception(weights).to(device).eval(), ""
    from dl3d.metrics.gan import RandomFeatures

    return RandomFeatures(seed=0).to(device).eval(), "_randfeat"


def evaluate_set(modules: Modules, batches: Iterable[Batch], cfg: GiraffeConfig) -> dict[str, float]:
    """KID (mean and block std) and FID between every held-out image and as many EMA-generator images
    (latents from ``EVAL_SEED``, the same at every evaluation)."""
    from dl3d.metrics.gan import fid, kid

    gen = eval_generator(modules["generator"])
    real_f, fake_f = [], []
    with torch.random.fork_rng(devices=[gen.device] if gen.device.type == "cuda" else []):
        torch.manual_seed(EVAL_SEED)
        for batch in batches:
            real = batch["image"]
            extractor, suffix = feature_extractor(cfg.inception_weights, str(real.device))
            real_f.append(extractor(real).double().cpu())
            fake_f.append(extractor(gen(real.shape[0], mode="eval").clamp(0, 1)).double().cpu())
    if not real_f:
        raise ValueError("evaluate_set got no held-out batch")
    real_all, fake_all = torch.cat(real_f), torch.cat(fake_f)
    k, k_std = kid(real_all, fake_all, block_size=cfg.eval_block_size)
    return {f"kid{suffix}": k, f"kid{suffix}_std": k_std, f"fid{suffix}": fid(real_all, fake_all),
            "images": float(real_all.shape[0])}


GIRAFFE_FAMILY = ModelFamily(
    name="giraffe", config_cls=GiraffeConfig, presets=GIRAFFE_PRESETS, dataset_kind=IMAGES.kind, schema=IMAGES,
    build=build_giraffe, make_optimizers=make_optimizers, decode_batch=decode_batch, train_step=train_step,
    evaluate=evaluate, evaluate_set=evaluate_set, find_unused_parameters=False,
    doc="GIRAFFE compositional generative feature fields (Niemeyer & Geiger 2021) on images datasets",
)


def load_giraffe_generator(state: dict[str, Any], device: str | torch.device = "cpu", *,
                           use_ema: bool = True) -> tuple[GiraffeGenerator, GiraffeConfig]:
    """The (EMA) generator and its config from a training checkpoint dict (``dl3d.train.read_checkpoint``).

    Raises:
        ValueError: the checkpoint was written by another family or holds no generator.
    """
    family = state.get("meta", {}).get("family")
    if family != GIRAFFE_FAMILY.name:
        raise ValueError(f"this training checkpoint was written by model family {family!r}, not 'giraffe'")
    if "generator" not in state.get("modules", {}):
        raise ValueError("this GIRAFFE checkpoint holds no 'generator' state")
    cfg = GiraffeConfig(**state["meta"]["model_config"])
    gen = build_giraffe(cfg)["generator"]
    gen.load_state_dict(state["modules"]["generator"])
    gen = ema_copy(gen) if use_ema else gen.eval()
    return gen.to(device), cfg
