"""Training checkpoints as plain folders, and the per-step metrics table.

A checkpoint folder holds:

- ``state.pt``: ``{"step": int, "modules": {name: state_dict}, "optimizers": {name: state_dict}}``
  (module state dicts are taken from the plain modules, never from a DDP wrapper, so their keys
  carry no ``module.`` prefix and load into an unwrapped model);
- ``train.json``: the step, the family name, its config and the job config, as JSON;
- ``metrics.csv``: one row per step from step 1 up to this checkpoint's step, over all the runs and
  retries that led to it (the rows of a crashed attempt after its last checkpoint are not there).

Pure torch and fsspec: the training driver stores these folders through Ray Train, and
:func:`read_checkpoint` reads one back from any fsspec URL.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from dl3d.data import fs as fsx
from dl3d.train.family import Modules, Optimizers, unwrap

STATE_FILE = "state.pt"
META_FILE = "train.json"
METRICS_FILE = "metrics.csv"


@dataclass
class TrainingState:
    """What a checkpoint restores."""

    step: int
    """Steps done when it was written."""
    meta: dict[str, Any]
    """Content of ``train.json``."""
    metrics: list[dict[str, Any]]
    """Per-step rows up to ``step``."""


def save_checkpoint(directory: str, modules: Modules, optimizers: Optimizers, step: int,
                    meta: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    """Write ``state.pt``, ``train.json`` and ``metrics.csv`` into the local folder ``directory``."""
    os.makedirs(directory, exist_ok=True)
    state = {
        "step": step,
        "modules": {k: unwrap(m).state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
    }
    torch.save(state, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump({**meta, "step": step}, f, indent=2, sort_keys=True, default=str)
    with open(os.path.join(directory, METRICS_FILE), "w", newline="") as f:
        f.write(metrics_to_csv(metrics))


def load_checkpoint(directory: str, modules: Modules, optimizers: Optimizers | None = None) -> TrainingState:
    """Load module (and, when given, optimizer) states from the local folder ``directory``.

    ``modules`` may be wrapped in DDP: the state goes into the plain module inside (every rank loads
    the same checkpoint, so the replicas stay equal). Module and optimizer names must match the
    checkpoint's.

    Raises:
        ValueError: the checkpoint holds other module or optimizer names than the ones given, or an
            optimizer with another number of parameter groups.
    """
    state = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)
    _check_names("modules", set(state["modules"]), set(modules), directory)
    for k, m in modules.items():
        unwrap(m).load_state_dict(state["modules"][k])
    if optimizers is not None:
        _check_names("optimizers", set(state["optimizers"]), set(optimizers), directory)
        for k, o in optimizers.items():
            saved = len(state["optimizers"][k]["param_groups"])
            if saved != len(o.param_groups):
                raise ValueError(f"checkpoint {directory}: its optimizer {k!r} has {saved} parameter group(s), this "
                                 f"run's has {len(o.param_groups)}: the config changed how parameters are grouped "
                                 f"(for example a per-head learning-rate factor); resume with the config it was saved with")
            o.load_state_dict(state["optimizers"][k])
    with open(os.path.join(directory, META_FILE)) as f:
        meta = json.load(f)
    with open(os.path.join(directory, METRICS_FILE), newline="") as f:
        metrics = metrics_from_csv(f.read())
    return TrainingState(step=int(state["step"]), meta=meta, metrics=metrics)


def read_checkpoint(url: str) -> dict[str, Any]:
    """Read a checkpoint folder at any fsspec URL (local path, ``s3://``…) without building the model.

    Returns ``{"step", "modules": {name: state_dict}, "optimizers": {...}, "meta": dict, "metrics": rows}``
    with every tensor on the CPU.
    """
    root = url.rstrip("/")
    what = "file of a training checkpoint folder"
    state = torch.load(fsx.open_asset(fsx.join(root, STATE_FILE), what=what), map_location="cpu", weights_only=True)
    meta = json.loads(fsx.read_asset(fsx.join(root, META_FILE), what=what))
    metrics = metrics_from_csv(fsx.read_asset(fsx.join(root, METRICS_FILE), what=what).decode())
    return {**state, "meta": meta, "metrics": metrics}


def metrics_to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text; the columns are the union of the rows' keys in first-seen order, blanks for missing."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def metrics_from_csv(text: str) -> list[dict[str, Any]]:
    """Inverse of :func:`metrics_to_csv`: numbers come back as int or float, blanks are left out."""
    return [{k: _parse(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(text))]


def _parse(value: str) -> Any:
    for typ in (int, float):
        try:
            return typ(value)
        except ValueError:
            pass
    return value


def _check_names(what: str, found: set[str], expected: set[str], directory: str) -> None:
    if found != expected:
        raise ValueError(f"checkpoint {directory}: holds {what} {sorted(found)}, this model has {sorted(expected)}")
