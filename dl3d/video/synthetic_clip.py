"""A small video the project makes itself: a body model walking on the spot, rendered with pytorch3d.

The motion and camera are those of ``dl3d.synthetic.smpl_video`` (a walking body seen by an OpenCV
pinhole camera); the body is shaded over a simple two-tone room (wall and floor) so a 2D detector
has a figure against a background. With dl3d's procedural body model the figure is made of tubes
and ellipsoids: it is NOT SMPL and not a photograph of a person.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from dl3d.synthetic.smpl_video import KeypointVideoSpec, SyntheticVideo, make_keypoint_video
from dl3d.video.overlay import overlay, render_meshes


FIGURE_COLOUR = (0.78, 0.58, 0.46)
"""A warm skin-like tone, unlike the blue-grey that ``dl3d smpl render`` draws fitted meshes in."""


def room_background(height: int, width: int, horizon: float = 0.62) -> np.ndarray:
    """(H, W, 3) uint8: a warm wall above ``horizon`` (fraction of the height), a darker floor below,
    with a faint vertical gradient so the frame is not flat."""
    y = np.linspace(0, 1, height)[:, None, None]
    wall = np.array([205, 196, 178]) * (0.9 + 0.1 * y)
    floor = np.array([120, 104, 88]) * (1.1 - 0.2 * y)
    img = np.where(y < horizon, wall, floor)
    return np.broadcast_to(img, (height, width, 3)).round().clip(0, 255).astype(np.uint8).copy()


def render_body_clip(arrays: Mapping[str, Any], spec: KeypointVideoSpec | None = None,
                     batch_size: int = 8) -> tuple[np.ndarray, SyntheticVideo]:
    """Frames of a walking body and the ground truth they were rendered from.

    Args:
        arrays: SMPL-format body model arrays (``make_procedural_body_model()`` or an SMPL file's).
        spec: motion, camera and image size (``KeypointVideoSpec``; its keypoint noise does not
            matter here: the frames are rendered from the noiseless body).
        batch_size: frames rendered at once.

    Returns:
        frames (F, H, W, 3) uint8 RGB, and the ``SyntheticVideo`` (its ``joints3d``, ``global_orient``,
        ``body_pose``, ``transl``, ``betas`` are the truth, camera frame, metres).
    """
    from dl3d.body import body_model_from_arrays

    spec = spec or KeypointVideoSpec()
    video = make_keypoint_video(arrays, spec)
    model = body_model_from_arrays(arrays)
    faces = torch.as_tensor(np.asarray(model.faces, dtype=np.int64))
    f = spec.frames
    background = room_background(spec.image_height, spec.image_width)
    out = np.empty((f, spec.image_height, spec.image_width, 3), np.uint8)
    with torch.inference_mode():
        for s in range(0, f, batch_size):
            sl = slice(s, min(s + batch_size, f))
            n = sl.stop - sl.start
            o = model(betas=torch.as_tensor(video.betas, dtype=torch.float32).expand(n, -1),
                      global_orient=torch.as_tensor(video.global_orient[sl], dtype=torch.float32),
                      body_pose=torch.as_tensor(video.body_pose[sl], dtype=torch.float32),
                      transl=torch.as_tensor(video.transl[sl], dtype=torch.float32))
            rgb, cover = render_meshes(o.vertices, faces, spec.image_height, spec.image_width,
                                       torch.full((n,), spec.focal_length),
                                       torch.tensor([[spec.image_width / 2, spec.image_height / 2]]).expand(n, 2),
                                       colour=FIGURE_COLOUR)
            out[sl] = overlay(np.broadcast_to(background, (n,) + background.shape), rgb, cover, 1.0)
    return out, video


def write_body_clips(out_url: str, arrays: Mapping[str, Any], spec) -> list[str]:
    """Write ``spec.videos`` clips (``BodyClipSpec``) as ``walk_NNN.mp4`` under ``out_url``; returns their URLs.

    Each clip faces the camera within +-20 degrees (a detector sees the front of the body).
    """
    from dl3d.data import fs as fsx
    from dl3d.video.decode import encode_video

    urls = []
    for i in range(spec.videos):
        kspec = KeypointVideoSpec(frames=spec.frames, fps=spec.fps, image_width=spec.width, image_height=spec.height,
                                  focal_length=spec.focal_length, min_depth=spec.distance, max_depth=spec.distance,
                                  yaw_deg=0.0, yaw_range_deg=20.0, seed=spec.seed + i)
        frames, _ = render_body_clip(arrays, kspec)
        url = f"{out_url.rstrip('/')}/walk_{i:03d}.mp4"
        fsx.write_file(url, encode_video(frames, spec.fps, crf=12))
        urls.append(url)
    return urls
