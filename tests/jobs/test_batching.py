"""Small shards travel to the workers in batches (jobs/runner.py ``_Batcher``, ``ShardWorker.process_batch``):
each shard is still committed, recorded and retried on its own."""

from __future__ import annotations

import json
from collections import deque

import pyarrow.parquet as pq
import pytest
from faulty_workers import poisoned
from tiny_workers import FusingTinyWorker, TinyConfig, TinyWorker, WholeTinyWorker, dies_once

import dl3d.jobs.runner as runner_mod
from dl3d.data import DataError, JobOutput, Shard
from dl3d.jobs.runner import MAX_BATCH, RunnerConfig, _Batcher, run_shards
from dl3d.workers.base import ShardTask


def _queue(n: int) -> deque:
    return deque((Shard(i, f"in/part-{i:05d}.parquet"), 1) for i in range(n))


def test_one_shard_per_call_until_shards_prove_small_then_batches_bounded_by_the_queue():
    b = _Batcher(slots=4)
    q = _queue(1000)
    assert len(b.take(q)) == 1, "nothing observed yet: one shard per call"
    b.observe(0.5)
    assert len(b.take(q)) == 1, "half-second shards are not batched"
    for _ in range(100):
        b.observe(0.002)
    assert len(b.take(q)) == MAX_BATCH, "2-ms shards: as many as MAX_BATCH"
    assert [len(b.take(_queue(n))) for n in (15, 16, 40, 200)] == [1, 1, 2, 12], "at most queue / (4 x slots)"
    b.observe(10.0)  # one slow shard lifts the mean over the threshold: back to one per call
    assert len(b.take(q)) == 1


def test_shards_of_a_batch_whose_worker_died_go_alone():
    b = _Batcher(slots=1)
    for _ in range(20):
        b.observe(0.001)
    q = _queue(200)
    b.single.update({3, 5})
    first = b.take(q)
    assert [s.index for s, _ in first] == [0, 1, 2], "a batch stops before a shard that must go alone"
    assert [s.index for s, _ in b.take(q)] == [3]
    assert [s.index for s, _ in b.take(q)] == [4]


def test_a_fusing_worker_gets_its_batch_from_the_start_bounded_by_one_call_per_worker():
    sizes = [len(_Batcher(slots=4, fuse=8, total=n).take(_queue(n))) for n in (1, 3, 8, 16, 20, 100)]
    assert sizes == [1, 1, 4, 8, 8, 8]
    assert len(_Batcher(slots=4, fuse=1, total=100).take(_queue(100))) == 1, "a worker that does not fuse"
    b = _Batcher(slots=4, fuse=8, total=100)
    b.single.add(0)
    assert len(b.take(_queue(100))) == 1, "a shard that must go alone still does"


def test_fused_shards_compute_in_one_call_and_each_is_written_and_committed_alone(tmp_path):
    worker = FusingTinyWorker(TinyConfig())
    out = tmp_path / "out"
    tasks = [ShardTask(Shard(i, f"in/part-{i:05d}.parquet"), str(out)) for i in range(5)]
    results = worker.process_batch(tasks)
    assert worker.fused == [[0, 1, 2, 3, 4]]
    assert [r.status for r in results] == ["ok"] * 5 and [r.index for r in results] == list(range(5))
    assert JobOutput(str(out)).committed() == set(range(5))
    assert [pq.read_table(out / f"part-{i:05d}.parquet").column("index")[0].as_py() for i in range(5)] \
        == [0, 10, 20, 30, 40], "each shard's own result reaches its own part"
    assert len({r.phases["compute"] for r in results}) == 1, "the fused call's seconds are shared out evenly"


def test_a_fused_batch_that_raises_is_computed_shard_by_shard_so_only_the_bad_shard_fails(tmp_path, monkeypatch):
    worker = FusingTinyWorker(TinyConfig())
    worker.poison = 2
    bad_read = TinyWorker.read_shard

    def read_shard(self, task):
        if task.shard.index == 4:
            raise DataError(task.shard.url, "unreadable")
        return bad_read(self, task)

    monkeypatch.setattr(FusingTinyWorker, "read_shard", read_shard)
    out = tmp_path / "out"
    tasks = [ShardTask(Shard(i, f"in/part-{i:05d}.parquet"), str(out)) for i in range(6)]
    results = worker.process_batch(tasks)
    assert worker.fused == [[0, 1, 2, 3, 5]], "the unreadable shard never reaches the compute"
    assert [r.status for r in results] == ["ok", "ok", "error", "ok", "bad_input", "ok"]
    assert "shard 2 is poisoned" in results[2].error and "unreadable" in results[4].error
    assert JobOutput(str(out)).committed() == {0, 1, 3, 5}


