"""SMPLify fitting of SMPL bodies to 2D keypoints, batched over every frame of a shard.

``fit_smplify(kernel, keypoints, fmt, track_index, frame, focal, principal_point, cfg)`` is the
entry point; ``SMPLIFY_PRESETS`` holds the "default", "fast" and "per-frame" configurations. The
pieces (priors, interpenetration spheres, camera initialisation, row bookkeeping) are usable alone.
"""

from dl3d.fitting.camera import (ambiguous_facing, facing_camera, facing_rotation, fit_camera, fit_camera_with_flip,
                                 flip_about_vertical, init_camera_translation)
from dl3d.fitting.interpenetration import SphereBody, sphere_body, sphere_overlap
from dl3d.fitting.priors import (GmmPosePrior, GmmPriorError, angle_prior, builtin_pose_prior, load_gmm_prior,
                                 shape_prior, write_gmm_file)
from dl3d.fitting.smplify import SMPLIFY_PRESETS, FitInit, FitResult, SmplifyConfig, fit_smplify
from dl3d.fitting.tracks import STATUSES

__all__ = [
    "SMPLIFY_PRESETS",
    "STATUSES",
    "FitInit",
    "FitResult",
    "GmmPosePrior",
    "GmmPriorError",
    "SmplifyConfig",
    "SphereBody",
    "ambiguous_facing",
    "angle_prior",
    "builtin_pose_prior",
    "facing_camera",
    "facing_rotation",
    "fit_camera",
    "fit_camera_with_flip",
    "fit_smplify",
    "flip_about_vertical",
    "init_camera_translation",
    "load_gmm_prior",
    "shape_prior",
    "sphere_body",
    "sphere_overlap",
    "write_gmm_file",
]
