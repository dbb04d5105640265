"""The GIRAFFE generator: object and background feature fields, composition, volume rendering, neural renderer.

Scene controls (each a tensor on the generator's device):

- ``latents``: ``(z_shape_obj (B, K, z), z_app_obj (B, K, z), z_shape_bg (B, z_bg), z_app_bg (B, z_bg))``;
- ``camera``: (B, 4, 4) camera-to-world poses (:func:`dl3d.giraffe.camera.camera_pose`);
- ``boxes``: ``(s (B, K, 3), t (B, K, 3), R (B, K, 3, 3))`` (:mod:`dl3d.giraffe.boxes`);
- ``bg_rotation``: (B, 3, 3) rotation applied to background points and rays;
- ``existence``: optional (B, K) bool, False drops that object (its density is zero).

K may differ from the config's ``n_boxes`` (render programs add objects). In ``training`` mode ray
depths are jittered and N(0, 1) noise is added to every field's raw density (objects before the box
mask, as the official code); in ``eval`` mode neither.

Object fields are evaluated with one of two schemes giving the same image: ``dense`` runs the object
MLP on every ray sample and zeroes the density outside the object's padded box afterwards (official);
``box`` runs it only on the samples inside the box (features elsewhere are never used: their weight in
the composition is ``0 / denominator``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from dl3d.giraffe.boxes import dirs_to_box, sample_boxes, sample_object_existence, to_box
from dl3d.giraffe.camera import camera_pose, focal_from_fov, pixel_rays
from dl3d.giraffe.config import GiraffeConfig
from dl3d.giraffe.feature_field import FeatureField
from dl3d.giraffe.neural_renderer import NeuralRenderer
from dl3d.giraffe.volume import ZERO_DENSITY, composite, sample_depths, volume_weights

Latents = tuple[Tensor, Tensor, Tensor, Tensor]
Boxes = tuple[Tensor, Tensor, Tensor]


class Rendered(NamedTuple):
    """Output of :meth:`GiraffeGenerator.render`."""

    image: Tensor
    """(B, 3, S, S) RGB in (0, 1)."""
    features: Tensor
    """(B, C, r, r) volume-rendered feature image."""
    alpha: Tensor | None
    """(B, K, r, r) per-object opacity (each object rendered alone, last distance 0), when asked."""


class GiraffeGenerator(nn.Module):
    """Feature fields + neural renderer; :meth:`sample_scene` draws the random controls of the prior."""

    def __init__(self, cfg: GiraffeConfig):
        super().__init__()
        self.cfg = cfg
        common = dict(feature_dim=cfg.feature_dim, n_freq_points=cfg.n_freq_points, n_freq_dirs=cfg.n_freq_dirs)
        self.object_field = FeatureField(hidden=cfg.object_hidden, blocks=cfg.object_blocks, skips=cfg.object_skips,
                                         z_dim=cfg.z_dim, downscale=cfg.object_downscale, **common)
        self.background_field = FeatureField(hidden=cfg.bg_hidden, blocks=cfg.bg_blocks, skips=cfg.bg_skips,
                                             z_dim=cfg.z_dim_bg, downscale=cfg.bg_downscale, **common)
        self.neural_renderer = NeuralRenderer(input_dim=cfg.feature_dim, n_feat=cfg.renderer_features,
                                              min_feat=cfg.renderer_min_features, blocks=cfg.renderer_blocks)
        self.focal = focal_from_fov(cfg.fov)

    @property
    def device(self) -> torch.device:
        return self.neural_renderer.conv_rgb[0].weight.device

    # ----- the prior --------------------------------------------------------------------------------
    def sample_latents(self, batch: int, temperature: float = 1.0, n_boxes: int | None = None) -> Latents:
        """N(0, temperature^2) codes: (B, K, z), (B, K, z), (B, z_bg), (B, z_bg)."""
        k, dev = self.cfg.n_boxes if n_boxes is None else n_boxes, self.device
        z, zb = self.cfg.z_dim, self.cfg.z_dim_bg
        return (torch.randn(batch, k, z, device=dev) * temperature, torch.randn(batch, k, z, device=dev) * temperature,
                torch.randn(batch, zb, device=dev) * temperature, torch.randn(batch, zb, device=dev) * temperature)

    def camera_at(self, u: Tensor, v: Tensor) -> Tensor:
        """(B,) controls in [0, 1] within the config's ranges -> (B, 4, 4) camera-to-world poses."""
        (u0, u1), (v0, v1) = self.cfg.range_u, self.cfg.range_v
        return camera_pose(u0 + u * (u1 - u0), v0 + v * (v1 - v0), self.cfg.radius)

    def sample_camera(self, batch: int) -> Tensor:
        return self.camera_at(torch.rand(batch, device=self.device), torch.rand(batch, device=self.device))

    def bg_rotation_at(self, val: Tensor) -> Tensor:
        """(B,) controls in [0, 1] -> (B, 3, 3) rotations about z within ``bg_rotation_range``."""
        from dl3d.giraffe.boxes import rotation_z

        lo, hi = self.cfg.bg_rotation_range
        return rotation_z(lo + val * (hi - lo))

    def sample_bg_rotation(self, batch: int) -> Tensor:
        """One draw for the whole batch (official)."""
        return self.bg_rotation_at(torch.rand(1, device=self.device).expand(batch))

    def sample_scene(self, batch: int) -> dict:
        """Random latents, camera, boxes, background rotation and (CLEVR2345) object existence."""
        scene = {"latents": self.sample_latents(batch), "camera": self.sample_camera(batch),
                 "boxes": sample_boxes(self.cfg, batch, device=self.device), "bg_rotation": self.sample_bg_rotation(batch)}
        if self.cfg.sample_object_existence:
            scene["existence"] = sample_object_existence(batch, self.cfg.n_boxes).to(self.device)
        return scene

    # ----- rendering --------------------------------------------------------------------------------
    def forward(self, batch: int | None = None, *, mode: Literal["training", "eval"] = "training",
                scheme: Literal["box", "dense"] | None = None, **scene) -> Tensor:
        """Images (B, 3, S, S) of the given scene controls (keyword arguments of :meth:`render`), the
        missing ones drawn from the prior; ``mode`` defaults to training, as the official generator."""
        return self.render(**self._complete(batch, scene), mode=mode, scheme=scheme).image

    def _complete(self, batch: int | None, scene: dict) -> dict:
        given = {k: v for k, v in scene.items() if v is not None}
        if "latents" in given:
            batch = given["latents"][0].shape[0]
        if batch is None:
            raise ValueError("give batch or latents")
        prior = self.sample_scene(batch)
        if "latents" in given and "boxes" not in given and given["latents"][0].shape[1] != self.cfg.n_boxes:
            raise ValueError("latents with another object count than n_boxes need their boxes")
        if "boxes" in given or ("latents" in given and given["latents"][0].shape[1] != self.cfg.n_boxes):
            prior.pop("existence", None)
        return {**prior, **given}

    def render(self, latents: Latents, camera: Tensor, boxes: Boxes, bg_rotation: Tensor,
               existence: Tensor | None = None, mode: Literal["training", "eval"] = "eval",
               scheme: Literal["box", "dense"] | None = None, return_alpha: bool = False,
               render_background: bool = True, only_background: bool = False, **_unused) -> Rendered:
        """Render the scenes; see the module docstring for the controls' shapes."""
        if _unused:
            raise ValueError(f"unknown scene controls {sorted(_unused)}")
        feats, alpha = self.volume_render(latents, camera, boxes, bg_rotation, existence=existence, mode=mode,
                                          scheme=scheme, return_alpha=return_alpha,
                                          render_background=render_background, only_background=only_background)
        return Rendered(self.neural_renderer(feats), feats, alpha)

    def volume_render(self, latents: Latents, camera: Tensor, boxes: Boxes, bg_rotation: Tensor, *,
                      existence: Tensor | None = None, mode: str = "eval", scheme: str | None = None,
                      return_alpha: bool = False, render_background: bool = True,
                      only_background: bool = False) -> tuple[Tensor, Tensor | None]:
        """Feature image (B, C, r, r) and, with ``return_alpha``, per-object opacity (B, K, r, r)."""
        cfg = self.cfg
        if mode not in ("training", "eval"):
            raise ValueError(f"mode must be 'training' or 'eval', got {mode!r}")
        scheme = scheme or cfg.scheme
        if scheme not in ("box", "dense"):
            raise ValueError(f"scheme must be 'box' or 'dense', got {scheme!r}")
        if only_background and not render_background:
            raise ValueError("only_background and render_background=False exclude each other")
        z_shape, z_app, z_shape_bg, z_app_bg = latents
        b, k = z_shape.shape[:2]
        s, t, R = boxes
        if s.shape[:2] != (b, k) or t.shape[:2] != (b, k) or R.shape[:2] != (b, k):
            raise ValueError(f"boxes must have shapes (B, K, 3), (B, K, 3), (B, K, 3, 3) with B, K = {b}, {k}; got "
                             f"{tuple(s.shape)}, {tuple(t.shape)}, {tuple(R.shape)}")
        res, n = cfg.feature_resolution, cfg.n_samples
        origin, rays = pixel_rays(res, self.focal, camera)  # (B, 3), (B, P, 3)
        p_count = rays.shape[1]
        depths = sample_depths(cfg.depth_range[0], cfg.depth_range[1], b, p_count, n, jitter=mode == "training",
                               device=rays.device, dtype=rays.dtype)
        points = origin[:, None, None] + depths[..., None] * rays[:, :, None]  # (B, P, N, 3) world
        training = mode == "training"
        sigmas, feats = [], []
        objects = 0 if only_background else k
        for i in range(objects):
            present = None if existence is None else existence[:, i]
            sig, feat = self._object(points, rays, z_shape[:, i], z_app[:, i], s[:, i], t[:, i], R[:, i],
                                     present, scheme, training)
            sigmas.append(sig)
            feats.append(feat)
        if render_background:
            pts = points.reshape(b, -1, 3) @ bg_rotation.transpose(1, 2)
            dirs = (rays @ bg_rotation.transpose(1, 2))[:, :, None].expand(b, p_count, n, 3).reshape(b, -1, 3)
            sig, feat = self.background_field(pts, dirs, z_shape_bg, z_app_bg)
            sig = sig.reshape(b, p_count, n)
            if training:
                sig = sig + torch.randn_like(sig)
            sigmas.append(sig)
            feats.append(feat.reshape(b, p_count, n, -1))
        if not sigmas:
            raise ValueError("nothing to render: no objects and no background")
        sigma = torch.relu(torch.stack(sigmas))
        norm = rays.norm(dim=-1, keepdim=True)
        if scheme == "dense":  # the official order: compose every field's features, then integrate
            sigma_sum, feat_mix = composite(sigma, torch.stack(feats))
            weights = volume_weights(depths, norm, sigma_sum)
            fmap = (weights.unsqueeze(-1) * feat_mix).sum(-2)  # (B, P, C)
        else:  # the same sum, field by field: sum_n w_n sigma_kn / denom_n f_kn, objects only where evaluated
            fmap = self._integrate_sparse(sigma, feats, depths, norm)
        fmap = fmap.transpose(1, 2).reshape(b, -1, res, res)
        alpha = None
        if return_alpha:
            alpha = torch.stack([volume_weights(depths, norm, sigma[i], last_dist=0.0).sum(-1) for i in range(objects)],
                                dim=1).reshape(b, objects, res, res) if objects else rays.new_zeros(b, 0, res, res)
        return fmap, alpha

    @staticmethod
    def _integrate_sparse(sigma: Tensor, feats: list, depths: Tensor, norm: Tensor) -> Tensor:
        """(B, P, C) feature image of ``composite`` + ``volume_weights`` without building dense object features.

        sigma: (F, B, P, N) non-negative densities of every field; feats: per field either a dense
        (B, P, N, C) tensor or a sparse ``(batch index, flat sample index (P*N), features (M, C))`` triple.
        Uses ``sum_k sigma_k f_k / D`` with ``D = sum_k sigma_k`` (1e-4 where zero), as :func:`composite`."""
        total = sigma.sum(0)
        w = volume_weights(depths, norm, total)
        if sigma.shape[0] == 1:  # one field: composite passes its features through
            coef = w[None]
        else:
            coef = sigma * (w / torch.where(total == 0, torch.full_like(total, ZERO_DENSITY), total))
        b, p_count, n = total.shape
        fmap = None
        for k, feat in enumerate(feats):
            if isinstance(feat, tuple):
                bi, ri, values = feat
                c = coef[k].reshape(b, -1)[bi, ri].unsqueeze(-1) * values
                part = values.new_zeros(b * p_count, values.shape[-1]).index_add_(0, bi * p_count + ri // n, c)
                part = part.reshape(b, p_count, -1)
            else:
                part = (coef[k].unsqueeze(-1) * feat).sum(-2)
            fmap = part if fmap is None else fmap + part
        return fmap

    def _object(self, points: Tensor, rays: Tensor, z_shape: Tensor, z_app: Tensor, s: Tensor, t: Tensor, R: Tensor,
                present: Tensor | None, scheme: str, training: bool) -> tuple[Tensor, Tensor]:
        """One object's raw density (B, P, N) (zero outside its padded box or when absent) and features:
        (B, P, N, C) in the dense scheme; in the box scheme only where evaluated, as
        ``(batch index (M,), flat sample index into P*N (M,), features (M, C))``."""
        b, p_count, n = points.shape[:3]
        p_box = to_box(points.reshape(b, -1, 3), s, t, R)  # (B, P*N, 3)
        d_box = dirs_to_box(rays, s, R)[:, :, None].expand(b, p_count, n, 3).reshape(b, -1, 3)
        inside = (p_box.abs() <= 1.0 + self.cfg.box_padding).all(-1)  # (B, P*N)
        if present is not None:
            inside = inside & present[:, None]
        if scheme == "dense":
            sig, feat = self.object_field(p_box, d_box, z_shape, z_app)
            if training:
                sig = sig + torch.randn_like(sig)
            sig = torch.where(inside, sig, torch.zeros_like(sig))
            feat = feat.reshape(b, p_count, n, -1)
        else:
            noise = torch.randn(b, p_count * n, device=points.device, dtype=points.dtype) if training else None
            bi, ri = inside.nonzero(as_tuple=True)
            sig_in, feat_in = self.object_field(p_box[bi, ri], d_box[bi, ri], z_shape, z_app, bi)
            if noise is not None:
                sig_in = sig_in + noise[bi, ri]
            sig = p_box.new_zeros(b, p_count * n).index_put((bi, ri), sig_in)
            feat = (bi, ri, feat_in)
        return sig.reshape(b, p_count, n), feat
