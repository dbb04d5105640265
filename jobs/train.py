"""``dl3d train MODEL``: distributed training of any model family on Ray Train.

    dl3d train toy --data URL --storage URL [--workers N] [--gpus-per-worker G] [--steps S]
                   [--preset NAME] [--batch-size B] [--eval-every K] [--checkpoint-every K] [--name NAME]

The driver splits the dataset's shards into a training and a held-out split (whole shards, so a
video or scene never straddles them), streams the training shards with Ray Data into a
``TorchTrainer`` (DDP; gloo on CPU, nccl on GPU), and keeps checkpoints under ``STORAGE/NAME`` (a
local folder or ``s3://``). **Running the same command again resumes** from the run's latest
checkpoint (Ray Train V2: same ``RunConfig(storage_path, name)``, ``ray.train.get_checkpoint()``);
a worker that crashes is replaced and training goes on from the latest checkpoint, up to
``--max-failures`` times. At the end the driver writes ``STORAGE/NAME/metrics.csv``, one row per step
over every run of that name. ``STORAGE/NAME/_train.json`` records the family and model config; a
re-run with another family or model config under the same name is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow.parquet as pq

from dl3d.config import opt
from dl3d.data import DataError, list_shards, read_meta
from dl3d.data import fs as fsx
from dl3d.train.checkpoint import metrics_to_csv
from dl3d.train.family import ModelFamily, config_to_dict, get_family
from dl3d.jobs.cli_args import add_dataclass_arguments, dataclass_from_args
from dl3d.jobs.placement import Placement, plan_workers

RUN_RECORD = "_train.json"
METRICS_CSV = "metrics.csv"


@dataclass(kw_only=True)
class TrainConfig(Placement):
    """How a model is trained on Ray: its placement (``workers``, ``gpus_per_worker``, ``cpus_per_worker``,
    ``ray_address``; auto = one worker per GPU, else 1), then data, storage, steps."""

    data: str = opt(help="training dataset URL (local path or s3://bucket/prefix), of the family's kind")
    storage: str = opt(help="where runs live (local folder or s3://bucket/prefix): STORAGE/NAME holds "
                            "checkpoints and metrics.csv")
    name: str | None = opt(None, "run name; the same --storage and --name resume the run (default: the family's name)")
    preset: str | None = opt(None, "model config preset of the family (default: the family config's defaults)")
    steps: int = opt(100, "train until this many optimizer steps are done (counting those of earlier runs)")
    batch_size: int = opt(32, "global batch size, split evenly across the workers")
    eval_data: str | None = opt(None, "held-out dataset URL (default: the last --eval-shards shards of --data)")
    eval_shards: int = opt(1, "trailing shards of --data held out for evaluation without --eval-data (0 = none)")
    eval_every: int = opt(50, "evaluate on the held-out split every K steps and at the last step (0 = never)")
    eval_batches: int = opt(0, "batches per evaluation (0 = the whole held-out split)")
    checkpoint_every: int = opt(50, "checkpoint every K steps; the last step is always checkpointed")
    keep_checkpoints: int = opt(2, "checkpoints kept in storage (the latest ones)")
    backend: Literal["auto", "gloo", "nccl"] = opt("auto", "torch.distributed backend; auto: nccl with GPUs, else gloo")
    max_failures: int = opt(2, "worker failures to recover from (from the latest checkpoint) before giving up")
    shuffle: bool = opt(True, "shuffle shard order and rows (seeded); --no-shuffle streams rows in order")
    seed: int = opt(0, "seed of the shuffling and of each step's random numbers (not of the model's init)")
    log_every: int = opt(10, "print a progress line every N steps from rank 0 (0 = never)")

    def __post_init__(self):
        super().__post_init__()
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_shards", "eval_every", "eval_batches", "max_failures", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class TrainResult:
    """What a training run did."""

    final_step: int
    """Steps done at the end (== ``TrainConfig.steps`` unless an earlier run went further)."""
    start_step: int
    """Step of the checkpoint the last attempt started from (0 = from scratch)."""
    workers: int
    """Training workers (the DDP world size)."""
    metrics: list[dict[str, Any]]
    """One row per step from step 1, over every run of this name: ``step``, ``epoch``, the family's
    metrics (averaged over workers), ``eval_*`` where evaluated, ``step_s`` (seconds of that step),
    ``time_s`` (seconds since its attempt started, data start-up included) and ``run`` (the id of the
    invocation that trained it)."""
    checkpoint: str | None
    """URL of the latest checkpoint folder (see ``dl3d.train.read_checkpoint``)."""
    run_url: str
    """``STORAGE/NAME``: checkpoints, ``metrics.csv``, ``_train.json``."""
    run_id: str
    """This invocation's id (the ``run`` column of the rows it trained)."""
    seconds: float

    def summary(self) -> str:
        last = self.metrics[-1] if self.metrics else {}
        shown = "  ".join(f"{k} {v:.4g}" for k, v in last.items()
                          if isinstance(v, float) and k not in ("step_s", "time_s"))
        return "\n".join([
            f"run {self.run_url}",
            f"  steps {self.start_step} -> {self.final_step} on {self.workers} worker(s) in {self.seconds:.1f} s",
            f"  last step: {shown}" if shown else "  no step trained",
            f"  checkpoint {self.checkpoint}",
            f"  metrics {self.run_url}/{METRICS_CSV}",
        ])


