"""What each Ray Train worker runs: restore, wrap in DDP, stream batches, step, evaluate, checkpoint.

One function, :func:`train_loop_per_worker`, serves every model family (``dl3d.train.ModelFamily``).
The driver (``dl3d.jobs.train``) hands it a :class:`LoopPlan` as ``train_loop_config["plan"]``.

- Resume: ``ray.train.get_checkpoint()`` is the latest checkpoint of this run (from an earlier
  invocation with the same storage and name, or from the attempt that crashed); modules, optimizers,
  the step counter and the metrics history are restored, and the data stream skips the batches of
  the current epoch that were already used, so a resumed run sees the batches an uninterrupted one
  would (exactly so with ``shuffle`` off).
- DDP: ``ray.train.torch.prepare_model`` wraps each module (a GAN's two separately); the batch is
  the global batch split evenly across workers, each worker's loss is a mean over its part, and DDP
  averages gradients, so N workers take the same step as one worker on the whole batch.
- Randomness: before each step the global torch RNG is seeded from (seed, step, rank), so a step
  draws the same random numbers whether or not the run was resumed before it.
- Metrics: every step's family metrics are averaged over the workers; rank 0 keeps the rows, adds
  ``eval_*`` metrics on the held-out split every ``eval_every`` steps, and stores all rows in every
  checkpoint. ``ray.train.report`` (a barrier across workers) is called only with a checkpoint, and
  no worker goes on before the controller has committed it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from dl3d.data import read_table
from dl3d.jobs.console import say
from dl3d.train.checkpoint import META_FILE, load_checkpoint, save_checkpoint
from dl3d.train.family import ModelFamily, Modules, step_seed, unwrap


@dataclass
class LoopPlan:
    """Everything a worker needs, decided once by the driver."""

    family: ModelFamily
    model_config: Any
    """The family's config instance."""
    steps: int
    """Train until this many steps are done."""
    batch_size: int
    """Global batch size; each worker takes ``batch_size // world_size`` rows per step."""
    train_rows: int
    """Rows in the training split (to know the batches per epoch when resuming mid-epoch)."""
    eval_urls: list[str]
    """Held-out shards, read by rank 0 only ([] = no evaluation)."""
    eval_every: int
    eval_batches: int
    checkpoint_every: int
    log_every: int
    shuffle: bool
    seed: int
    cpus_per_worker: float
    run_id: str
    """This invocation's id, written in every metrics row as ``run``."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Written to each checkpoint's ``train.json`` (family name, configs)."""
    console: Any = None
    """The driver's ``ConsoleRelay`` queue (``dl3d.jobs.console``): rank 0's lines and warnings go there."""


def epoch_batches(shard: Any, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int) -> Any:
    """One epoch of a worker's ``pyarrow`` batches from its dataset shard: rows shuffled within a buffer of four
    batches, seeded by (seed, epoch, rank), when ``shuffle``; the last partial batch dropped."""
    return shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", drop_last=True,
                              local_shuffle_buffer_size=4 * batch_size if shuffle else None,
                              local_shuffle_seed=(seed * 1_000_003 + epoch * 1009 + rank) if shuffle else None)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """The Ray Train loop; returns the metrics rows (rank 0), start step, final step and world size."""
    plan: LoopPlan = config["plan"]
    family, cfg = plan.family, plan.model_config
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = _device()
    _bind_console(plan.console if rank == 0 else None)
    torch.set_num_threads(max(1, int(plan.cpus_per_worker)))

    kwargs = {"find_unused_parameters": True} if family.find_unused_parameters else None
    modules = {k: ray.train.torch.prepare_model(m, move_to_device=device, parallel_strategy_kwargs=kwargs)
               for k, m in family.build(cfg).items()}
    optimizers = family.make_optimizers(modules, cfg)
    start_step, rows = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # every rank loads the same state into its (DDP-wrapped) modules
        with checkpoint.as_directory() as d:
            _check_same_family(d, plan)
            restored = load_checkpoint(d, modules, optimizers)
        start_step, rows = restored.step, [r for r in restored.metrics if r["step"] <= restored.step]
        if rank == 0:
            _say(f"resumed from the checkpoint at step {start_step}")

    local_batch = plan.batch_size // world
    per_epoch = plan.train_rows // world // local_batch
    evaluator = _Evaluator(plan, device) if rank == 0 and plan.eval_urls and plan.eval_every > 0 else None
    step = start_step
    epoch, skip = divmod(step, per_epoch)
    shard = ray.train.get_dataset_shard("train")
    t0 = last_log = time.perf_counter()
    steps_since_log = 0
    while step < plan.steps:
        seen = 0
        for table in epoch_batches(shard, local_batch, plan.shuffle, plan.seed, epoch, rank):
            seen += 1
            if skip:  # resumed mid-epoch: these batches were trained on before the checkpoint
                skip -= 1
                continue
            t_step = time.perf_counter()
            step += 1
            family.schema.validate(table, f"training batch at step {step}")
            batch = family.decode_batch(table, cfg, device)
            for m in modules.values():
                m.train()
            torch.manual_seed(step_seed(plan.seed, step, rank))
            metrics = _mean_over_workers(family.train_step(modules, optimizers, batch, step, cfg), world, device)
            row: dict[str, Any] = {"step": step, "epoch": epoch, **metrics}
            if evaluator is not None and (step % plan.eval_every == 0 or step == plan.steps):
                row.update({f"eval_{k}": v for k, v in evaluator(modules).items()})
            row.update(step_s=round(time.perf_counter() - t_step, 6), time_s=round(time.perf_counter() - t0, 3),
                       run=plan.run_id)
            rows.append(row)
            steps_since_log += 1
            if rank == 0 and plan.log_every > 0 and (step % plan.log_every == 0 or step == plan.steps):
                now = time.perf_counter()
                _say(_progress_line(row, plan.steps, steps_since_log / max(now - last_log, 1e-9)))
                last_log, steps_since_log = now, 0
            if step % plan.checkpoint_every == 0 or step == plan.steps:
                _report(modules, optimizers, step, rows, plan, rank)
            if step >= plan.steps:
                break
        if seen == 0:
            raise RuntimeError(f"epoch {epoch} of the training split gave no batch of {local_batch} rows")
        epoch, skip = epoch + 1, 0
    return {"rows": rows if rank == 0 else [], "start_step": start_step, "final_step": max(step, start_step),
            "world_size": world}


