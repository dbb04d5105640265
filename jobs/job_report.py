"""What a batch run did, kept small enough for 100,000 shards: a compact ledger of per-shard records,
per-worker totals, and the summary printed at the end.

The ledger holds per shard only its status code, rows and attempts (numpy arrays sized once from the
input listing, so the driver's memory does not grow as shards commit); the full record (error text,
worker) is kept only for shards that failed. Row statuses and shards per node are aggregated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from dl3d.workers.base import PHASES

STATUSES = ("not_run", "ok", "skipped", "failed", "bad_input")
"""Shard statuses: ``not_run`` (the run stopped first), ``ok`` (committed by this run), ``skipped``
(committed before this run), ``failed`` (every attempt raised or died), ``bad_input``."""
_CODE = {s: i for i, s in enumerate(STATUSES)}


@dataclass
class ShardOutcome:
    index: int
    status: str
    """``ok``, ``skipped`` (committed before this run), ``failed``, ``bad_input`` or ``not_run``."""
    rows: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    row_status: dict[str, int] = field(default_factory=dict)
    """Rows per row status (``ok``, ``nonfinite_fit``, ...) for jobs whose output has a status column."""


class ShardLedger(Sequence[ShardOutcome]):
    """One compact record per input shard, in input order; a Sequence of :class:`ShardOutcome` (built on
    access: ``ok`` ones carry no worker and no per-shard row statuses, see :attr:`row_status`)."""

    def __init__(self, indices: Iterable[int]):
        self.index = np.fromiter(indices, np.int64)
        self._order = np.argsort(self.index, kind="stable")
        self._sorted = self.index[self._order]
        n = len(self.index)
        self.status = np.zeros(n, np.uint8)
        self.rows = np.zeros(n, np.int64)
        self.attempts = np.zeros(n, np.int32)
        self.failures: dict[int, ShardOutcome] = {}
        self.row_status: Counter[str] = Counter()
        """Rows committed this run per row status."""
        self.nodes: Counter[str] = Counter()
        """Shards committed this run per ``node device``."""

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[ShardOutcome]) -> "ShardLedger":
        ledger = cls(o.index for o in outcomes)
        for o in outcomes:
            ledger.record(o)
        return ledger

    def _pos(self, index: int) -> int:
        i = int(np.searchsorted(self._sorted, index))
        if i >= len(self._sorted) or self._sorted[i] != index:
            raise KeyError(f"shard {index} is not in this run's input")
        return int(self._order[i])

    def record(self, o: ShardOutcome) -> None:
        """Set shard ``o.index``'s record (its status, rows, attempts; the whole outcome when it failed)."""
        p = self._pos(o.index)
        self.status[p], self.rows[p], self.attempts[p] = _CODE[o.status], o.rows, o.attempts
        if o.status in ("failed", "bad_input"):
            self.failures[o.index] = o
        else:
            self.failures.pop(o.index, None)
        if o.status == "ok":
            self.row_status.update(o.row_status)
            if o.worker:
                self.nodes[f"{o.worker.get('node_id', o.worker.get('host', '?'))[:12]} {o.worker.get('device', '')}"] += 1

    def mark(self, indices: Iterable[int], status: str) -> None:
        """Set the status of many shards at once (``skipped``: those committed before this run), vectorised."""
        which = np.isin(self.index, np.fromiter(indices, np.int64))
        self.status[which] = _CODE[status]

    def count(self, status: str) -> int:
        return int(np.count_nonzero(self.status == _CODE[status]))

    def rows_ok(self) -> int:
        return int(self.rows[self.status == _CODE["ok"]].sum())

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, p):  # type: ignore[override]
        if isinstance(p, slice):
            return [self[i] for i in range(*p.indices(len(self)))]
        index = int(self.index[p])
        if index in self.failures:
            return self.failures[index]
        return ShardOutcome(index, STATUSES[self.status[p]], int(self.rows[p]), attempts=int(self.attempts[p]))

    def __iter__(self) -> Iterator[ShardOutcome]:
        return (self[p] for p in range(len(self)))

    def compact(self) -> dict[str, Any]:
        """For ``_job.json``: ``ok``/``skipped``/``not_run`` shards as inclusive index ranges, failed ones
        in full."""
        out: dict[str, Any] = {}
        for status in ("ok", "skipped", "not_run"):
            idx = np.sort(self.index[self.status == _CODE[status]])
            if len(idx):
                breaks = np.flatnonzero(np.diff(idx) != 1)
                starts, ends = np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]]
                out[status] = [[int(a), int(b)] for a, b in zip(starts, ends)]
        out["failed"] = [{"index": o.index, "status": o.status, "attempts": o.attempts, "error": o.error,
                          "worker": o.worker} for _, o in sorted(self.failures.items())]
        return out


