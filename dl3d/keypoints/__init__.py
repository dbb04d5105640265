"""Keypoint formats (joint names, SMPL correspondence, conversion by name): see :mod:`dl3d.keypoints.formats`."""

from dl3d.keypoints.formats import (DERIVED_JOINTS, FORMATS, SMPL_JOINT_OF, SYNTHETIC_PROXIES, KeypointFormat, convert,
                                    get_format, joint_alias)

__all__ = ["DERIVED_JOINTS", "FORMATS", "SMPL_JOINT_OF", "SYNTHETIC_PROXIES", "KeypointFormat", "convert", "get_format",
           "joint_alias"]
