"""Checks a batch job makes before Ray starts: is the input whole, may this run write the output.

- the input: the shard and row counts its ``_dataset.json`` declares, and no row id twice;
- the output: a folder (or prefix) this process can write, held by no other live run (the lease,
  ``dl3d.jobs.lease``), and, when it already holds outputs, written by the same job: same input
  (its URL and the fingerprint of its ``_dataset.json``, or of its file listing) and same
  output-affecting options. Anything else is refused with a ``ValueError`` naming the difference
  (the CLI exits 2); ``--overwrite`` deletes the earlier outputs instead and starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dl3d.data import DataError, JobOutput, Shard
from dl3d.data import fs as fsx
from dl3d.data.dataset import DATASET_META, read_meta
from dl3d.data.output import SPEC
from dl3d.jobs.lease import DEFAULT_TTL_S, Lease


class OutputMismatch(ValueError):
    """The output holds another job's results."""


class OutputUnusable(ValueError):
    """The output cannot be written (a file, read-only, forbidden, full)."""


# -- the input -----------------------------------------------------------------------------------

def check_input(url: str, shards: list[Shard], threads: int = 16) -> dict[str, Any]:
    """Check the input against what its ``_dataset.json`` declares and for repeated row ids.

    Reads each shard's footer and its ``id`` column (when it has one), ``threads`` shards at a time.
    A shard that cannot be read is left to its worker, which reports it as bad input (the other
    shards still run); the row count is then not checked. Returns ``{"rows": rows of the readable
    shards, "unreadable": their number, "declared": the metadata or None}``; raises ``DataError`` (a
    ValueError) naming the file and the problem.
    """
    meta = read_meta(url)
    where = f"{url.rstrip('/')}/{DATASET_META}"
    if meta is not None and isinstance(meta.get("num_shards"), int) and meta["num_shards"] != len(shards):
        found = {s.index for s in shards}
        missing = [f"part-{i:05d}.parquet" for i in range(meta["num_shards"]) if i not in found]
        raise DataError(where, f"declares {meta['num_shards']} shards, found {len(shards)}"
                               + (f"; missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                                  if missing else "") + " (an incomplete copy?)")
    with ThreadPoolExecutor(max(1, min(threads, len(shards)))) as pool:
        per_shard = list(pool.map(_rows_and_ids, shards))
    rows = sum(n for n, _ in per_shard if n is not None)
    unreadable = sum(n is None for n, _ in per_shard)
    if meta is not None and isinstance(meta.get("num_rows"), int) and meta["num_rows"] != rows and not unreadable:
        counts = ", ".join(f"{s.name}: {n}" for s, (n, _) in list(zip(shards, per_shard))[:8])
        raise DataError(where, f"declares {meta['num_rows']} rows, the shards hold {rows} ({counts}"
                               f"{' ...' if len(shards) > 8 else ''})")
    id_arrays = [ids for _, ids in per_shard if ids is not None]
    every = pa.chunked_array(id_arrays, pa.string()) if id_arrays else pa.chunked_array([], pa.string())
    if len(pc.unique(every)) == len(every):  # the usual case, in Arrow's C++: no Python string per row
        return {"rows": rows, "unreadable": unreadable, "declared": meta}
    seen: dict[str, tuple[int, int]] = {}
    for shard, (_, ids) in zip(shards, per_shard):
        for row, i in enumerate(ids.to_pylist() if ids is not None else ()):
            if i in seen:
                first, first_row = seen[i]
                raise DataError(shard.url, f"column 'id': row {row} repeats id {i!r} of part-{first:05d} row "
                                           f"{first_row}; every input row must have its own id")
            seen[i] = (shard.index, row)
    return {"rows": rows, "unreadable": unreadable, "declared": meta}


def _rows_and_ids(shard: Shard) -> tuple[int | None, pa.Array | None]:
    fs, path = fsx.resolve(shard.url)
    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            if "id" not in pf.schema_arrow.names:
                return pf.metadata.num_rows, None
            return pf.metadata.num_rows, pf.read(columns=["id"]).column("id").combine_chunks().cast(pa.string())
    except (OSError, ValueError, pa.ArrowException):  # its worker says what is wrong with it, for that shard only
        return None, None


def input_identity(url: str) -> dict[str, Any]:
    """What identifies an input: its URL and a fingerprint of its ``_dataset.json`` (or, for a plain
    folder of Parquet files, of their names and sizes)."""
    fs, root = fsx.resolve(url)
    canonical = os.path.abspath(root) if fsx.is_local(fs) else fs.unstrip_protocol(root)
    meta_path = fsx.join(root, DATASET_META)
    if fsx.exists(fs, meta_path):
        return {"url": canonical, "dataset_json_sha256": hashlib.sha256(fsx.get_bytes(fs, meta_path)).hexdigest()}
    listing = sorted((p[len(root):], int(info.get("size") or 0)) for p, info in fs.find(root, detail=True).items()
                     if p.endswith(".parquet")) if fs.isdir(root) else [(root, int(fs.info(root).get("size") or 0))]
    return {"url": canonical, "files_sha256": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}


# -- the output ----------------------------------------------------------------------------------

def job_spec(job: str, worker_config: Any, input_url: str) -> dict[str, Any]:
    """The job an output belongs to: its name, its input's identity and every option of its worker
    config (each can change the output)."""
    options = json.loads(json.dumps(dataclasses.asdict(worker_config), default=str))
    return {"job": job, "input": input_identity(input_url), "options": options}


def spec_differences(recorded: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between the spec an output was written under and a new run's."""
    diffs = []
    if recorded.get("job") != new["job"]:
        diffs.append(f"it was written by '{recorded.get('job')}', this is '{new['job']}'")
    old_in, new_in = recorded.get("input", {}), new["input"]
    if old_in.get("url") != new_in["url"]:
        diffs.append(f"its input was {old_in.get('url')}, this run's is {new_in['url']}")
    elif old_in != new_in:
        diffs.append(f"its input {new_in['url']} has changed since (its {DATASET_META} or file listing differs)")
    old_opt, new_opt = recorded.get("options", {}), new["options"]
    for key in sorted(set(old_opt) | set(new_opt)):
        if old_opt.get(key) != new_opt.get(key):
            diffs.append(f"--{key.replace('_', '-')} was {old_opt.get(key)!r}, now {new_opt.get(key)!r}")
    return diffs


def check_output_location(out: JobOutput) -> None:
    """Raise :class:`OutputUnusable` when the output URL names a file."""
    try:
        is_file = out.fs.isfile(out.root)
    except PermissionError as exc:
        raise OutputUnusable(f"cannot use the output {out.url}: permission denied ({exc})") from None
    if is_file:
        raise OutputUnusable(f"cannot use the output {out.url}: it is a file; --output must name a folder or prefix")


def take_output(out: JobOutput, spec: dict[str, Any], run_id: str, overwrite: bool,
                ttl_s: float = DEFAULT_TTL_S) -> tuple[Lease, list[str]]:
    """Lease the output, check that its earlier outputs (if any) belong to ``spec`` (or delete them
    with ``overwrite``), and record ``spec``. Returns the lease (release it when the run ends) and
    notes for the summary. Raises OutputUnusable, LeaseHeld or OutputMismatch (ValueErrors)."""
    check_output_location(out)
    lease = Lease(out, run_id, spec["job"], ttl_s)
    try:
        lease.acquire()
    except OSError as exc:
        raise OutputUnusable(f"cannot write to the output {out.url}: {_os_reason(exc)}") from None
    notes = [lease.took_over] if lease.took_over else []
    try:
        recorded = out.read_spec()
        if overwrite:
            removed = out.remove_job_files()
            if removed:
                notes.append(f"--overwrite: removed {removed} files of an earlier run")
        elif recorded is None:
            committed = out.committed()
            if committed:
                raise OutputMismatch(f"{out.url} holds {len(committed)} committed shards but no {SPEC} saying which "
                                     "job, input and options produced them; pass --overwrite to delete them and "
                                     "start over, or choose another --output")
        else:
            diffs = spec_differences(recorded, spec)
            if diffs:
                raise OutputMismatch(f"{out.url} holds the output of another run: {'; '.join(diffs)}. Re-run with "
                                     "that run's input and options to resume it, pass --overwrite to delete its "
                                     "outputs and start over, or choose another --output")
        out.write_spec(spec)
    except OSError as exc:
        lease.release()
        raise OutputUnusable(f"cannot write to the output {out.url}: {_os_reason(exc)}") from None
    except BaseException:
        lease.release()
        raise
    return lease, notes


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied (read-only or forbidden): {exc}"
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return f"a file stands where a folder is needed: {exc}"
    if exc.errno == 28:
        return f"no space left on the device: {exc}"
    return str(exc) or type(exc).__name__
