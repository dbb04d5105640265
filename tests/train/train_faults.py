"""A test-only model family whose worker process dies once, at a given step (imported by Ray workers)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from dl3d.config import opt
from dl3d.train.toy import TOY_FAMILY, ToyConfig, toy_train_step


@dataclass
class CrashConfig(ToyConfig):
    """The toy regressor, plus where to crash."""

    crash_step: int = opt(-1, "step at which the worker process exits (os._exit) the first time")
    marker: str = opt("", "file written just before the crash; once it exists the crash is disarmed")


def crash_train_step(modules, optimizers, batch, step: int, cfg: CrashConfig) -> dict[str, float]:
    if step == cfg.crash_step and not os.path.exists(cfg.marker):
        with open(cfg.marker, "w") as f:
            f.write(f"pid {os.getpid()} crashed at step {step}\n")
        os._exit(17)
    return toy_train_step(modules, optimizers, batch, step, cfg)


CRASH_FAMILY = dataclasses.replace(TOY_FAMILY, name="toy-crash", config_cls=CrashConfig, presets={},
                                   train_step=crash_train_step, doc="toy regression whose worker dies once")
