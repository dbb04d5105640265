"""Body models: SMPL-format model files, smplx's SMPL built from them, and a procedural stand-in.

``read_body_model_arrays`` / ``load_body_model`` read real SMPL downloads (Python-2 pickles with
chumpy objects, no chumpy needed) and dl3d's own files; ``make_procedural_body_model`` and
``write_body_model`` make a body model in SMPL's format that is NOT SMPL, for tests and demos.
Only numpy is imported here; torch and smplx load when a model is built.
"""

from __future__ import annotations

from dl3d.body.model_file import (
    BODY_MODEL_NOTE_KEY,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    BodyModelError,
    body_model_from_arrays,
    is_procedural,
    load_body_model,
    read_body_model_arrays,
    validate_body_model_arrays,
)
from dl3d.body.procedural import (
    PROCEDURAL_BODY_MODEL_NOTE,
    SMPL_KEYPOINT_VERTEX_IDS,
    make_procedural_body_model,
    write_body_model,
)

__all__ = [
    "BODY_MODEL_NOTE_KEY",
    "PROCEDURAL_BODY_MODEL_NOTE",
    "SMPL_JOINT_NAMES",
    "SMPL_KEYPOINT_VERTEX_IDS",
    "SMPL_PARENTS",
    "BodyModelError",
    "body_model_from_arrays",
    "is_procedural",
    "load_body_model",
    "make_procedural_body_model",
    "read_body_model_arrays",
    "validate_body_model_arrays",
    "write_body_model",
]
