"""The ``toy`` model family: seeded linear / MLP regression on a synthetic ``toy_regression`` dataset.

Small enough to train for a few steps on a CPU in a test, yet exercises the whole driver: Parquet
shards, schema checks, DDP, optimizers with state (Adam), checkpoints, evaluation.

Dataset ``toy_regression``: one row per sample, ``id``, ``x`` (F float32 features) and ``y`` (float32
target), with ``y = x @ w + b + noise`` for a ``w``, ``b`` fixed by the writer's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dl3d.config import opt
from dl3d.data import DataError, DatasetWriter, arrow_to_tensor, to_table
from dl3d.data.schema import Column, TableSchema
from dl3d.train.family import Batch, ModelFamily, Modules, Optimizers

TOY_REGRESSION = TableSchema(
    kind="toy_regression",
    version=1,
    doc="Synthetic regression samples: y = x @ w + b + noise.",
    columns=(
        Column("id", pa.string(), doc="row identifier, unique within the dataset"),
        Column("x", pa.list_(pa.float32()), shape=(None,), doc="(F,) features, unitless"),
        Column("y", pa.float32(), doc="target, unitless"),
    ),
)


@dataclass
class ToyConfig:
    """The toy regressor and its optimizer."""

    features: int = opt(8, "input features F; must match the dataset's x length")
    hidden: int = opt(0, "hidden units of a one-hidden-layer MLP (0 = a linear model)")
    optimizer: Literal["sgd", "adam"] = opt("sgd", "optimizer")
    lr: float = opt(0.1, "learning rate")
    momentum: float = opt(0.0, "SGD momentum")
    init_seed: int = opt(0, "seed of the parameter initialisation")

    def __post_init__(self):
        if self.features < 1:
            raise ValueError(f"features must be >= 1, got {self.features}")
        if self.hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {self.hidden}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


class ToyRegressor(nn.Module):
    """``x: (N, F) float -> (N,) float``: linear, or Linear-ReLU-Linear when ``hidden > 0``."""

    def __init__(self, features: int, hidden: int = 0):
        super().__init__()
        if hidden:
            self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        else:
            self.net = nn.Linear(features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def build_toy(cfg: ToyConfig) -> Modules:
    """``{"model": ToyRegressor}`` initialised from ``cfg.init_seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return {"model": ToyRegressor(cfg.features, cfg.hidden)}


def make_toy_optimizers(modules: Modules, cfg: ToyConfig) -> Optimizers:
    params = modules["model"].parameters()
    if cfg.optimizer == "adam":
        return {"model": torch.optim.Adam(params, lr=cfg.lr)}
    return {"model": torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)}


def decode_toy_batch(table: pa.Table, cfg: ToyConfig, device: torch.device) -> Batch:
    """``x: (N, F) float32``, ``y: (N,) float32`` on ``device``; a wrong F raises DataError naming the column."""
    x = arrow_to_tensor(table.column("x"), (cfg.features,), name="x", source="toy_regression batch")
    y_col = table.column("y")
    if y_col.null_count:
        raise DataError("toy_regression batch", "column 'y': null value")
    y = y_col.to_numpy().astype(np.float32)
    return {"x": torch.from_numpy(x.copy()).to(device), "y": torch.from_numpy(y).to(device)}


def toy_train_step(modules: Modules, optimizers: Optimizers, batch: Batch, step: int,
                   cfg: ToyConfig) -> dict[str, float]:
    """One optimizer step on the mean squared error of this batch."""
    opt_ = optimizers["model"]
    opt_.zero_grad(set_to_none=True)
    loss = F.mse_loss(modules["model"](batch["x"]), batch["y"])
    loss.backward()
    opt_.step()
    return {"loss": float(loss.detach())}


def toy_evaluate(modules: Modules, batch: Batch, cfg: ToyConfig) -> dict[str, float]:
    """Mean squared and mean absolute error over the batch."""
    err = modules["model"](batch["x"]) - batch["y"]
    return {"loss": float((err**2).mean()), "mae": float(err.abs().mean())}


def make_toy_dataset(url: str, rows: int = 256, shards: int = 4, seed: int = 0, features: int = 8,
                     noise: float = 0.01) -> dict[str, Any]:
    """Write a ``toy_regression`` dataset of ``rows`` rows in ``shards`` contiguous shards; returns ``_dataset.json``.

    ``x ~ N(0, 1)``, ``y = x @ w + 0.5 + noise * N(0, 1)`` with ``w ~ N(0, 1)``, all from ``seed``;
    ids are ``r00000``, ``r00001``, … in shard order.
    """
    if rows < 1 or shards < 1 or shards > rows:
        raise ValueError(f"expected 1 <= shards <= rows, got rows={rows}, shards={shards}")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=features)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = (x @ w + 0.5 + noise * rng.normal(size=rows)).astype(np.float32)
    writer = DatasetWriter(url, TOY_REGRESSION, produced_by={
        "generator": "dl3d.train.toy.make_toy_dataset", "synthetic": True,
        "spec": {"rows": rows, "shards": shards, "seed": seed, "features": features, "noise": noise}})
    for i, idx in enumerate(np.array_split(np.arange(rows), shards)):
        writer.write_shard(i, to_table(TOY_REGRESSION, {"id": [f"r{j:05d}" for j in idx], "x": x[idx], "y": y[idx]}))
    return writer.close()


TOY_FAMILY = ModelFamily(
    name="toy",
    config_cls=ToyConfig,
    presets={"linear": ToyConfig(), "mlp": ToyConfig(hidden=32, optimizer="adam", lr=0.01)},
    dataset_kind=TOY_REGRESSION.kind,
    schema=TOY_REGRESSION,
    build=build_toy,
    make_optimizers=make_toy_optimizers,
    decode_batch=decode_toy_batch,
    train_step=toy_train_step,
    evaluate=toy_evaluate,
    doc="seeded linear / MLP regression on a synthetic toy_regression dataset (driver tests and demos)",
)