class WorkerTotals:
    """Per worker process (node, pid): shards, rows, seconds per phase, when it was ready and last done."""

    def __init__(self, started: float):
        self.started = started
        self.workers: dict[tuple[str, int], dict[str, Any]] = {}

    def add(self, worker: dict[str, Any], rows: int, phases: dict[str, float], done_at: float,
            created_at: float | None) -> None:
        key = (str(worker.get("node_id", worker.get("host", "?"))), int(worker.get("pid", 0)))
        w = self.workers.get(key)
        if w is None:
            w = self.workers[key] = {k: v for k, v in worker.items() if k not in ("busy_s", "ready_at")}
            w.update(shards=0, rows=0, phases=dict.fromkeys((*PHASES, "wait"), 0.0))
            if created_at is not None and worker.get("ready_at"):
                w["start_s"] = round(float(worker["ready_at"]) - created_at, 3)
                w["ready_s"] = round(float(worker["ready_at"]) - self.started, 3)
        w["shards"] += 1
        w["rows"] += rows
        for k, v in phases.items():
            w["phases"][k] = w["phases"].get(k, 0.0) + v
        w["busy_s"] = float(worker.get("busy_s", 0.0))
        w["last_done_s"] = round(done_at - self.started, 3)

    def records(self, end_s: float) -> list[dict[str, Any]]:
        """One dict per worker; ``idle_s``: seconds between ready and its last shard with no stage running,
        ``tail_s``: from its last shard to the end of the run."""
        out = []
        for w in self.workers.values():
            r = dict(w, phases={k: round(v, 3) for k, v in w["phases"].items()})
            if "ready_s" in w:
                r["idle_s"] = round(max(0.0, w["last_done_s"] - w["ready_s"] - w["busy_s"]), 3)
            r["tail_s"] = round(max(0.0, end_s - w["last_done_s"]), 3)
            out.append(r)
        return out


@dataclass
class JobReport:
    """What a run did; ``exit_code`` is 0 only when every shard is committed and everything recorded."""

    job: str
    output: str
    shards: Any
    """A :class:`ShardLedger` (a list of :class:`ShardOutcome` is turned into one)."""
    seconds: float
    notes: list[str] = field(default_factory=list)
    """Things the run did besides the shards (a stale lease taken over, --overwrite)."""
    unrecorded: list[str] = field(default_factory=list)
    """Records that could not be written (``_errors/...``, ``_job.json``: a full disk, storage gone)."""
    aborted: str | None = None
    """Why the run stopped early (its lease on the output was lost), or None."""
    timings: dict[str, float] = field(default_factory=dict)
    """Driver seconds: ``plan``, ``ray``, ``workers_ready``, ``dispatch``, ``wait``, ``finish``."""
    workers: list[dict[str, Any]] = field(default_factory=list)
    """Per worker process: shards, rows, phases, start, idle and tail seconds (``WorkerTotals.records``)."""

    def __post_init__(self):
        if not isinstance(self.shards, ShardLedger):
            self.shards = ShardLedger.from_outcomes(list(self.shards))

    def mark(self, indices: Iterable[int], status: str) -> None:
        """Set the status of many shards at once (``skipped``: those committed before this run), vectorised."""
        which = np.isin(self.index, np.fromiter(indices, np.int64))
        self.status[which] = _CODE[status]

    def count(self, status: str) -> int:
        return self.shards.count(status)

    @property
    def failed(self) -> list[ShardOutcome]:
        return [o for _, o in sorted(self.shards.failures.items())]

    @property
    def rows(self) -> int:
        return self.shards.rows_ok()

    @property
    def row_status(self) -> dict[str, int]:
        """Rows committed this run per row status (jobs whose output has a status column)."""
        return dict(sorted(self.shards.row_status.items()))

    @property
    def rows_not_ok(self) -> dict[str, int]:
        return {k: n for k, n in self.row_status.items() if k != "ok"}

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.unrecorded or self.aborted else 0

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.job}: {self.output}",
            f"  {'shards':<22}{len(self.shards):>8}",
            f"  {'committed this run':<22}{self.count('ok'):>8}",
            f"  {'already committed':<22}{self.count('skipped'):>8}",
            f"  {'failed':<22}{len(self.failed):>8}",
            f"  {'rows this run':<22}{self.rows:>8}",
            *(f"    {'rows ' + k:<20}{n:>8}" for k, n in self.row_status.items()),
            f"  {'seconds':<22}{self.seconds:>8.1f}",
            f"  {'rows/s':<22}{rate:>8.1f}",
        ]
        for key, n in sorted(self.shards.nodes.items()):
            lines.append(f"  shards on {key:<30}{n:>4}")
        for s in self.failed:
            first = (s.error or "").strip().splitlines()
            lines.append(f"  FAILED part-{s.index:05d} after {s.attempts} attempt(s): {first[-1] if first else '?'}")
        if self.failed:
            lines.append(f"  details: {self.output.rstrip('/')}/_errors/")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.aborted:
            lines.append(f"  ABORTED: {self.aborted}")
        lines.extend(f"  NOT RECORDED: {u}" for u in self.unrecorded)
        bad = self.rows_not_ok
        rows_note = (f" ({sum(bad.values())} rows not ok: "
                     + ", ".join(f"{k} {n}" for k, n in bad.items()) + "; see their status column)") if bad else ""
        lines.append("status: " + ("FAILED" if self.exit_code else "ok") + rows_note)
        return "\n".join(lines)
