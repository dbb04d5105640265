"""What a ``dl3d`` command prints: its own progress, summary and warnings; Ray's chatter stays in Ray's logs.

By default Ray publishes every worker's and actor's stdout/stderr to the driver's console: the
Train controller's and Ray Data's INFO lines, Ray Data's execution plan at every epoch, the
placement-group cleaner's "Failed to query Ray Train Controller actor state", raylet and gcs_server
warnings. dl3d turns that off with Ray's documented knobs and shows its own lines instead:

- ``ray.init(log_to_driver=False)``: worker and actor output stays in the session's log files
  (``/tmp/ray/session_latest/logs``), nothing is lost; ``logging_level=WARNING`` for the driver's
  ``ray`` loggers.
- The logger that prints "Token authentication is enabled for this Ray cluster" at every start of
  an embedded local Ray (``ray._private.authentication.authentication_token_setup``) is set to
  ERROR: the authentication itself is Ray's default, unchanged.
- Ray Data's ``DataContext``: ``enable_progress_bars`` and ``print_on_execution_start`` off.
- One notice Ray's driver prints about Ray's own worker processes, which no switch turns off
  (ray#63800) and every run on a 2-core machine triggers - the raylet's "N PYTHON worker processes
  have been started ... the maximum expected startup concurrency" - is dropped from this process's
  stdout by :func:`console_filter` (it stays in the raylet's log file). Other raylet messages (a
  worker killed for memory, say) still show.
- Lines a training worker wants the user to see (rank 0's step lines, its warnings) travel through a
  ``ray.util.queue.Queue`` to the driver, which prints them (:class:`ConsoleRelay`).

``--verbose`` (:func:`set_verbose`) turns Ray's own output back on.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import Any, Iterator

_verbose = False


def set_verbose(on: bool) -> None:
    """Show Ray's own log lines on the console too (``dl3d ... --verbose``)."""
    global _verbose
    _verbose = bool(on)


def is_verbose() -> bool:
    return _verbose


AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
"""Ray's logger of the token-authentication notice it prints at every local start."""


def ray_init_kwargs(local: bool) -> dict[str, Any]:
    """Keyword arguments for ``ray.init``; also quiets the auth notice unless verbose."""
    logging.getLogger(AUTH_NOTICE_LOGGER).setLevel(logging.NOTSET if _verbose else logging.ERROR)
    return {"log_to_driver": _verbose, "logging_level": logging.INFO if _verbose else logging.WARNING,
            "configure_logging": True}


def configure_data_context(ctx: Any) -> None:
    """Ray Data ``DataContext``: progress bars and execution plans only with ``--verbose``."""
    ctx.enable_progress_bars = _verbose
    ctx.print_on_execution_start = _verbose


RAY_NOTICES_DROPPED = ("worker processes have been started on node",)
"""Substrings of the lines :func:`console_filter` drops: Ray's notices about its own processes only."""


class _LineFilter:
    """A text stream that passes whole lines on to ``stream``, except those containing a dropped substring."""

    def __init__(self, stream, drop: tuple[str, ...]):
        self.stream, self.drop, self._partial = stream, drop, ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if not any(d in line for d in self.drop):
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def console_filter() -> Iterator[None]:
    """Within the block, drop :data:`RAY_NOTICES_DROPPED` lines from ``sys.stdout`` (not with ``--verbose``)."""
    if _verbose:
        yield
        return
    original = sys.stdout
    sys.stdout = _LineFilter(original, RAY_NOTICES_DROPPED)
    try:
        yield
    finally:
        partial = sys.stdout._partial
        sys.stdout = original
        if partial:
            original.write(partial)


class ConsoleRelay:
    """Lines from Ray workers to this process's stdout, through a ``ray.util.queue.Queue``.

    The driver creates one (after ``ray.init``) and hands :attr:`queue` to the workers, which
    ``put`` lines into it; a thread here prints them as they come. :meth:`close` prints what is
    left and removes the queue's actor.
    """

    def __init__(self, stream=None):
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})
        self._stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="dl3d-console", daemon=True)
        self._thread.start()

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def _pump(self) -> None:
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                self._write(self.queue.get(timeout=0.5))
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - the queue actor is gone (Ray shutting down): stop relaying
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            while not self.queue.empty():
                self._write(self.queue.get_nowait())
            self.queue.shutdown()
        except Exception:  # noqa: BLE001 - Ray already down: nothing left to relay
            pass


def say(queue: Any, line: str) -> None:
    """From a Ray worker: one line for the user, through the driver's relay ``queue`` (stdout without one)."""
    if queue is not None:
        queue.put(line)
    else:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
