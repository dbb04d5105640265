"""The model-family contract of the training driver, and the one flat registry of families.

A model family tells the driver (``dl3d.jobs.train``) everything model-specific: how to build its
modules and optimizers from a typed config, which dataset kind it trains on, how to turn one Arrow
batch into tensors, and what one training step and one evaluation are. The driver owns the rest:
Ray Train workers, DDP, data streaming, checkpoints, resume, metrics. Everything here is pure torch.

Registry: ``FAMILIES`` maps a name to a :class:`ModelFamily`. Built-in families are declared in
``FAMILY_MODULES`` as ``"module:attribute"`` and imported the first time :func:`get_family` asks for
them, so importing ``dl3d.train`` imports no model code. A family module never registers itself.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pyarrow as pa
import torch
from torch import Tensor, nn

from dl3d.data.schema import TableSchema

Modules = dict[str, nn.Module]
"""A family's trainable modules by name, e.g. ``{"model": ...}`` or ``{"generator": ..., "discriminator": ...}``."""
Optimizers = dict[str, torch.optim.Optimizer]
"""A family's optimizers by name (a GAN has one per player)."""
Batch = dict[str, Tensor]
"""One decoded batch: named tensors on the training device."""


@dataclass(frozen=True)
class ModelFamily:
    """Everything the training driver needs to know about one kind of model.

    The functions are plain module-level functions (so Ray can ship a family to its workers by
    reference). ``modules`` passed to ``train_step`` may be wrapped in DDP by the driver; the ones
    passed to ``evaluate`` are the plain modules. ``step`` is 1-based: the step being taken, which
    is also the number of steps done once it returns.
    """

    name: str
    """Registry name; ``dl3d train NAME``."""
    config_cls: type
    """The family's config dataclass (fields declared with ``dl3d.config.opt``)."""
    presets: dict[str, Any]
    """Named config instances (``--preset NAME``); each must be an instance of ``config_cls``."""
    dataset_kind: str
    """The dataset kind it trains on (``_dataset.json`` ``kind``); equals ``schema.kind``."""
    schema: TableSchema
    """Schema every training and evaluation shard is checked against."""
    build: Callable[[Any], Modules]
    """``build(cfg) -> {name: nn.Module}``: freshly initialised modules on the CPU, seeded from ``cfg``."""
    make_optimizers: Callable[[Modules, Any], Optimizers]
    """``make_optimizers(modules, cfg) -> {name: Optimizer}`` over the (possibly DDP-wrapped) modules' parameters."""
    decode_batch: Callable[[pa.Table, Any, torch.device], Batch]
    """``decode_batch(table, cfg, device) -> {name: Tensor}``: one Arrow batch (already schema-checked) to tensors."""
    train_step: Callable[[Modules, Optimizers, Batch, int, Any], dict[str, float]]
    """``train_step(modules, optimizers, batch, step, cfg) -> metrics``: zero_grad, forward, backward and
    optimizer step(s) itself; returns plain floats (losses of this worker's part of the batch)."""
    evaluate: Callable[[Modules, Batch, Any], dict[str, float]]
    """``evaluate(modules, batch, cfg) -> metrics``: means over the batch, called under ``torch.no_grad()``
    with the modules in eval mode; the driver averages them over batches weighted by batch size and
    reports them prefixed ``eval_``."""
    evaluate_set: Callable[[Modules, Iterable[Batch], Any], dict[str, float]] | None = None
    """Optional set-level evaluation ``evaluate_set(modules, batches, cfg) -> metrics``, for metrics that are
    not means over batches (KID, FID): called once per evaluation, under ``torch.no_grad()`` with the plain
    modules in eval mode, with an iterable over every held-out batch (decoded); reported prefixed ``eval_``
    beside ``evaluate``'s."""
    find_unused_parameters: bool = False
    """Passed to DDP: set when some step leaves a module's parameters out of the backward pass."""
    doc: str = ""
    """One line for ``dl3d train --help``."""

    def __post_init__(self):
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"family {self.name!r}: config_cls must be a dataclass, got {self.config_cls!r}")
        for preset, cfg in self.presets.items():
            if not isinstance(cfg, self.config_cls):
                raise TypeError(f"family {self.name!r}: preset {preset!r} is a {type(cfg).__name__}, "
                                f"expected {self.config_cls.__name__}")
        if self.dataset_kind != self.schema.kind:
            raise ValueError(f"family {self.name!r}: dataset_kind {self.dataset_kind!r} differs from "
                             f"its schema's kind {self.schema.kind!r}")

    def config(self, preset: str | None = None, **overrides: Any) -> Any:
        """The config of ``preset`` (None: the config class defaults) with ``overrides`` applied.

        Raises:
            ValueError: unknown preset (the message lists the known ones) or unknown field.
        """
        if preset is None:
            base = self.config_cls()
        elif preset in self.presets:
            base = self.presets[preset]
        else:
            known = ", ".join(sorted(self.presets)) or "none"
            raise ValueError(f"family {self.name!r} has no preset {preset!r}; known presets: {known}")
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown config field(s) {unknown}; fields: {sorted(names)}")
        return dataclasses.replace(base, **overrides)


