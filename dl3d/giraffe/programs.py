"""Controllable render programs of the official ``rendering.py``, as per-frame scene controls.

:func:`program_scene` turns (program, frames, seed) into the batched controls of one sample's frames (frame
= batch index), all drawn on the CPU from ``torch.Generator().manual_seed(seed)`` so a sample renders the
same frames on any worker. Latents use the official sweep temperature (``cfg.sample_temperature``, 0.65).
Control values are in [0, 1] within the config's ranges (``dl3d.giraffe.boxes.boxes_from_controls``),
as the official ``get_transformations``; for more objects than the official program defines (it covers
one or two), the other objects keep boxes drawn from the prior.

Programs: ``object_rotation``, ``object_translation_horizontal`` (along world y, across the image),
``object_translation_depth`` (along x; the official ``object_translation_vertical``),
``object_translation_circle``, ``interpolate_app``, ``interpolate_shape``, ``interpolate_app_bg``,
``interpolate_shape_bg``, ``camera_elevation``, ``camera_rotation`` (dl3d: a full turn of azimuth, outside
the training range), ``add_objects`` (objects appear one by one on the official CLEVR6 grid),
``background_only``, and ``explicit`` (per-frame controls given as JSON).
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import Tensor

from dl3d.giraffe.boxes import boxes_from_controls, rotation_z, sample_boxes
from dl3d.giraffe.camera import camera_pose
from dl3d.giraffe.config import GiraffeConfig

PROGRAMS = ("object_rotation", "object_translation_horizontal", "object_translation_depth",
            "object_translation_circle", "interpolate_app", "interpolate_shape", "interpolate_app_bg",
            "interpolate_shape_bg", "camera_elevation", "camera_rotation", "add_objects", "background_only", "explicit")
ADD_GRID = [(0.2, 0.0), (0.8, 0.0), (0.2, 0.5), (0.8, 0.5), (0.2, 1.0), (0.8, 1.0)]
"""Translation controls of the official ``render_add_objects_clevr6`` (x, y; z on the plane)."""


def slerp(z1: Tensor, z2: Tensor, w: Tensor) -> Tensor:
    """Spherical interpolation along the last axis (official ``interpolate_sphere``); w: (F,) in [0, 1]."""
    cos = (z1 * z2).sum(-1, keepdim=True) / (z1.norm(dim=-1, keepdim=True) * z2.norm(dim=-1, keepdim=True))
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    w = w.reshape(-1, *([1] * z1.ndim))
    return (torch.sin((1 - w) * omega) * z1 + torch.sin(w * omega) * z2) / torch.sin(omega)


def program_scene(cfg: GiraffeConfig, program: str, frames: int, seed: int, controls: str | None = None) -> dict[str, Any]:
    """The scene controls of ``frames`` frames of one sample (CPU tensors, frame = batch index).

    Returns a dict with ``latents``, ``camera``, ``boxes``, ``bg_rotation``, ``existence`` (or None),
    ``only_background`` (bool) and ``controls`` (one JSON-ready dict per frame: what the program varies).

    Raises:
        ValueError: unknown program, frames < 1, or ``explicit`` without valid ``controls``.
    """
    if program not in PROGRAMS:
        raise ValueError(f"unknown render program {program!r}; known: {', '.join(PROGRAMS)}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    g = torch.Generator().manual_seed(int(seed))
    tmp = cfg.sample_temperature
    k = len(ADD_GRID) if program == "add_objects" else cfg.n_boxes
    z = [torch.randn(1, k, cfg.z_dim, generator=g) * tmp, torch.randn(1, k, cfg.z_dim, generator=g) * tmp,
         torch.randn(1, cfg.z_dim_bg, generator=g) * tmp, torch.randn(1, cfg.z_dim_bg, generator=g) * tmp]
    prior_s, prior_t, prior_r = sample_boxes(cfg, 1, generator=g, n_boxes=k)
    bg_val = torch.rand(1, generator=g)
    w = torch.linspace(0, 1, frames) if frames > 1 else torch.zeros(1)
    f = frames
    lo, hi = cfg.bg_rotation_range
    out: dict[str, Any] = {"existence": None, "only_background": False,
                           "bg_rotation": rotation_z(lo + bg_val * (hi - lo)).expand(f, 3, 3).clone()}
    (u0, u1), (v0, v1) = cfg.range_u, cfg.range_v
    cam_u, cam_v = torch.full((f,), 0.5), torch.full((f,), 0.5)
    val_s = torch.zeros(f, k, 3)
    val_t = torch.full((f, k, 3), 0.5)
    val_r = torch.full((f, k), 0.5)
    per_frame: list[dict[str, Any]] = [{} for _ in range(f)]
    use_prior = torch.zeros(k, dtype=torch.bool) if k == 1 else torch.ones(k, dtype=torch.bool)
    latents = [x.expand(f, *x.shape[1:]).clone() for x in z]
    absolute_u = None

    if program == "object_rotation":
        full = cfg.rotation_range == (0.0, 1.0)
        r = w if full else 0.1 + 0.8 * w
        val_s, val_r = torch.zeros(f, k, 3), r[:, None].expand(f, k).clone()
        if k == 1:
            val_t = torch.full((f, k, 3), 0.5)
        per_frame = [{"rotation": float(x)} for x in r]
        use_prior = torch.zeros(k, dtype=torch.bool) if k == 1 else use_prior
        use_prior_r = False
    elif program in ("object_translation_horizontal", "object_translation_depth", "object_translation_circle"):
        val_r = torch.full((f, k), 0.0 if program == "object_translation_circle" else 0.5)
        use_prior = torch.zeros(k, dtype=torch.bool)
        use_prior[:-1] = k > 2  # one or two objects: the official fixed partner; more: prior boxes
        if k == 2:
            partner = {"object_translation_horizontal": (0.5, 0.5), "object_translation_depth": (0.4, 0.8),
                       "object_translation_circle": (0.5, 0.5)}[program]
            val_t[:, 0] = torch.tensor([*partner, 0.0])
        if program == "object_translation_horizontal":
            val_t[:, -1] = torch.stack((torch.full((f,), 0.5 if k == 1 else 1.0), w, torch.zeros(f)), -1)
            per_frame = [{"translation_y": float(x)} for x in w]
        elif program == "object_translation_depth":
            val_t[:, -1] = torch.stack((w, torch.full((f,), 0.5 if k == 1 else 0.2), torch.zeros(f)), -1)
            per_frame = [{"translation_x": float(x)} for x in w]
        else:
            a = 2 * math.pi * (torch.arange(f) / max(f - 1, 1))
            val_t[:, -1] = torch.stack((a.cos() * 0.5 + 0.5, a.sin() * 0.5 + 0.5, torch.zeros(f)), -1)
            per_frame = [{"translation_x": float(x), "translation_y": float(y)} for x, y in val_t[:, -1, :2]]
        use_prior_r = False
    elif program.startswith("interpolate"):
        which = {"interpolate_shape": 0, "interpolate_app": 1, "interpolate_shape_bg": 2, "interpolate_app_bg": 3}[program]
        end = torch.randn(z[which].shape, generator=g) * tmp
        latents[which] = slerp(z[which][0], end[0], w)
        per_frame = [{"weight": float(x)} for x in w]
        use_prior_r = k > 1
    elif program == "camera_elevation":
        cam_v = 0.1 + 0.8 * w
        per_frame = [{"camera_v": float(x)} for x in cam_v]
        use_prior_r = k > 1
    elif program == "camera_rotation":
        absolute_u = w
        per_frame = [{"camera_u_turns": float(x)} for x in w]
        use_prior_r = k > 1
    elif program == "add_objects":
        use_prior = torch.zeros(k, dtype=torch.bool)
        val_t = torch.tensor([[x, y, 0.0] for x, y in ADD_GRID]).expand(f, k, 3).clone()
        val_r = torch.zeros(f, k)
        counts = torch.clamp(1 + torch.div(torch.arange(f) * k, f, rounding_mode="floor"), max=k)
        out["existence"] = torch.arange(k)[None, :] < counts[:, None]
        per_frame = [{"objects": int(c)} for c in counts]
        use_prior_r = False
    elif program == "background_only":
        end = torch.randn(z[3].shape, generator=g) * tmp
        latents[3] = slerp(z[3][0], end[0], w)
        out["only_background"] = True
        per_frame = [{"weight": float(x)} for x in w]
        use_prior_r = False
    else:  # explicit
        val_s, val_t, val_r, cam_u, cam_v, per_frame = _explicit(controls, f, k)
        use_prior = torch.zeros(k, dtype=torch.bool)
        use_prior_r = False

    s, t, R = boxes_from_controls(cfg, val_s, val_t, val_r)
    if bool(use_prior.any()):
        s[:, use_prior], t[:, use_prior] = prior_s[:, use_prior], prior_t[:, use_prior]
        if use_prior_r:
            R[:, use_prior] = prior_r[:, use_prior]
    if absolute_u is not None:
        camera = camera_pose(absolute_u, torch.full((f,), v0 + 0.5 * (v1 - v0)), cfg.radius)
    else:
        camera = camera_pose(u0 + cam_u * (u1 - u0), v0 + cam_v * (v1 - v0), cfg.radius)
    out.update(latents=tuple(latents), camera=camera, boxes=(s, t, R), controls=per_frame)
    return out


def _explicit(controls: str | None, f: int, k: int):
    """Per-frame controls from JSON: a list of ``f`` dicts with optional ``u``, ``v`` (camera, [0, 1]), ``s``,
    ``t`` ((k, 3) lists) and ``r`` ((k,) list), all in [0, 1] control units."""
    if not controls:
        raise ValueError("program 'explicit' needs per-frame controls (a JSON list, one object per frame)")
    try:
        frames = json.loads(controls)
    except json.JSONDecodeError as exc:
        raise ValueError(f"controls are not valid JSON: {exc}") from None
    if not isinstance(frames, list) or len(frames) != f or not all(isinstance(x, dict) for x in frames):
        raise ValueError(f"controls must be a JSON list of {f} objects (one per frame), got {str(controls)[:80]!r}")
    val_s, val_t, val_r = torch.zeros(f, k, 3), torch.full((f, k, 3), 0.5), torch.full((f, k), 0.5)
    cam_u, cam_v = torch.full((f,), 0.5), torch.full((f,), 0.5)
    for i, fr in enumerate(frames):
        unknown = set(fr) - {"u", "v", "s", "t", "r"}
        if unknown:
            raise ValueError(f"controls frame {i}: unknown keys {sorted(unknown)} (known: u, v, s, t, r)")
        try:
            if "u" in fr:
                cam_u[i] = float(fr["u"])
            if "v" in fr:
                cam_v[i] = float(fr["v"])
            if "s" in fr:
                val_s[i] = torch.tensor(fr["s"], dtype=torch.float32).reshape(k, 3)
            if "t" in fr:
                val_t[i] = torch.tensor(fr["t"], dtype=torch.float32).reshape(k, 3)
            if "r" in fr:
                val_r[i] = torch.tensor(fr["r"], dtype=torch.float32).reshape(k)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"controls frame {i}: expected u, v numbers, s and t as {k} x 3 lists, r as {k} "
                             f"numbers ({exc})") from None
    return val_s, val_t, val_r, cam_u, cam_v, frames
