"""Training: the model-family contract, its registry, and checkpoint folders (pure torch).

The distributed driver that uses them lives in ``dl3d.jobs.train`` (Ray Train). Built-in families
are imported on first use by :func:`get_family`; importing this package imports no model code.
"""

from dl3d.train.checkpoint import TrainingState, load_checkpoint, read_checkpoint, save_checkpoint
from dl3d.train.family import (
    FAMILIES, FAMILY_MODULES, Batch, ModelFamily, Modules, Optimizers, get_family, known_families,
    register_family, step_seed, unwrap,
)

__all__ = [
    "Batch", "FAMILIES", "FAMILY_MODULES", "ModelFamily", "Modules", "Optimizers", "TrainingState",
    "get_family", "known_families", "load_checkpoint", "read_checkpoint", "register_family",
    "save_checkpoint", "step_seed", "unwrap",
]
