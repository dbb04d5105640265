"""The pipelined worker without Ray (issue 11): two shards in one worker at once, the next read while this
one computes, this one written while the next computes, the marker last, and a failed write leaves no
marker. Also the driver's compact ledger of shards."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import pyarrow as pa
import pytest

from dl3d.data import DataError, Shard
from dl3d.data import fs as fsx
from dl3d.jobs.job_report import JobReport, ShardLedger, ShardOutcome, WorkerTotals
from dl3d.workers.base import ShardTask, ShardWorker

WAIT = 10.0  # seconds a stage waits for the other shard's stage before the test fails (no pipelining)


@dataclass
class ToyConfig:
    fail_write: int = -1
    bad_input: int = -1


class ToyWorker(ShardWorker):
    """Stage 'compute' of shard 0 waits until shard 1 has been read; 'write' of shard 0 waits until shard 1
    computes: without read-ahead and write-behind both waits time out."""

    config_cls = ToyConfig

    def setup(self):
        self.events: list[tuple[str, int]] = []
        self.read_done = {0: threading.Event(), 1: threading.Event()}
        self.compute_started = {0: threading.Event(), 1: threading.Event()}
        self.lock = threading.Lock()

    def _log(self, what: str, index: int) -> None:
        with self.lock:
            self.events.append((what, index))

    def read_shard(self, task):
        i = task.shard.index
        if i == self.config.bad_input:
            raise DataError(task.shard.url, "column 'x': expected int64, found string")
        self._log("read", i)
        self.read_done[i].set()
        return [i] * 3

    def compute_shard(self, task, data):
        i = task.shard.index
        self.compute_started[i].set()
        self._log("compute", i)
        if i == 0:
            assert self.read_done[1].wait(WAIT), "shard 1 was not read while shard 0 computed"
        time.sleep(0.05)
        self._log("computed", i)
        return [x * 10 for x in data]

    def write_shard(self, task, out, result):
        i = task.shard.index
        self._log("write", i)
        if i == 0:
            assert self.compute_started[1].wait(WAIT), "shard 1 did not compute while shard 0 was written"
        out.write_file(f"files/part-{i:05d}/a.bin", bytes(result))
        if i == self.config.fail_write:
            raise OSError(28, "No space left on device")
        out.write_part(i, pa.table({"id": [f"{i}-{k}" for k in range(len(result))], "v": result}))
        self._log("written", i)
        return len(result)


@pytest.fixture
def writes(monkeypatch):
    """Every object written (relative path), in order."""
    seen: list[str] = []
    real = fsx.put_bytes

    def put_bytes(fs, path, data):
        seen.append(path)
        real(fs, path, data)

    monkeypatch.setattr(fsx, "put_bytes", put_bytes)
    return seen


def _both(worker: ShardWorker, root: str) -> list:
    results: list = [None, None]

    def run(i):
        try:
            results[i] = worker.process(ShardTask(Shard(i, f"/in/part-{i:05d}.parquet"), root))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    threads[0].start()
    time.sleep(0.02)  # shard 0 first, as a Ray actor receives its calls
    threads[1].start()
    for t in threads:
        t.join(3 * WAIT)
    return results


def test_the_next_shard_is_read_and_computed_while_this_one_computes_and_writes(tmp_path, writes):
    root = tmp_path / "out"
    (root / "meshes" / "part-00001").mkdir(parents=True)
    (root / "meshes" / "part-00001" / ".000000.ply.4242.tmp").write_bytes(b"half")  # an interrupted attempt
    worker = ToyWorker(ToyConfig())
    assert ToyWorker.staged()
    r0, r1 = _both(worker, str(root))
    assert r0.status == "ok" and r1.status == "ok" and (r0.rows, r1.rows) == (3, 3)
    ev = worker.events
    assert ev.index(("read", 1)) < ev.index(("computed", 0)), ev   # read-ahead
    assert ev.index(("compute", 1)) < ev.index(("written", 0)), ev  # write-behind
    assert ev.index(("computed", 0)) < ev.index(("compute", 1)), "one compute at a time"
    for i in (0, 1):
        mine = [p for p in writes if f"part-{i:05d}" in p]
        assert mine[-1].endswith(f"_committed/part-{i:05d}.json"), mine  # the marker is the shard's last write
        assert len(mine) == 3
    assert not (root / "meshes" / "part-00001" / ".000000.ply.4242.tmp").exists(), \
        "the worker clears its shard's leftovers before writing"
    marker = json.loads((root / "_committed" / "part-00001.json").read_text())
    assert marker["rows"] == 3
    assert r0.phases["compute"] >= 0.05 and r0.phases["write"] > 0 and r0.phases["commit"] > 0
    assert r1.phases["wait"] > 0.03, "shard 1 waited for shard 0's compute"
    assert r1.worker["busy_s"] >= 0.1 and r1.worker["setup_s"] >= 0


def test_a_failed_write_fails_its_shard_without_a_marker_and_the_other_commits(tmp_path, writes):
    root = tmp_path / "out"
    worker = ToyWorker(ToyConfig(fail_write=0))
    r0, r1 = _both(worker, str(root))
    assert isinstance(r0, OSError) and "No space left" in str(r0)
    assert r1.status == "ok"
    assert sorted(p.name for p in (root / "_committed").glob("part-*.json")) == ["part-00001.json"]
    assert not (root / "part-00000.parquet").exists()
    # The locks were released: the worker goes on with the retry.
    worker.config = ToyConfig()
    worker.read_done[1].set()
    worker.compute_started[1].set()
    again = worker.process(ShardTask(Shard(0, "/in/part-00000.parquet"), str(root), attempt=2))
    assert again.status == "ok" and (root / "_committed" / "part-00000.json").exists()


def test_the_shared_folders_are_swept_once_and_a_worker_lists_only_its_own(tmp_path):
    from dl3d.data import JobOutput

    root = tmp_path / "out"
    out = JobOutput(str(root))
    out.write_part(3, pa.table({"id": ["a"]}))
    out.commit(3, {"rows": 1})
    (root / "meshes" / "part-00004").mkdir(parents=True)
    partial = [root / ".part-00004.parquet.1.tmp", root / "_committed" / ".part-00004.json.2.tmp"]
    own = root / "meshes" / "part-00004" / ".000001.ply.3.tmp"
    for p in [*partial, own]:
        p.write_bytes(b"half")
    assert out.clear_leftovers(4, shared_folders=False) == [str(own)]
    assert all(p.exists() for p in partial)
    assert sorted(out.clear_shared_leftovers()) == sorted(map(str, partial))
    assert out.committed() == {3} and (root / "part-00003.parquet").exists()
    assert JobOutput(str(tmp_path / "nothing")).committed() == set()


def test_bad_input_is_reported_and_writes_nothing(tmp_path, writes):
    worker = ToyWorker(ToyConfig(bad_input=1))
    worker.read_done[1].set()
    r = worker.process(ShardTask(Shard(1, "/in/part-00001.parquet"), str(tmp_path / "out")))
    assert r.status == "bad_input" and "expected int64, found string" in r.error
    assert writes == []


class WholeWorker(ShardWorker):
    """Not staged: implements run_shard whole; two calls must never overlap."""

    config_cls = ToyConfig

    def setup(self):
        self.running = 0
        self.most = 0

    def run_shard(self, task, out):
        self.running += 1
        self.most = max(self.most, self.running)
        time.sleep(0.05)
        out.write_part(task.shard.index, pa.table({"id": ["a"]}))
        self.running -= 1
        return 1


def test_a_worker_that_is_not_staged_runs_one_shard_at_a_time(tmp_path):
    worker = WholeWorker(ToyConfig())
    assert not WholeWorker.staged()
    r0, r1 = _both(worker, str(tmp_path / "out"))
    assert r0.status == r1.status == "ok" and worker.most == 1
    assert r1.phases["wait"] > 0.02 and r0.phases["compute"] >= 0.05


def test_the_ledger_keeps_compact_records_and_ranges():
    ledger = ShardLedger([0, 1, 2, 3, 5, 6, 9])
    for i in (0, 1, 2, 6):
        ledger.record(ShardOutcome(i, "ok", 10, attempts=1, worker={"host": "h", "device": "cpu"},
                                   row_status={"ok": 9, "nan_keypoints": 1}))
    ledger.mark({3, 4}, "skipped")  # 4 is not in the input: ignored
    ledger.record(ShardOutcome(5, "failed", attempts=3, error="RuntimeError: boom"))
    report = JobReport("j", "/out", ledger, 2.0)
    assert report.rows == 40 and report.count("ok") == 4 and report.count("not_run") == 1
    assert report.row_status == {"nan_keypoints": 4, "ok": 36}
    assert [s.index for s in report.failed] == [5] and report.failed[0].error == "RuntimeError: boom"
    assert {s.index: s.status for s in report.shards} == {0: "ok", 1: "ok", 2: "ok", 3: "skipped", 5: "failed",
                                                         6: "ok", 9: "not_run"}
    compact = ledger.compact()
    assert compact["ok"] == [[0, 2], [6, 6]] and compact["skipped"] == [[3, 3]] and compact["not_run"] == [[9, 9]]
    assert compact["failed"] == [{"index": 5, "status": "failed", "attempts": 3, "error": "RuntimeError: boom",
                                  "worker": {}}]
    assert "shards on h cpu" in report.summary() and report.exit_code == 1
    ledger.record(ShardOutcome(5, "ok", 10, attempts=4))  # a later success replaces the failure
    assert report.failed == [] and report.rows == 50
    with pytest.raises(KeyError, match="shard 4 is not in this run's input"):
        ledger.record(ShardOutcome(4, "ok"))


def test_worker_totals_give_idle_and_tail_seconds():
    totals = WorkerTotals(started=100.0)
    w = {"host": "h", "pid": 7, "ready_at": 103.0, "setup_s": 1.5}
    totals.add(w | {"busy_s": 2.0}, 10, {"read": 0.1, "compute": 1.8, "write": 0.1, "commit": 0.0, "wait": 0.0},
               done_at=105.0, created_at=101.0)
    totals.add(w | {"busy_s": 3.5}, 5, {"read": 0.1, "compute": 1.3, "write": 0.1, "commit": 0.0, "wait": 0.2},
               done_at=107.0, created_at=101.0)
    [rec] = totals.records(end_s=8.0)
    assert rec["shards"] == 2 and rec["rows"] == 15 and rec["start_s"] == 2.0 and rec["ready_s"] == 3.0
    assert rec["phases"]["compute"] == 3.1 and rec["idle_s"] == 0.5 and rec["tail_s"] == 1.0


@pytest.mark.parametrize("verts", [(6890, 0), (5, 1), (0, 2), (3, -1)], ids=["body", "tiny", "no-verts", "no-faces"])
def test_the_ply_encoder_writes_pytorch3ds_bytes(verts, body_model_path):
    """Meshes are encoded from numpy (dl3d.mesh.PlyEncoder, behind encode_mesh); the bytes equal pytorch3d's
    save_ply."""
    import io
    import warnings

    import numpy as np
    import torch
    from pytorch3d.io import save_ply

    from dl3d.body import read_body_model_arrays
    from dl3d.mesh import PlyEncoder, encode_mesh

    n, seed = verts
    rng = np.random.default_rng(abs(seed))
    faces = np.asarray(read_body_model_arrays(body_model_path)["f"], np.int64) if n == 6890 else \
        rng.integers(0, max(n, 1), (7 if seed >= 0 else 0, 3))
    v = rng.normal(size=(n, 3)).astype(np.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch3d warns about empty vertices
        save_ply(buf, torch.from_numpy(v), torch.from_numpy(faces), ascii=False)
    assert PlyEncoder(faces)(v) == buf.getvalue()
    assert encode_mesh(torch.from_numpy(v), torch.from_numpy(faces), "ply") == buf.getvalue()
    with pytest.raises(ValueError, match=r"expected verts of shape \(V, 3\), got \(4, 2\)"):
        PlyEncoder(faces)(np.zeros((4, 2)))