class TrainingFailed(RuntimeError):
    """The run ended in error after its retries; its checkpoints are kept and a re-run resumes."""


def run_training(family_name: str, cfg: TrainConfig, model_config: Any = None) -> TrainResult:
    """Train family ``family_name`` as ``cfg`` says; resumes the run ``cfg.storage``/``cfg.name`` if it exists.

    Args:
        family_name: a name known to ``dl3d.train.get_family``.
        cfg: the job config.
        model_config: the family's config; default: ``cfg.preset`` (or the config class defaults).

    Raises:
        ValueError: bad options, unknown family or preset, a dataset of another kind, too few rows,
            or a run of that name trained with another family or model config.
        TrainingFailed: a worker kept failing after ``cfg.max_failures`` recoveries.
    """
    import ray
    import ray.data
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from dl3d.jobs.console import ConsoleRelay
    from dl3d.jobs.ray_env import cluster_cpus, cluster_gpus, ensure_ray, worker_runtime_env
    from dl3d.jobs.train_loop import LoopPlan, train_loop_per_worker

    t0 = time.perf_counter()
    family = get_family(family_name)
    mcfg = model_config if model_config is not None else family.config(cfg.preset)
    if not isinstance(mcfg, family.config_cls):
        raise ValueError(f"model_config is a {type(mcfg).__name__}, family {family.name!r} expects "
                         f"{family.config_cls.__name__}")
    name = cfg.name or family.name
    train_urls, eval_urls = split_shards(cfg, family)
    train_rows = _count_rows(train_urls)

    ensure_ray(cfg.ray_address)
    placed = plan_workers(cfg, cluster_gpus(), cluster_cpus(), cpu_auto="one")
    gpus, workers = placed.gpus_per_worker, placed.workers
    _check_sizes(cfg, workers, train_rows)
    free_cpus = cluster_cpus() - workers * cfg.cpus_per_worker
    if free_cpus < 1:
        raise ValueError(f"{workers} workers x {cfg.cpus_per_worker} CPUs leave {free_cpus:g} of the cluster's "
                         f"{cluster_cpus():g} CPUs for Ray Data to read with (ray#44687 would hang); "
                         f"lower --cpus-per-worker or --workers")

    storage_fs, storage_root = fsx.resolve(cfg.storage)
    run_root = fsx.join(storage_root, name)
    run_url = f"{cfg.storage.rstrip('/')}/{name}"
    meta = {"family": family.name, "model_config": config_to_dict(mcfg), "dataset_kind": family.dataset_kind}
    _claim_run(storage_fs, run_root, run_url, meta, cfg)

    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    relay = ConsoleRelay()
    try:  # the relay's queue actor and thread end with the run, however it ends
        plan = LoopPlan(family=family, model_config=mcfg, steps=cfg.steps, batch_size=cfg.batch_size,
                        train_rows=train_rows, eval_urls=eval_urls, eval_every=cfg.eval_every,
                        eval_batches=cfg.eval_batches, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                        shuffle=cfg.shuffle, seed=cfg.seed, cpus_per_worker=cfg.cpus_per_worker, run_id=run_id,
                        meta={**meta, "train_config": dataclasses.asdict(cfg)}, console=relay.queue)
        env = worker_runtime_env()
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"plan": plan},
            torch_config=TorchConfig(backend=_backend(cfg.backend, gpus)),
            scaling_config=ray.train.ScalingConfig(
                num_workers=workers, use_gpu=gpus > 0,
                resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": gpus} if gpus > 0 else {})}),
            run_config=ray.train.RunConfig(
                name=name,
                storage_path=storage_root if not fsx.is_local(storage_fs) else os.path.abspath(storage_root),
                storage_filesystem=None if fsx.is_local(storage_fs) else _pyarrow_fs(storage_fs),
                failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                worker_runtime_env=env),
            datasets={"train": _train_dataset(train_urls, cfg, env)},
            dataset_config=train_data_config(),
        )
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise TrainingFailed(f"training {run_url} failed after {cfg.max_failures} recoveries: {exc}; "
                             "re-run the same command to resume from its latest checkpoint") from exc
    finally:
        relay.close()
    out = result.return_value or {"rows": [], "start_step": 0, "final_step": 0, "world_size": workers}
    fsx.put_bytes(storage_fs, fsx.join(run_root, METRICS_CSV), metrics_to_csv(out["rows"]).encode())
    checkpoint = None
    if result.checkpoint is not None:  # its path has no scheme when the storage is not local
        path = result.checkpoint.path
        checkpoint = path if fsx.is_local(storage_fs) else storage_fs.unstrip_protocol(path)
    return TrainResult(final_step=out["final_step"], start_step=out["start_step"], workers=out["world_size"],
                       metrics=out["rows"], checkpoint=checkpoint, run_url=run_url, run_id=run_id,
                       seconds=time.perf_counter() - t0)


