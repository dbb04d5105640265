"""The training driver end to end on a local Ray: DDP equivalence; resume and crash recovery on S3.

Every run is checked against ``reference_train``: the same family stepped in one process over the
training rows in dataset order (the driver streams them in that order with ``shuffle`` off).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict

import pytest

from dl3d.data import fs as fsx
from dl3d.data import list_shards
from dl3d.jobs.train import TrainConfig, run_training
from dl3d.train import FAMILIES, read_checkpoint, register_family
from dl3d.train.checkpoint import metrics_from_csv
from dl3d.train.toy import TOY_FAMILY, ToyConfig, make_toy_dataset
from train_faults import CRASH_FAMILY, CrashConfig
from train_reference import max_abs_diff, reference_train

pytestmark = pytest.mark.slow

TOL = 1e-6
"""Parameters from the driver vs the in-process reference: float32 sums in another order."""


def _params(checkpoint_url: str) -> dict:
    return read_checkpoint(checkpoint_url)["modules"]


def _rows_by_run(rows: list[dict]) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        runs[r["run"]].append(r["step"])
    return dict(runs)


def test_ddp_on_two_workers_equals_one_worker_on_the_whole_batch(local_ray, tmp_path):
    """Two DDP workers of 4 rows take the step one process takes on all 8 rows (the in-process reference:
    its parameters, its batch loss and its held-out loss after the step)."""
    import torch

    from dl3d.data import read_table

    data = str(tmp_path / "data")
    make_toy_dataset(data, rows=16, shards=2, seed=1)  # shard 0 (8 rows) trains, shard 1 is held out
    cfg = ToyConfig(lr=0.1)
    two = run_training("toy", TrainConfig(data=data, storage=str(tmp_path / "runs"), name="two", steps=1, batch_size=8,
                                          shuffle=False, log_every=0, workers=2), cfg)
    assert two.workers == 2 and two.final_step == 1
    p2 = _params(two.checkpoint)
    init = {"model": TOY_FAMILY.build(cfg)["model"].state_dict()}
    assert max_abs_diff(p2, init) > 0.05, "the step must move the parameters"
    train_url, eval_url = (s.url for s in list_shards(data))
    ref = reference_train(TOY_FAMILY, cfg, [train_url], steps=1, batch_size=8)
    assert max_abs_diff(p2, ref) <= TOL, "2 workers x 4 rows must take the step of 1 process x 8 rows"
    # The reported losses are the whole batch's (the mean over both workers' halves) and the held-out set's.
    modules = TOY_FAMILY.build(cfg)
    cpu = torch.device("cpu")
    step = TOY_FAMILY.train_step(modules, TOY_FAMILY.make_optimizers(modules, cfg),
                                 TOY_FAMILY.decode_batch(read_table(train_url, TOY_FAMILY.schema), cfg, cpu), 1, cfg)
    assert two.metrics[0]["loss"] == pytest.approx(step["loss"], rel=1e-5)
    for name, m in modules.items():  # the reference's parameters after the step
        m.load_state_dict(ref[name])
        m.eval()
    with torch.no_grad():
        held_out = TOY_FAMILY.evaluate(modules, TOY_FAMILY.decode_batch(read_table(eval_url, TOY_FAMILY.schema), cfg,
                                                                        cpu), cfg)
    assert two.metrics[0]["eval_loss"] == pytest.approx(held_out["loss"], rel=1e-5)


def test_a_rerun_resumes_and_a_crashed_worker_recovers_on_s3_exactly_as_one_uninterrupted_run(local_ray, s3_server,
                                                                                                tmp_path):
    """Storage on S3 (moto), the Adam MLP, one worker. Run 1 stops at step 4; run 2 (same storage and name)
    goes on to step 8, and at step 7 its worker process dies: Ray Train replaces it and the run resumes from
    the step-6 checkpoint. No step is lost or counted twice, the latest two checkpoints are kept, and the
    final parameters equal one uninterrupted in-process run over the same batches (the resumed data stream
    and optimiser state are exact). A rerun with another model config is refused. (The CLI's own lines are
    tests/test_cli_quiet.py's; DDP is the test above.)"""
    if "toy-crash" not in FAMILIES:
        register_family(CRASH_FAMILY)
    root = f"s3://dl3d-test/train-{uuid.uuid4().hex[:8]}"
    make_toy_dataset(f"{root}/data", rows=80, shards=5, seed=2)  # 64 training rows: 8 batches of 8 per epoch
    marker = tmp_path / "crashed.txt"
    mlp = TOY_FAMILY.config("mlp")  # hidden 32, Adam
    cfg = CrashConfig(**dataclasses.asdict(mlp), crash_step=7, marker=str(marker))
    common = dict(data=f"{root}/data", storage=f"{root}/runs", name="resume", batch_size=8, checkpoint_every=2,
                  eval_every=2, shuffle=False, log_every=0, workers=1, max_failures=1)
    first = run_training("toy-crash", TrainConfig(**common, steps=4), cfg)
    assert (first.start_step, first.final_step, first.workers) == (0, 4, 1)
    assert first.checkpoint == f"{root}/runs/resume/step-00000004" and not marker.exists()

    second = run_training("toy-crash", TrainConfig(**common, steps=8), cfg)
    assert marker.exists(), "the worker process must have died at step 7"
    assert (second.start_step, second.final_step) == (6, 8), "the retry restarts from the step-6 checkpoint"
    runs = _rows_by_run(second.metrics)
    assert runs == {first.run_id: [1, 2, 3, 4], second.run_id: [5, 6, 7, 8]}, \
        "run 2 starts at step 5; no step lost or counted twice by the crash"
    evals = [r["eval_loss"] for r in second.metrics if "eval_loss" in r]
    assert len(evals) == 4 and all(b < a for a, b in zip(evals, evals[1:])), f"held-out loss should fall: {evals}"
    fs, path = fsx.resolve(f"{root}/runs/resume")
    assert [r["step"] for r in metrics_from_csv(fs.cat_file(f"{path}/metrics.csv").decode())] == list(range(1, 9))
    kept = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False) if "/step-" in p)
    assert kept == ["step-00000006", "step-00000008"], "keep_checkpoints=2 keeps the latest two"
    ck = read_checkpoint(second.checkpoint)
    assert ck["step"] == 8 and ck["meta"]["family"] == "toy-crash" and ck["meta"]["model_config"]["hidden"] == 32
    ref = reference_train(TOY_FAMILY, mlp,
                          [s.url for s in list_shards(f"{root}/data")[:4]], steps=8, batch_size=8)
    assert max_abs_diff(ck["modules"], ref) <= 1e-5

    with pytest.raises(ValueError, match="was trained with model_config"):
        run_training("toy-crash", TrainConfig(**common, steps=9), CrashConfig(hidden=4))
