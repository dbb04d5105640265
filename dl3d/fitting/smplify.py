"""SMPLify (Bogo et al. 2016) batched over every frame of a shard: many tracks, one Adam problem.

Objective per frame, SMPLify's terms and conventions:
- data: ``sum_j (conf_j w_j)² sum_xy GMoF(projected - observed; sigma = 100 px)``;
- pose: ``w_pose² * maxmixture_nll(body_pose)`` (GMM file, or the built-in fallback prior);
- bending: ``w_bend² * sum exp(sign * angle)²`` over elbows and knees (``w_bend = 3.17 w_pose``,
  SMPLify's ``0.317 w`` times its ``alpha = 10``);
- shape: ``w_shape² * |betas|²`` (per frame, also when a track shares one shape);
- interpenetration: ``w_interp * sum overlap²`` of non-adjacent body spheres (metres²);
- temporal (dl3d): ``w_temporal * |J[t+1] - 2 J[t] + J[t-1]|²`` on the 24 camera-frame joints of
  consecutive frames of one track (metres²).

Schedule: camera stage (root rotation and translation on the torso and face keypoints, body fixed,
with SMPLify's 180° flip check on side views), then body stages with decreasing prior weights
(SMPLify's 404 / 404 / 57.4 / 4.78 pose, 100 / 50 / 10 / 5 shape). Warm start: the stages run on
keyframes (every ``keyframe_stride``-th usable frame of each track, more when that would leave
fewer than ``keyframe_min_rows``: small batches waste a CPU) first, every frame is then
initialised by interpolating its track's keyframes, and all frames are refined together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from pytorch3d.transforms import axis_angle_to_matrix
from torch import Tensor, nn

from dl3d.config import opt
from dl3d.data.keypoint_range import MAX_OFFSCREEN, drop_far_keypoints
from dl3d.fitting.camera import (ambiguous_facing, facing_camera, facing_rotation,
                                 fit_camera_with_flip, init_camera_translation)
from dl3d.fitting.interpenetration import SphereBody, sphere_body
from dl3d.fitting.priors import GmmPosePrior, builtin_pose_prior, load_gmm_prior
from dl3d.fitting.stages import Params, Problem, StageWeights, evaluate, rank_within_track, run_stage, to_smpl
from dl3d.fitting.tracks import (clean_keypoints, consecutive_mask, has_torso, interpolate_rotations,
                                 interpolate_rows, keyframe_mask, row_status)
from dl3d.keypoints.formats import FORMATS, get_format
from dl3d.metrics.pose import reprojection_error_px

__all__ = ["FitInit", "FitResult", "SMPLIFY_PRESETS", "SmplifyConfig", "fit_smplify"]


@dataclass
class SmplifyConfig:
    """SMPLify fitting of SMPL bodies to 2D keypoints (stages, weights, temporal and shape options)."""

    stage_iters: tuple[int, ...] = opt((25, 25, 25, 35), "Adam iterations of each body stage")
    pose_prior_weights: tuple[float, ...] = opt((404.0, 404.0, 57.4, 4.78), "GMM pose prior weight per stage (squared)")
    shape_prior_weights: tuple[float, ...] = opt((100.0, 50.0, 10.0, 5.0), "shape prior weight per stage (squared)")
    bending_weights: tuple[float, ...] = opt((1280.7, 1280.7, 181.96, 15.15),
                                             "elbow/knee angle prior weight per stage (squared; SMPLify: 3.17 x pose)")
    interpenetration_weights: tuple[float, ...] = opt((1e5, 1e5, 1e6, 1e6),
                                                      "sphere-overlap weight per stage, pixels² per metre²")
    temporal_weight: float = opt(3e3, "joint acceleration weight, pixels² per (metre/frame²)²; 0 = per-frame fits")
    data_weight: float = opt(1.0, "reprojection term weight")
    sigma: float = opt(100.0, "Geman-McClure scale of the reprojection residual, pixels")
    lr: float = opt(0.03, "Adam step of the body stages (radians, metres, shape units)")
    camera_iters: int = opt(30, "Adam iterations of the camera stage (root rotation + translation)")
    camera_lr: float = opt(0.03, "Adam step of the camera stage")
    camera_depth_weight: float = opt(100.0, "camera stage: pixels² per metre² keeping depth near the torso estimate")
    flip_check: bool = opt(True, "SMPLify's flip check: on side views also try the body turned 180°, keep the better")
    flip_ratio: float = opt(0.4, "side view when 2D shoulder width < this x 2D torso length")
    shared_shape: bool = opt(True, "one shape (betas) per track instead of one per frame")
    fit_shape: bool = opt(True, "optimise the shape; False keeps the initial (mean) shape")
    warm_start: bool = opt(True, "fit keyframes first, interpolate them to every frame, then refine all frames")
    keyframe_stride: int = opt(4, "warm start: every k-th usable frame of a track is a keyframe")
    keyframe_min_rows: int = opt(128, "warm start: lower the stride (down to 2) until the keyframes are at least this "
                                      "many rows (a step over fewer rows costs about the same time on a CPU)")
    refine_iters: int = opt(30, "warm start: Adam iterations on all frames after interpolation (last stage weights)")
    refine_lr: float = opt(0.008, "warm start: Adam step of the refinement (small: the start is close)")
    min_keypoints: int = opt(6, "rows with fewer confident keypoints are left out of the data term")
    hip_weight: float = opt(1.0, "weight of hip keypoints (OpenPose hips are not SMPL's; < 1 for real detections)")
    gmm_path: str = opt("", "SMPLify gmm_08.pkl pose prior; empty = built-in fallback (NOT the CMU prior)")
    max_offscreen: float = opt(MAX_OFFSCREEN, "keypoints more than this many image sizes outside the image are "
                                              "corrupt numbers, treated as missing")
    radius_scale: float = opt(1.0, "interpenetration sphere radii multiplier")

    def __post_init__(self):
        self.stage_iters = tuple(int(i) for i in self.stage_iters)
        stages = len(self.stage_iters)
        for name in ("pose_prior_weights", "shape_prior_weights", "bending_weights", "interpenetration_weights"):
            value = tuple(float(x) for x in getattr(self, name))
            if len(value) != stages:
                raise ValueError(f"{name} must have one value per stage ({stages}, like stage_iters), got {len(value)}")
            setattr(self, name, value)
        if stages < 1 or min(self.stage_iters) < 0:
            raise ValueError(f"stage_iters must be >= 1 stages of >= 0 iterations, got {self.stage_iters}")
        for name in ("camera_iters", "refine_iters", "min_keypoints", "keyframe_min_rows"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keyframe_stride < 1:
            raise ValueError(f"keyframe_stride must be >= 1, got {self.keyframe_stride}")
        for name in ("sigma", "lr", "camera_lr", "refine_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_offscreen < 0:
            raise ValueError(f"max_offscreen must be >= 0, got {self.max_offscreen}")
        if self.temporal_weight < 0 or self.data_weight < 0 or self.radius_scale <= 0:
            raise ValueError("temporal_weight and data_weight must be >= 0, radius_scale > 0")

    def stage_weights(self, stage: int, temporal_scale: float = 1.0) -> StageWeights:
        return StageWeights(pose=self.pose_prior_weights[stage], shape=self.shape_prior_weights[stage],
                            bending=self.bending_weights[stage],
                            interpenetration=self.interpenetration_weights[stage],
                            temporal=self.temporal_weight * temporal_scale)


SMPLIFY_PRESETS: dict[str, SmplifyConfig] = {
    "default": SmplifyConfig(),
    "fast": SmplifyConfig(stage_iters=(10, 10, 15, 25), camera_iters=20, refine_iters=20, keyframe_stride=6, lr=0.04),
    "per-frame": SmplifyConfig(temporal_weight=0.0, shared_shape=False, warm_start=False),
}
"""Presets: "default" (accuracy), "fast" (throughput: fewer iterations, sparser keyframes) and
"per-frame" (the ablation: no temporal term, one shape per frame, no warm start)."""


@dataclass
class FitInit:
    """Optional initial values per row (input order); any field may be None.

    betas (N, B); body_pose (N, 69) radians; global_orient (N, 3) radians and transl (N, 3) metres,
    camera frame — when both of these are given the camera initialisation is skipped.
    """

    betas: Any = None
    global_orient: Any = None
    body_pose: Any = None
    transl: Any = None


@dataclass
class FitResult:
    """Per-row fit (input row order), numpy float32 unless noted.

    betas: (N, B) (equal within a track when the shape is shared); global_orient: (N, 3) axis-angle
    radians, camera frame (OpenCV: x right, y down, z forward); body_pose: (N, 69) radians;
    transl: (N, 3) metres (SMPL's translation: pelvis = rest pelvis + transl); joints3d: (N, 24, 3)
    camera frame, metres; reprojection_error_px: (N,) mean pixel distance over confident
    keypoints (NaN without any); loss: (N,) final objective per row (last stage weights; the
    temporal term counted at the middle frame of each three); status: (N,) str (``tracks.STATUSES``);
    flipped: (N,) bool, the flip check turned the body 180°; stats: timings and counts.
    """

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    joints3d: np.ndarray
    reprojection_error_px: np.ndarray
    loss: np.ndarray
    status: np.ndarray
    flipped: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=4)
def _prior_from_path(path: str) -> GmmPosePrior:
    return load_gmm_prior(path) if path else builtin_pose_prior()


def _device(kernel: nn.Module) -> torch.device:
    for t in list(kernel.buffers()) + list(kernel.parameters()):
        return t.device
    return torch.device("cpu")


def _as(x: Any, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    if torch.is_tensor(x):
        return x.detach().to(dtype=dtype, device=device)
    try:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected {name} as an array, got {type(x).__name__}") from err


def _check_inputs(keypoints: Tensor, fmt: str, track: Tensor, frame: Tensor, focal: Tensor, pp: Tensor) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"expected fmt in {sorted(FORMATS)}, got {fmt!r}")
    j = FORMATS[fmt].num_joints
    if keypoints.dim() != 3 or keypoints.shape[1:] != (j, 3):
        raise ValueError(f"expected keypoints of shape (N, {j}, 3) for {fmt!r}, got {tuple(keypoints.shape)}")
    n = keypoints.shape[0]
    for name, t, shape in (("track_index", track, (n,)), ("frame", frame, (n,)), ("focal", focal, (n,)),
                           ("principal_point", pp, (n, 2))):
        if tuple(t.shape) != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {tuple(t.shape)}")
    if not (torch.isfinite(focal).all() and (focal > 0).all() and torch.isfinite(pp).all()):
        raise ValueError("expected finite focal > 0 and finite principal_point for every row")


def _mask(mask: np.ndarray, dev: torch.device) -> Tensor:
    return torch.as_tensor(mask, dtype=torch.float32, device=dev)


def _empty_result(num_betas: int) -> FitResult:
    z = lambda *s: np.zeros(s, dtype=np.float32)  # noqa: E731
    return FitResult(z(0, num_betas), z(0, 3), z(0, 69), z(0, 3), z(0, 24, 3), z(0), z(0),
                     np.zeros(0, dtype=object), np.zeros(0, dtype=bool), {"rows": 0})


@dataclass
class _Rows:
    """The batch sorted by (track, frame): bookkeeping shared by the stages (numpy on the host)."""

    order: np.ndarray
    inverse: np.ndarray
    track: np.ndarray
    frame: np.ndarray
    status: list[str]
    ok: np.ndarray
    cam_ok: np.ndarray
    obs: Tensor


def _prepare(kernel: nn.Module, kp: Tensor, fmt: str, track_t: Tensor, frame_t: Tensor, focal_t: Tensor,
             pp_t: Tensor, cfg: SmplifyConfig, prior: GmmPosePrior, spheres: SphereBody) -> tuple[Problem, _Rows]:
    """Sort the rows, flag degenerate ones, build the fitting problem."""
    dev, n = kp.device, kp.shape[0]
    track_np, frame_np = track_t.cpu().numpy(), frame_t.cpu().numpy()
    order = np.lexsort((frame_np, track_np))
    order_t = torch.as_tensor(order, device=dev)
    kp, focal_t, pp_t = kp[order_t], focal_t[order_t], pp_t[order_t]
    track_np, frame_np = track_np[order], frame_np[order]
    spec = get_format(fmt)
    xy, conf, nan_rows = clean_keypoints(kp)
    conf = conf * torch.as_tensor(spec.fitted, dtype=conf.dtype, device=dev)  # joints SMPL lacks: not observed
    status = row_status(conf, nan_rows, cfg.min_keypoints)
    ok = np.array([s == "ok" for s in status])
    joint_w = torch.ones(kp.shape[1], device=dev)
    joint_w[list(spec.hips)] = cfg.hip_weight
    weight = conf * joint_w * torch.as_tensor(ok, device=dev)[:, None]  # only "ok" rows enter the data term
    _, beta_rows = np.unique(track_np, return_inverse=True)
    beta_index = torch.as_tensor(beta_rows if cfg.shared_shape else np.arange(n), device=dev)
    problem = Problem(kernel=kernel, prior=prior, spheres=spheres, xy=xy, weight=weight, focal=focal_t,
                      principal_point=pp_t, beta_index=beta_index,
                      consecutive=_mask(consecutive_mask(track_np, frame_np), dev),
                      fmt_index=torch.as_tensor(spec.smpl_index, device=dev), sigma=cfg.sigma,
                      data_weight=cfg.data_weight)
    rows = _Rows(order=order, inverse=np.argsort(order), track=track_np, frame=frame_np, status=status, ok=ok,
                 cam_ok=ok & has_torso(conf, fmt).cpu().numpy(),
                 obs=torch.cat([xy, conf[..., None]], dim=-1))  # finite detections (NaN -> confidence 0)
    return problem, rows


def fit_smplify(kernel: nn.Module, keypoints: Any, fmt: str, track_index: Any, frame: Any,
                focal: Any, principal_point: Any, cfg: SmplifyConfig | None = None, init: FitInit | None = None,
                *, prior: GmmPosePrior | None = None, spheres: SphereBody | None = None,
                image_size: Any = None) -> FitResult:
    """Fit SMPL to 2D keypoints for every row of a batch (all frames of all tracks) at once.

    kernel: ``build_points_kernel(...)`` (or any module with the same ``forward(betas,
        global_orient, body_pose) -> PointsOutput``, ``smplx_layout(out)`` and ``num_betas``, e.g.
        a wrapper around smplx's full SMPL forward); fitting runs on its device, float32.
    keypoints: (N, J, 3) float, x, y pixels (x right, y down) and confidence (0 = missing; NaN
        allowed: such rows get status "nan_keypoints"); J = the format's joint count (25 for
        "body25" and "body25b", 17 for "coco17" and "posetrack").
    fmt: a name in ``dl3d.keypoints.FORMATS``; joints without an SMPL correspondence (PoseTrack's
        head_bottom/head_top, BODY_25B's upper_neck/head_top) are ignored (confidence taken as 0).
    track_index: (N,) int, person track (ids unique within the batch).
    frame: (N,) int frame numbers; consecutive numbers of a track are neighbours.
    focal: (N,) float pixels (or one scalar for all); principal_point: (N, 2) float pixels (or (2,)).
    cfg: ``SmplifyConfig`` (default ``SMPLIFY_PRESETS["default"]``); init: ``FitInit`` or None.
    prior: a loaded pose prior (default: ``cfg.gmm_path`` or the built-in fallback).
    spheres: interpenetration body (default ``sphere_body(scale=cfg.radius_scale)``).
    image_size: (N, 2) or (2,) float width, height in pixels (default: twice the principal point).
        Keypoints more than ``cfg.max_offscreen`` image sizes outside the image are treated as
        missing (``dl3d.data.keypoint_range``; counted in ``stats["offscreen_keypoints"]``).
    Returns a ``FitResult`` in input row order. Degenerate rows never raise (see ``status``); a row
    whose fit is not finite anyway is "nonfinite_fit" and, like every non-"ok" row, leaves its
    track's other rows unharmed (its gradients are dropped, its camera initialised from its track).
    """
    cfg = cfg or SMPLIFY_PRESETS["default"]
    started = time.perf_counter()
    dev, f32 = _device(kernel), torch.float32
    kp = _as(keypoints, "keypoints", f32, dev)
    track_t, frame_t = _as(track_index, "track_index", torch.int64, dev), _as(frame, "frame", torch.int64, dev)
    focal_t, pp_t = _as(focal, "focal", f32, dev), _as(principal_point, "principal_point", f32, dev)
    if kp.dim() == 3:  # one camera for every row: broadcast
        focal_t = focal_t.expand(kp.shape[0]) if focal_t.dim() == 0 else focal_t
        pp_t = pp_t.expand(kp.shape[0], 2) if pp_t.shape == (2,) else pp_t
    _check_inputs(kp, fmt, track_t, frame_t, focal_t, pp_t)
    n = kp.shape[0]
    if n == 0:
        return _empty_result(int(kernel.num_betas))
    size = 2 * pp_t if image_size is None else _as(image_size, "image_size", f32, dev).expand(n, 2)
    kp, offscreen = drop_far_keypoints(kp, size[:, 0:1], size[:, 1:2], cfg.max_offscreen)
    prior = (prior or _prior_from_path(cfg.gmm_path)).to(dev)
    spheres = (spheres or sphere_body(scale=cfg.radius_scale)).to(dev)
    problem, rows = _prepare(kernel, kp, fmt, track_t, frame_t, focal_t, pp_t, cfg, prior, spheres)
    num_beta_rows = int(problem.beta_index.max()) + 1
    init_params, has_camera = _initial_params(kernel, prior, init, torch.as_tensor(rows.order, device=dev),
                                              problem.beta_index, num_beta_rows, dev)
    stats: dict[str, Any] = {"rows": n, "tracks": len(np.unique(rows.track)), "ok_rows": int(rows.ok.sum()),
                             "offscreen_keypoints": offscreen}
    flipped = np.zeros(n, dtype=bool)
    if cfg.warm_start and _keyframe_stride(cfg, rows) > 1:
        params = _fit_warm(problem, rows, init_params, fmt, cfg, has_camera, flipped, stats)
    else:
        params = _camera_stage(problem, init_params, rows.obs, fmt, cfg, has_camera, rows.cam_ok, flipped, stats)
        if not has_camera:
            params = _spread(init_params, params, torch.arange(n, device=dev), rows, rows.cam_ok, cfg.shared_shape)
        params = _body_stages(problem, params, cfg, stats)
    result = _finish(problem, params, cfg, rows, flipped, stats)
    result.stats["seconds"] = time.perf_counter() - started
    return result


def _keyframe_stride(cfg: SmplifyConfig, rows: _Rows) -> int:
    """``cfg.keyframe_stride``, lowered (not below 2) so the keyframes number at least
    ``keyframe_min_rows``; 0 when no row can initialise a camera."""
    usable = int(rows.cam_ok.sum())
    if usable == 0:
        return 0
    return min(cfg.keyframe_stride, max(2, usable // max(cfg.keyframe_min_rows, 1)))


def _fit_warm(problem: Problem, rows: _Rows, init_params: Params, fmt: str, cfg: SmplifyConfig, has_camera: bool,
              flipped: np.ndarray, stats: dict[str, Any]) -> Params:
    """Warm start: every stage on the keyframes, interpolation to all rows, then a refinement of all."""
    dev, stride = rows.obs.device, _keyframe_stride(cfg, rows)
    key = keyframe_mask(rows.track, rows.cam_ok, stride)
    rows_k = torch.as_tensor(np.flatnonzero(key), device=dev)
    sub = problem.subset(rows_k, _mask(consecutive_mask(rows.track[key], rank_within_track(rows.track[key])), dev))
    flipped_k = np.zeros(len(rows_k), dtype=bool)
    params_k = _camera_stage(sub, init_params.subset(rows_k), rows.obs[rows_k], fmt, cfg, has_camera,
                             np.ones(len(rows_k), dtype=bool), flipped_k, stats)
    flipped[key] = flipped_k
    # Keyframes are ``stride`` frames apart: their second differences are about stride² larger.
    params_k = _body_stages(sub, params_k, cfg, stats, temporal_scale=1.0 / stride ** 2)
    params = _spread(init_params, params_k, rows_k, rows, key, cfg.shared_shape)
    return run_stage(problem, params, cfg.stage_weights(len(cfg.stage_iters) - 1), cfg.refine_iters, cfg.refine_lr,
                     cfg.fit_shape, stats)


def _initial_params(kernel: nn.Module, prior: GmmPosePrior, init: FitInit | None, order: Tensor,
                    beta_index: Tensor, num_beta_rows: int, dev: torch.device) -> tuple[Params, bool]:
    """Mean pose (the prior's mixture mean, as SMPLify), mean shape, facing the camera 5 m away,
    unless ``init`` says otherwise. Returns the parameters and whether ``init`` fixed the camera."""
    init = init or FitInit()
    f32, n, nb = torch.float32, order.shape[0], int(kernel.num_betas)
    field = lambda x, name, width: _init_field(x, name, n, width, dev)[order]  # noqa: E731
    pose = prior.mixture_mean.to(dev)[None].expand(n, -1).clone()
    if init.body_pose is not None:
        pose = field(init.body_pose, "init.body_pose", 69)
    rows_betas = torch.zeros(n, nb, device=dev)
    if init.betas is not None:
        rows_betas = field(init.betas, "init.betas", nb)
    count = torch.bincount(beta_index, minlength=num_beta_rows).clamp_min(1).to(f32)[:, None]
    betas = torch.zeros(num_beta_rows, nb, device=dev).index_add(0, beta_index, rows_betas) / count
    rot = facing_rotation(torch.zeros(n, device=dev))
    pelvis = torch.tensor([0.0, 0.0, 5.0], device=dev).expand(n, 3).clone()
    has_camera = init.global_orient is not None and init.transl is not None
    if has_camera:
        rot = axis_angle_to_matrix(field(init.global_orient, "init.global_orient", 3))
        with torch.no_grad():
            rest = kernel(rows_betas, torch.zeros(n, 3, device=dev), torch.zeros(n, 69, device=dev)).joints[:, 0]
        pelvis = field(init.transl, "init.transl", 3) + rest
    return Params(rot, pelvis, pose, betas), has_camera


def _init_field(x: Any, name: str, n: int, width: int, dev: torch.device) -> Tensor:
    t = _as(x, name, torch.float32, dev)
    if tuple(t.shape) != (n, width) or not torch.isfinite(t).all():
        raise ValueError(f"expected {name} of shape ({n}, {width}), finite, got {tuple(t.shape)}")
    return t


def _camera_stage(problem: Problem, params: Params, obs: Tensor, fmt: str, cfg: SmplifyConfig, has_camera: bool,
                  usable: np.ndarray, flipped: np.ndarray, stats: dict[str, Any]) -> Params:
    """Torso-length depth, facing from the shoulders' order, then root rotation + translation on the
    torso and face keypoints, with the flip check on side views. Fills ``flipped`` in place."""
    if has_camera:
        return params
    start = time.perf_counter()
    n, dev = obs.shape[0], obs.device
    with torch.no_grad():
        betas = params.betas[problem.beta_index]
        out = problem.kernel(betas, torch.zeros(n, 3, device=dev), params.body_pose)
        body_kp = problem.kernel.smplx_layout(out).index_select(1, problem.fmt_index) - out.joints[:, :1]
    yaw = torch.where(facing_camera(obs, fmt), 0.0, torch.pi).to(obs.dtype)
    rot0 = facing_rotation(yaw)
    transl, valid = init_camera_translation(obs, body_kp @ rot0.transpose(1, 2), fmt, problem.focal,
                                            problem.principal_point)
    valid = valid & torch.as_tensor(usable, device=dev) & torch.isfinite(transl).all(1)
    pelvis0 = torch.where(valid[:, None], transl, params.pelvis)
    cam_w = torch.zeros_like(obs[..., 2])
    idx = list(get_format(fmt).torso) + list(get_format(fmt).face)
    cam_w[:, idx] = obs[:, idx, 2]
    cam_w = cam_w * valid[:, None]
    amb = (ambiguous_facing(obs, fmt, cfg.flip_ratio) & valid) if cfg.flip_check else torch.zeros_like(valid)
    rot, pelvis, _, flip = fit_camera_with_flip(body_kp, obs, cam_w, problem.focal, problem.principal_point, rot0,
                                                pelvis0, amb, iters=cfg.camera_iters, lr=cfg.camera_lr,
                                                sigma=cfg.sigma, depth_weight=cfg.camera_depth_weight)
    valid = valid & torch.isfinite(rot).flatten(1).all(1) & torch.isfinite(pelvis).all(1)
    rot = torch.where(valid[:, None, None], rot, params.rot_base)
    pelvis = torch.where(valid[:, None], pelvis, params.pelvis)
    flipped[:] = flip.cpu().numpy()
    stats["camera_seconds"] = stats.get("camera_seconds", 0.0) + time.perf_counter() - start
    stats["flip_checked"] = stats.get("flip_checked", 0) + int(amb.sum())
    return Params(rot, pelvis, params.body_pose, params.betas)


def _body_stages(problem: Problem, params: Params, cfg: SmplifyConfig, stats: dict[str, Any],
                 temporal_scale: float = 1.0) -> Params:
    for stage, iters in enumerate(cfg.stage_iters):
        params = run_stage(problem, params, cfg.stage_weights(stage, temporal_scale), iters, cfg.lr,
                           cfg.fit_shape, stats)
    return params


def _spread(base: Params, fitted: Params, index: Tensor, rows: _Rows, known: np.ndarray,
            shared_shape: bool) -> Params:
    """Every row from the fitted rows ``index`` (the ``known`` ones): copied there, interpolated
    along each track elsewhere (rotations by quaternion blend)."""
    track, frame = rows.track, rows.frame
    rot, pelvis, pose = base.rot_base.clone(), base.pelvis.clone(), base.body_pose.clone()
    rot[index], pelvis[index], pose[index] = fitted.rot_base, fitted.pelvis, fitted.body_pose
    betas = fitted.betas if shared_shape else interpolate_rows(fitted.betas, track, frame, known)
    return Params(interpolate_rotations(rot, track, frame, known), interpolate_rows(pelvis, track, frame, known),
                  interpolate_rows(pose, track, frame, known), betas)


def _finish(problem: Problem, params: Params, cfg: SmplifyConfig, rows: _Rows, flipped: np.ndarray,
            stats: dict[str, Any]) -> FitResult:
    """Outputs in input row order, the per-row loss and the final status."""
    obs, inverse = rows.obs, rows.inverse
    with torch.no_grad():
        w = cfg.stage_weights(len(cfg.stage_iters) - 1)
        go, transl = to_smpl(problem, params)
        terms = evaluate(problem, params.betas, go, params.body_pose, transl, w, outputs=True)
        loss = sum(terms[k] for k in ("data", "pose", "bending", "shape", "interpenetration"))
        if terms["temporal"].numel():
            loss[1:-1] += terms["temporal"]
        betas = params.betas[problem.beta_index]
        reproj = reprojection_error_px(terms["projected"], obs[..., :2], obs[..., 2])
    out = {"betas": betas, "global_orient": go, "body_pose": params.body_pose, "transl": transl,
           "joints3d": terms["joints"], "loss": loss}
    finite = torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device)
    for v in out.values():
        finite &= torch.isfinite(v.reshape(v.shape[0], -1)).all(1)
    status_arr = np.array(rows.status, dtype=object)
    status_arr[~finite.cpu().numpy()] = "nonfinite_fit"
    np_out = {k: v.detach().cpu().numpy().astype(np.float32)[inverse] for k, v in out.items()}
    return FitResult(reprojection_error_px=reproj.cpu().numpy().astype(np.float32)[inverse],
                     status=status_arr[inverse], flipped=flipped[inverse], stats=stats, **np_out)