FAMILY_MODULES: dict[str, str] = {
    "giraffe": "dl3d.giraffe.family:GIRAFFE_FAMILY",
    "synsin": "dl3d.synsin.family:SYNSIN_FAMILY",
    "meshrcnn": "dl3d.meshrcnn.family:MESHRCNN_FAMILY",
    "toy": "dl3d.train.toy:TOY_FAMILY",
}
"""Built-in families, imported on first use: name -> ``"module:attribute"``."""

FAMILIES: dict[str, ModelFamily] = {}
"""Families in use: the built-ins loaded so far plus any registered with :func:`register_family`."""


def register_family(family: ModelFamily) -> ModelFamily:
    """Add ``family`` to :data:`FAMILIES`; returns it.

    Raises:
        ValueError: the name is taken, by a registered family or by a built-in declared in
            :data:`FAMILY_MODULES` that is not this very object.
    """
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered twice")
    if family.name in FAMILY_MODULES and _load(FAMILY_MODULES[family.name]) is not family:
        raise ValueError(f"model family name {family.name!r} is taken by the built-in "
                         f"{FAMILY_MODULES[family.name]}")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The family called ``name``, importing a built-in on first use.

    Raises:
        ValueError: no such family; the message lists the known names.
    """
    if name in FAMILIES:
        return FAMILIES[name]
    if name in FAMILY_MODULES:
        return register_family(_load(FAMILY_MODULES[name]))
    raise ValueError(f"unknown model family {name!r}; known families: {', '.join(known_families()) or 'none'}")


def known_families() -> list[str]:
    """Names of the built-in and registered families, sorted."""
    return sorted(set(FAMILY_MODULES) | set(FAMILIES))


def _load(path: str) -> ModelFamily:
    module, _, attr = path.partition(":")
    family = getattr(importlib.import_module(module), attr)
    if not isinstance(family, ModelFamily):
        raise TypeError(f"{path} is a {type(family).__name__}, expected a ModelFamily")
    return family


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the global torch RNG for ``train_step`` number ``step`` on worker ``rank``.

    The driver seeds before every step, so a step draws the same random numbers whether or not the
    run was resumed before it.
    """
    return (seed * 1_000_003 + step * 7919 + rank) % (2**63)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A family or job config as a JSON-ready dict (for checkpoints and run records)."""
    return dataclasses.asdict(cfg)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or other ``.module``-holding) wrapper; ``module`` itself otherwise."""
    while isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        module = module.module
    return module


__all__ = ["Batch", "FAMILIES", "FAMILY_MODULES", "ModelFamily", "Modules", "Optimizers", "config_to_dict",
           "get_family", "known_families", "register_family", "step_seed", "unwrap"]