def split_shards(cfg: TrainConfig, family: ModelFamily) -> tuple[list[str], list[str]]:
    """Training and held-out shard URLs: whole shards, so a video or scene never straddles the two.

    Raises:
        DataError: a dataset whose ``_dataset.json`` names another kind than the family's.
        ValueError: too few shards to hold ``cfg.eval_shards`` out.
    """
    _check_kind(cfg.data, family)
    shards = [s.url for s in list_shards(cfg.data)]
    if cfg.eval_data:
        _check_kind(cfg.eval_data, family)
        return shards, [s.url for s in list_shards(cfg.eval_data)]
    if cfg.eval_shards == 0:
        return shards, []
    if len(shards) <= cfg.eval_shards:
        raise ValueError(f"{cfg.data} has {len(shards)} shard(s): too few to hold out {cfg.eval_shards} for "
                         "evaluation and train on the rest; use --eval-shards 0 or --eval-data URL")
    return shards[:-cfg.eval_shards], shards[-cfg.eval_shards:]


def _check_kind(url: str, family: ModelFamily) -> None:
    meta = read_meta(url)
    if meta is not None and meta.get("kind") != family.dataset_kind:
        raise DataError(url, f"dataset kind {meta.get('kind')!r}; family {family.name!r} trains on "
                             f"{family.dataset_kind!r}")


def _count_rows(urls: list[str]) -> int:
    """Rows in the given Parquet files, from their footers."""
    total = 0
    for url in urls:
        fs, path = fsx.resolve(url)
        with fs.open(path, "rb") as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def _check_sizes(cfg: TrainConfig, workers: int, train_rows: int) -> None:
    if cfg.batch_size % workers:
        raise ValueError(f"batch size {cfg.batch_size} does not split evenly across {workers} workers")
    if train_rows // workers < cfg.batch_size // workers:
        raise ValueError(f"the training split has {train_rows} rows: too few for one batch of {cfg.batch_size}")


def _backend(choice: str, gpus: float) -> str:
    if choice != "auto":
        return choice
    return "nccl" if gpus > 0 else "gloo"


def _pyarrow_fs(fs):
    """An fsspec filesystem as a pyarrow one (Ray Data and Ray Train storage); paths then carry no scheme."""
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fs))


