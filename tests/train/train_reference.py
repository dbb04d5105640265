"""The training loop without Ray or DDP: one process, batches in dataset order (the driver's reference)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch

from dl3d.data import read_table
from dl3d.train.family import ModelFamily, step_seed


def reference_train(family: ModelFamily, cfg: Any, train_urls: list[str], steps: int, batch_size: int,
                    seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Module state dicts after ``steps`` steps over the training shards in order, ``batch_size`` rows each.

    Epochs wrap around and drop the last partial batch, like the driver with ``shuffle`` off on one
    worker; each step's RNG is seeded as the driver seeds it for rank 0.
    """
    table = pa.concat_tables([read_table(u, family.schema) for u in train_urls])
    per_epoch = table.num_rows // batch_size
    modules = family.build(cfg)
    optimizers = family.make_optimizers(modules, cfg)
    for step in range(1, steps + 1):
        i = (step - 1) % per_epoch
        batch = family.decode_batch(table.slice(i * batch_size, batch_size), cfg, torch.device("cpu"))
        torch.manual_seed(step_seed(seed, step, 0))
        family.train_step(modules, optimizers, batch, step, cfg)
    return {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in modules.items()}


def max_abs_diff(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> float:
    """Largest absolute difference between two ``{module: state_dict}``s with the same keys."""
    assert a.keys() == b.keys() and all(a[k].keys() == b[k].keys() for k in a)
    return max(float((a[k][n].float() - b[k][n].float()).abs().max()) for k in a for n in a[k])