_CONSOLE: Any = None
"""Where :func:`_say` sends lines in this worker: the driver's relay queue (rank 0), else None."""


def _bind_console(queue: Any) -> None:
    """Send this worker's :func:`_say` lines and Python warnings to the driver's relay ``queue`` (rank 0)."""
    global _CONSOLE
    _CONSOLE = queue
    if queue is not None:
        warnings.showwarning = lambda message, category, *_a, **_k: _say(f"warning: {category.__name__}: {message}")


def _say(line: str) -> None:
    """One line for the user: through the driver's relay on rank 0 (Ray keeps workers' stdout in its
    log files unless ``--verbose``), else to this worker's stdout."""
    say(_CONSOLE, line)


def _device() -> torch.device:
    """The GPU Ray Train assigned when CUDA is really there (fake GPU resources on a CPU box: ``cpu``)."""
    if torch.cuda.is_available():
        device = ray.train.torch.get_device()
        return device[0] if isinstance(device, list) else device
    return torch.device("cpu")


def _mean_over_workers(metrics: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Average each metric over the workers (every worker returns the same keys)."""
    if world == 1 or not dist.is_initialized():
        return {k: float(v) for k, v in metrics.items()}
    keys = sorted(metrics)
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist())}


def _report(modules: Modules, optimizers, step: int, rows: list[dict], plan: LoopPlan, rank: int) -> None:
    """Checkpoint from rank 0; every rank calls ``ray.train.report`` (a barrier), then waits until
    Ray Train has committed the checkpoint."""
    metrics = {k: v for k, v in rows[-1].items() if isinstance(v, (int, float)) and math.isfinite(v)}
    name = f"step-{step:08d}"
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="dl3d-ckpt-") as d:
            save_checkpoint(d, modules, optimizers, step, plan.meta, rows)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d), checkpoint_dir_name=name)
    else:
        ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
    # The controller registers a reported checkpoint when it next polls the workers; a worker failing
    # before that loses it. No rank goes on until it is committed, so a failure after this resumes here.
    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)


def _check_same_family(directory: str, plan: LoopPlan) -> None:
    with open(os.path.join(directory, META_FILE)) as f:
        meta = json.load(f)
    if meta.get("family") != plan.family.name:
        raise ValueError(f"the latest checkpoint of this run was written by family {meta.get('family')!r}, "
                         f"not {plan.family.name!r}; use another --name or --storage")


def _progress_line(row: dict[str, Any], steps: int, rate: float) -> str:
    shown = [f"{k} {v:.4g}" for k, v in row.items()
             if k not in ("step", "epoch", "step_s", "time_s", "run") and isinstance(v, float)]
    return f"step {row['step']}/{steps} (epoch {row['epoch']})  " + "  ".join(shown) + f"  {rate:.1f} steps/s"


class _Evaluator:
    """Rank 0's evaluation on the held-out shards, read once (up to ``eval_batches`` batches) and kept."""

    def __init__(self, plan: LoopPlan, device: torch.device):
        self.plan, self.device = plan, device
        self.tables: list[pa.Table] | None = None

    def _load(self) -> list[pa.Table]:
        limit = self.plan.eval_batches * self.plan.batch_size if self.plan.eval_batches > 0 else None
        tables, rows = [], 0
        for url in self.plan.eval_urls:
            if limit is not None and rows >= limit:
                break
            t = read_table(url, self.plan.family.schema)
            tables.append(t)
            rows += t.num_rows
        table = pa.concat_tables(tables, promote_options="permissive") if tables else None
        if table is None or table.num_rows == 0:
            raise ValueError("the evaluation split has no rows")
        if limit is not None:
            table = table.slice(0, limit)
        bs = self.plan.batch_size
        return [table.slice(i, bs) for i in range(0, table.num_rows, bs)]

    def __call__(self, modules: Modules) -> dict[str, float]:
        """Row-weighted means of the family's ``evaluate`` metrics over the held-out batches."""
        if self.tables is None:
            self.tables = self._load()
        plain = {k: unwrap(m) for k, m in modules.items()}
        for m in plain.values():
            m.eval()
        sums: dict[str, float] = {}
        n = 0
        family, cfg = self.plan.family, self.plan.model_config
        with torch.no_grad():
            for table in self.tables:
                batch = family.decode_batch(table, cfg, self.device)
                for k, v in family.evaluate(plain, batch, cfg).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * table.num_rows
                n += table.num_rows
            out = {k: v / n for k, v in sums.items()}
            if family.evaluate_set is not None:  # set-level metrics (KID, FID) over every held-out batch
                batches = (family.decode_batch(t, cfg, self.device) for t in self.tables)
                out.update({k: float(v) for k, v in family.evaluate_set(plain, batches, cfg).items()})
        for m in plain.values():
            m.train()
        return out