def _fake_input(tmp_path, monkeypatch, n: int) -> str:
    src = tmp_path / "in"
    src.mkdir()
    (src / "_dataset.json").write_text(json.dumps({"kind": "fake", "num_shards": n}))
    shards = [Shard(i, f"{src}/part-{i:05d}.parquet") for i in range(n)]
    monkeypatch.setattr(runner_mod, "list_shards", lambda url: shards)
    monkeypatch.setattr(runner_mod, "check_input", lambda url, s: {"rows": 0, "unreadable": 0, "declared": None})
    return str(src)


def _record_calls(monkeypatch) -> list[list[int]]:
    calls: list[list[int]] = []
    take = _Batcher.take

    def recording(self, queue):
        items = take(self, queue)
        calls.append([s.index for s, _ in items])
        return items

    monkeypatch.setattr(_Batcher, "take", recording)
    return calls


@pytest.mark.slow
def test_batched_shards_commit_once_and_a_failing_or_killing_shard_is_handled_alone(local_ray, tmp_path,
                                                                                    monkeypatch):
    """96 tiny shards on 2 workers: batches form; shard 50 always raises (failed after 3 attempts, the
    rest of its batch commits), shard 24 kills its worker once, inside a batch: nothing the worker held is
    charged, the batch's shards go one per call, and every shard but 50 commits on its first attempt."""
    n = 96
    src = _fake_input(tmp_path, monkeypatch, n)
    calls = _record_calls(monkeypatch)
    # the shards count as small whatever the machine's load makes of their seconds (sizes: the test above)
    monkeypatch.setattr(_Batcher, "observe", lambda self, seconds: setattr(self, "mean_s", 0.001))
    out = tmp_path / "out"
    worker = dies_once(poisoned(TinyWorker, fail_shard=50), shard=24, flag=str(tmp_path / "died"))
    report = run_shards("tiny", worker, TinyConfig(), src, str(out),
                        RunnerConfig(workers=2, cpus_per_worker=1, progress=False, max_attempts=3))
    assert max(len(c) for c in calls) > 1, f"no batch formed: {calls[:20]}"
    assert (tmp_path / "died").exists(), "shard 24's worker must have died"
    assert [s.index for s in report.failed] == [50] and report.failed[0].attempts == 3
    assert report.count("ok") == n - 1 and report.rows == n - 1
    assert JobOutput(str(out)).committed() == set(range(n)) - {50}
    assert [pq.read_table(out / f"part-{i:05d}.parquet").column("index")[0].as_py() for i in (0, 24, 49, 95)] \
        == [0, 24, 49, 95]
    dispatched = [i for c in calls for i in c]
    assert dispatched.count(50) == 3, "the raising shard is retried on its own record; its batch-mates are not"
    with_24 = [c for c in calls if 24 in c]
    assert len(with_24) == 2 and len(with_24[0]) > 1, f"shard 24 dies in a batch, then runs alone: {with_24}"
    mates = set(with_24[0])
    assert all(len(c) == 1 for c in calls[calls.index(with_24[0]) + 1:] if set(c) & mates), calls
    assert all(report.shards[i].attempts == 1 for i in range(n) if i != 50), \
        "a worker death inside a batch charges none of its shards"


def test_a_worker_that_is_not_staged_reports_its_time_from_inside_ray(local_ray, tmp_path, monkeypatch):
    """Ray wraps an actor class's methods, so "does it define read_shard" must not be asked by identity there:
    it was, and an unstaged worker's shards then counted 0 s of compute and 0 s busy (idle 99.9% in a bench)."""
    assert TinyWorker.staged() and not WholeTinyWorker.staged()
    src = _fake_input(tmp_path, monkeypatch, 6)
    report = run_shards("whole", WholeTinyWorker, TinyConfig(), src, str(tmp_path / "out"),
                        RunnerConfig(workers=1, cpus_per_worker=1, progress=False))
    assert report.count("ok") == 6
    (worker,) = report.workers
    assert worker["phases"]["compute"] >= 0.25 and worker["busy_s"] >= 0.25, worker
