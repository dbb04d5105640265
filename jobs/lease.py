"""A lease on a job output, so that one live run at a time writes into an output prefix.

The lease is the object ``_lease.json`` at the output root: who holds it (run id, host, pid), when it
was taken and when it expires. The run that holds it renews it from a daemon thread every quarter of
its time to live and deletes it when it ends. A second run finds a live lease and is refused
(:class:`LeaseHeld`, a ``ValueError``: exit 2). A lease is stale, and the next run takes it over, when
it has expired (its run stopped renewing it: killed, or its machine gone), or at once when it was
taken on this host by a process that no longer exists (a driver killed with SIGKILL).

Taking and renewing are atomic where the storage allows it:

- local disks: read, check and write under ``flock`` on the output folder (POSIX advisory lock; on
  network filesystems it is only as good as their ``flock``);
- S3: conditional writes, ``If-None-Match: *`` to create and ``If-Match: <ETag>`` to take over or
  renew (AWS S3 since 2024, MinIO, moto); a lost race is a refused write, never two holders;
- other fsspec filesystems: write, then read back after a short pause (best effort).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any

from dl3d.data import fs as fsx
from dl3d.data.output import LEASE, JobOutput

DEFAULT_TTL_S = 60.0


class LeaseHeld(ValueError):
    """Another live run holds the output."""


def _pid_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return start is None or _pid_start(pid) in (None, start)


def stale_reason(record: dict[str, Any], now: float | None = None) -> str | None:
    """Why a lease record no longer holds (None while it is live)."""
    now = time.time() if now is None else now
    try:
        expires = float(record["expires"])
    except (KeyError, TypeError, ValueError):
        return "it is unreadable"
    if expires < now:
        return f"it expired {now - expires:.0f} s ago"
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int) \
            and not _alive(record["pid"], record.get("pid_start")):
        return f"its process {record['pid']} on this host is gone"
    return None


def describe(record: dict[str, Any]) -> str:
    left = float(record.get("expires", 0)) - time.time()
    return (f"run {record.get('run_id', '?')} (pid {record.get('pid', '?')} on {record.get('host', '?')}, "
            f"job {record.get('job', '?')!r}, since {record.get('acquired', '?')}; the lease expires in {left:.0f} s "
            f"unless that run renews it)")


class Lease:
    """The lease of one run on one output; take it with :meth:`acquire`, end it with :meth:`release`."""

    def __init__(self, out: JobOutput, run_id: str, job: str, ttl_s: float = DEFAULT_TTL_S):
        if ttl_s <= 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl_s}")
        self.out, self.run_id, self.job, self.ttl_s = out, run_id, job, ttl_s
        self.path = out.path(LEASE)
        self.lost = threading.Event()
        """Set when a renewal found another run's lease (this run must stop writing)."""
        self.took_over: str | None = None
        """Why the previous holder's lease was stale, when this run took it over."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag: str | None = None

    # -- the record ---------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        now = time.time()
        return {"run_id": self.run_id, "job": self.job, "host": socket.gethostname(), "pid": os.getpid(),
                "pid_start": _pid_start(os.getpid()), "ttl_s": self.ttl_s, "expires": now + self.ttl_s,
                "acquired": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds")}

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        """The current record and its ETag (S3), or (None, None) when there is no lease."""
        fs = self.out.fs
        try:
            etag = None
            if _is_s3(fs):
                fs.invalidate_cache(self.path)
                etag = fs.info(self.path).get("ETag")
            data = fsx.get_bytes(fs, self.path)
        except FileNotFoundError:
            return None, None
        try:
            rec = json.loads(data)
            return (rec if isinstance(rec, dict) else {}), etag
        except ValueError:
            return {}, etag

    # -- taking and renewing ------------------------------------------------------------------
    def acquire(self) -> "Lease":
        """Take the lease or raise :class:`LeaseHeld` naming the live holder; start the heartbeat."""
        for _ in range(5):
            if self._try_write(renew=False):
                break
        else:
            raise LeaseHeld(f"{self.out.url}: could not take the lease on the output (other runs kept racing for it)")
        self._thread = threading.Thread(target=self._heartbeat, name="dl3d-lease", daemon=True)
        self._thread.start()
        return self

    def _try_write(self, renew: bool) -> bool:
        """One read-check-write; True when this run holds the lease afterwards, False on a lost race."""
        fs = self.out.fs
        if fsx.is_local(fs):
            with _flock(self.out.root):
                rec, _ = self._read()
                self._check(rec, renew)
                fsx.put_bytes(fs, self.path, _dump(self.record()))
            return True
        rec, etag = self._read()
        self._check(rec, renew)
        data = _dump(self.record())
        if _is_s3(fs):
            try:
                if rec is None:
                    fs.pipe_file(self.path, data, mode="create")
                else:
                    fs.pipe_file(self.path, data, IfMatch=etag)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno == errno.EINVAL or "precondition" in str(exc).lower():
                    return False
                raise
            return True
        fsx.put_bytes(fs, self.path, data)
        time.sleep(0.2)
        rec, _ = self._read()
        return bool(rec) and rec.get("run_id") == self.run_id

    def _check(self, rec: dict[str, Any] | None, renew: bool) -> None:
        if rec is None:
            if renew:
                raise _Lost("the lease was deleted by someone else")
            return
        if rec.get("run_id") == self.run_id:
            return
        if renew:
            raise _Lost(f"the lease now belongs to {describe(rec)}")
        why = stale_reason(rec)
        if why is None:
            raise LeaseHeld(f"{self.out.url} is being written by another live {describe(rec)}. Wait for it to "
                            f"finish (re-running afterwards resumes), or write to another --output.")
        self.took_over = f"took over the lease of run {rec.get('run_id', '?')}: {why}"

    def _heartbeat(self) -> None:
        period = self.ttl_s / 4
        while not self._stop.wait(period):
            try:
                self._try_write(renew=True)
            except _Lost:
                self.lost.set()
                return
            except Exception:  # noqa: BLE001 - storage briefly unreachable: try again next period
                continue

    def release(self) -> None:
        """Stop renewing and delete the lease if this run still holds it (errors are ignored: an
        undeleted lease expires, or is taken over at once from this host)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost.is_set():
            return
        try:
            rec, _ = self._read()
            if rec and rec.get("run_id") == self.run_id:
                fsx.remove(self.out.fs, self.path)
        except Exception:  # noqa: BLE001
            pass


class _Lost(Exception):
    pass


def _dump(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec, indent=2, sort_keys=True) + "\n").encode()


def _is_s3(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("s3", "s3a")


@contextmanager
def _flock(folder: str):
    import fcntl

    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
