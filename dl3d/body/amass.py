"""SMPL fits as AMASS-style animation files: one NPZ per (video, track).

AMASS readers and animation tools (Blender SMPL add-ons, the AMASS loaders) expect
``poses`` (F, 72 for SMPL: root axis-angle then 23 joint rotations, radians), ``trans`` (F, 3 m),
``betas`` (B,), ``mocap_framerate`` (frames/s) and ``gender`` ('neutral' | 'male' | 'female'),
in a **z-up world**. A fit is in the camera frame (OpenCV: x right, y down, z forward), so it is
moved into the world frame

    x_world = R_wc @ x_cam,   R_wc = CAMERA_TO_WORLD = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]

(world x = camera x, world y = camera forward, world z = camera up; the camera sits at the world
origin, looking along +y). SMPL rotates the body about its rest pelvis ``J0`` (which depends on the
betas) before adding ``trans``, so the world root rotation and translation are

    R_root_world = R_wc @ R_root_cam,   trans_world = R_wc @ (J0 + trans_cam) - J0.

Posing the body model with ``poses``, ``trans`` and ``betas`` then gives exactly ``R_wc`` applied to
the fit's camera-frame joints. Each file also stores ``camera_to_world`` (4, 4), ``frames`` (F,),
``status`` (F,) (the fit's row status; rows that are not ``ok`` keep the parameters the fit gave
them), ``surface_model_type`` = 'smpl', ``video`` and ``track``.
"""

from __future__ import annotations

import io

import numpy as np
import torch