def _train_dataset(urls: list[str], cfg: TrainConfig, env: dict | None):
    """A Ray Data dataset over the training shards (one read task per shard)."""
    import ray.data

    from dl3d.jobs.console import configure_data_context

    fs, _ = fsx.resolve(urls[0])
    paths = [fsx.resolve(u)[1] for u in urls]
    kwargs: dict[str, Any] = {}
    if not fsx.is_local(fs):
        kwargs["filesystem"] = _pyarrow_fs(fs)
    if env:
        kwargs["runtime_env"] = env
    if cfg.shuffle:
        kwargs["shuffle"] = ray.data.FileShuffleConfig(seed=cfg.seed)
    ds = ray.data.read_parquet(paths, override_num_blocks=len(paths), **kwargs)
    configure_data_context(ds.context)  # no progress bars or execution plans unless --verbose
    return ds


def train_data_config():
    """How Ray Train streams the training dataset to the workers: split across them, blocks in order.

    In order with ``shuffle`` on too: the shuffle is seeded (the files by ``FileShuffleConfig``, the rows by
    each epoch's ``local_shuffle_seed``), but Ray Data hands out the read blocks as they finish unless told to
    keep their order, and then one ``--seed`` gave a different stream at every run, and a run resumed
    mid-epoch skipped other batches than the ones it had trained on (``tests/train/test_data_order.py``).
    """
    import ray.data
    import ray.train

    return ray.train.DataConfig(datasets_to_split=["train"],
                                execution_options=ray.data.ExecutionOptions(preserve_order=True))


def _as_json(value: Any) -> Any:
    """``value`` as ``_train.json`` records it (tuples become lists, odd types strings)."""
    return json.loads(json.dumps(value, default=str))


def _claim_run(fs, run_root: str, run_url: str, meta: dict[str, Any], cfg: TrainConfig) -> None:
    """Write ``_train.json`` for a new run; for an existing one, refuse another family or model config."""
    path = fsx.join(run_root, RUN_RECORD)
    if fsx.exists(fs, path):
        old = json.loads(fsx.get_bytes(fs, path))
        for key in ("family", "model_config"):
            if old.get(key) != _as_json(meta[key]):  # as recorded: tuples come back as lists
                raise ValueError(f"{run_url} was trained with {key} {old.get(key)}, not {meta[key]}; "
                                 "use another --name to start a new run")
        return
    fsx.put_bytes(fs, path, (json.dumps({**meta, "first_train_config": dataclasses.asdict(cfg)}, indent=2,
                                        sort_keys=True, default=str) + "\n").encode())


def add_family_parser(subparsers: argparse._SubParsersAction, name: str,
                      with_options: bool = True) -> argparse.ArgumentParser:
    """Add ``dl3d train NAME`` for family ``name`` to the ``dl3d train`` subparsers (the CLI table's
    ``train`` row calls this once per known family).

    With ``with_options`` the parser gets the :class:`TrainConfig` options and the family's config
    fields (a given option overrides the ``--preset`` value) and sets ``func`` (returns an exit code);
    without, only its name and help (``dl3d train --help``).
    """
    family = get_family(name)
    p = subparsers.add_parser(name, help=family.doc, description=family.doc)
    if not with_options:
        return p
    clash = _field_names(TrainConfig) & _field_names(family.config_cls)
    if clash:
        raise TypeError(f"family {name!r}: config fields {sorted(clash)} clash with TrainConfig options")
    add_dataclass_arguments(p, TrainConfig)
    add_dataclass_arguments(p, family.config_cls)
    p.set_defaults(**{f.name: None for f in dataclasses.fields(family.config_cls) if f.init})
    p.set_defaults(func=_cmd_train, family=family)
    return p


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, Any]:
    """The job config and the family's config (``--preset``, then the family options given) of ``dl3d train``."""
    family: ModelFamily = args.family
    cfg = dataclass_from_args(TrainConfig, args)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(family.config_cls)
                 if f.init and getattr(args, f.name, None) is not None}
    return cfg, family.config(cfg.preset, **overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    cfg, model_config = configs_from_args(args)
    try:
        result = run_training(args.family.name, cfg, model_config)
    except TrainingFailed as exc:
        print(f"dl3d train: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