CAMERA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""Rotation from OpenCV camera axes (x right, y down, z forward) to a z-up world (y = camera forward)."""

GENDERS = ("neutral", "male", "female")


def rest_pelvis(model, betas: np.ndarray) -> np.ndarray:
    """(N, 3) rest-pose pelvis ``J0`` of each shape: the body model at zero pose and translation.

    model: an ``smplx.SMPL``; betas: (N, B) with B <= model.num_betas (zero-padded).
    """
    device = model.shapedirs.device
    b = np.zeros((len(betas), model.num_betas), np.float32)
    b[:, : betas.shape[1]] = betas
    with torch.inference_mode():
        out = model(betas=torch.from_numpy(b).to(device))
    return out.joints[:, 0].double().cpu().numpy()


def camera_to_world(global_orient: np.ndarray, transl: np.ndarray, pelvis: np.ndarray,
                    rotation: np.ndarray = CAMERA_TO_WORLD) -> tuple[np.ndarray, np.ndarray]:
    """Root rotation and translation of camera-frame SMPL parameters, expressed in the world frame.

    Args:
        global_orient: (F, 3) axis-angle, radians, camera frame.
        transl: (F, 3) metres, camera frame.
        pelvis: (F, 3) or (3,) rest pelvis ``J0`` of the shape (:func:`rest_pelvis`).
        rotation: (3, 3) camera-to-world rotation.

    Returns:
        (F, 3) world root axis-angle and (F, 3) world translation, float64.
    """
    from pytorch3d.transforms import axis_angle_to_matrix, matrix_to_axis_angle

    r = torch.as_tensor(np.asarray(rotation, np.float64))
    root = axis_angle_to_matrix(torch.as_tensor(np.asarray(global_orient, np.float64)))
    go_w = matrix_to_axis_angle(r @ root).numpy()
    j0 = np.broadcast_to(np.asarray(pelvis, np.float64), np.shape(transl))
    t_w = (j0 + np.asarray(transl, np.float64)) @ r.numpy().T - j0
    return go_w, t_w


def amass_npz(global_orient: np.ndarray, body_pose: np.ndarray, transl: np.ndarray, betas: np.ndarray,
              pelvis: np.ndarray, fps: float, gender: str = "neutral", *, frames: np.ndarray | None = None,
              status: list[str] | None = None, video: str = "", track: int = 0) -> bytes:
    """One track's camera-frame fit as the bytes of an AMASS-style NPZ (see the module docstring).

    Args:
        global_orient: (F, 3), body_pose: (F, 69) axis-angle radians (camera frame); transl: (F, 3) m.
        betas: (B,) the track's shape; pelvis: (3,) its rest pelvis.
        fps: frames per second, written as ``mocap_framerate``.
    """
    if gender not in GENDERS:
        raise ValueError(f"expected gender in {GENDERS}, got {gender!r}")
    if fps <= 0:
        raise ValueError(f"expected fps > 0, got {fps}")
    f = len(global_orient)
    if np.shape(body_pose) != (f, 69) or np.shape(transl) != (f, 3) or np.shape(global_orient) != (f, 3):
        raise ValueError(f"expected global_orient (F, 3), body_pose (F, 69), transl (F, 3), got "
                         f"{np.shape(global_orient)}, {np.shape(body_pose)}, {np.shape(transl)}")
    go_w, t_w = camera_to_world(global_orient, transl, pelvis)
    c2w = np.eye(4)
    c2w[:3, :3] = CAMERA_TO_WORLD
    buf = io.BytesIO()
    np.savez(buf, poses=np.concatenate([go_w, np.asarray(body_pose, np.float64)], 1), trans=t_w,
             betas=np.asarray(betas, np.float64), mocap_framerate=np.float64(fps), gender=np.str_(gender),
             surface_model_type=np.str_("smpl"), camera_to_world=c2w,
             frames=np.arange(f) if frames is None else np.asarray(frames, np.int64),
             status=np.array(status if status is not None else ["ok"] * f, dtype=np.str_),
             video=np.str_(video), track=np.int64(track))
    return buf.getvalue()


AMASS_INDEX_COLUMNS = ("id", "video", "track", "npz_path", "frames", "ok_frames", "status")
"""The index table of an AMASS export shard (``dl3d.data.smpl_tables.AMASS_INDEX``): one row per (video, track)."""


def write_amass_shard(model, table, params, out, shard_index: int, fps: float, gender: str):
    """Write one NPZ per (video, track) of an ``smpl_params``/``smpl_fit`` shard; returns the index table.

    Args:
        model: the ``smplx.SMPL`` the fit used (for the rest pelvis of each shape).
        table: the shard (``video``, ``track``, ``frame``, ``status`` used when present).
        params: its decoded ``SmplParams``.
        out: the job's ``JobOutput``; files go to ``amass/part-NNNNN/TTT.npz``.
        fps: ``mocap_framerate``; gender: 'neutral' | 'male' | 'female'.

    A track's shape is its first row's betas (``dl3d smpl fit`` shares one shape per track; with the
    per-frame preset the shapes differ and the index row says ``betas_vary``).
    """
    from dl3d.data import to_table
    from dl3d.data.smpl_tables import AMASS_INDEX

    n = len(params)
    cols = table.column_names
    videos = [str(v) for v in table.column("video").to_pylist()] if "video" in cols else [""] * n
    tracks = np.asarray(table.column("track").to_pylist() if "track" in cols else [0] * n, np.int64)
    frames = np.asarray(table.column("frame").to_pylist() if "frame" in cols else np.arange(n), np.int64)
    status = [str(s) for s in table.column("status").to_pylist()] if "status" in cols else ["ok"] * n
    keys = sorted(set(zip(videos, tracks.tolist())))
    rows: dict[str, list] = {c: [] for c in AMASS_INDEX_COLUMNS}
    for t, (video, track) in enumerate(keys):
        sel = np.flatnonzero((np.asarray(videos) == video) & (tracks == track))
        sel = sel[np.argsort(frames[sel], kind="stable")]
        betas = params.betas[sel[0]]
        vary = bool(np.ptp(params.betas[sel], axis=0).max() > 1e-6) if len(sel) > 1 else False
        pelvis = rest_pelvis(model, betas[None])[0]
        rel = f"amass/part-{shard_index:05d}/{t:03d}.npz"
        out.write_file(rel, amass_npz(params.global_orient[sel], params.body_pose[sel], params.transl[sel], betas,
                                      pelvis, fps, gender, frames=frames[sel], status=[status[i] for i in sel],
                                      video=video, track=int(track)))
        for key, value in zip(AMASS_INDEX_COLUMNS, (f"{video}/{track}", video, int(track), rel, len(sel),
                                                    sum(status[i] == "ok" for i in sel),
                                                    "betas_vary" if vary else "ok")):
            rows[key].append(value)
    return to_table(AMASS_INDEX, rows)
