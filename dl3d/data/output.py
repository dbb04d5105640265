"""The layout of a job's output prefix, and its commit protocol.

For input shard NNNNN a job writes ``part-NNNNN.parquet``, any mesh files under
``meshes/part-NNNNN/``, then the marker ``_committed/part-NNNNN.json`` last. A shard is done iff its
marker exists: a re-run skips it; a shard without a marker is redone from scratch, overwriting the
same deterministic names, so nothing is lost or duplicated. A shard that failed all its attempts is
described in ``_errors/part-NNNNN.json``; ``_job.json`` records the last run.

``_committed/_spec.json`` records which job the markers belong to (job, input identity, every
output-affecting option); a re-run resumes only when its own spec is the same. ``_lease.json`` is
held by the one live run (``dl3d.jobs.lease``). A shard's rows that a worker writes with a ``status``
column are counted per status, and the counts go into its marker.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pyarrow as pa

from dl3d.data import fs as fsx
from dl3d.data.dataset import part_name, table_to_parquet, write_json

COMMITTED_DIR = "_committed"
ERRORS_DIR = "_errors"
JOB_META = "_job.json"
MESHES_DIR = "meshes"
SPEC = f"{COMMITTED_DIR}/_spec.json"
LEASE = "_lease.json"
TMP_SUFFIX = ".tmp"
"""Suffix of the partial files ``dl3d.data.fs.put_bytes`` writes beside a target before renaming it."""


class JobOutput:
    """Reads and writes one job output prefix (local path or any fsspec URL)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = url
        self.fs, self.root = fsx.resolve(url, storage_options)
        self.row_status: dict[int, dict[str, int]] = {}
        """Shard -> {row status: count} of the parts written through this object (tables with ``status``)."""

    def path(self, relpath: str) -> str:
        return fsx.join(self.root, relpath)

    def mesh_relpath(self, index: int, row: int, fmt: str) -> str:
        """``meshes/part-NNNNN/RRRRRR.ply``: one mesh per output row."""
        return f"{MESHES_DIR}/{part_name(index, '')}/{row:06d}.{fmt}"

    def committed(self) -> set[int]:
        """Shard numbers whose commit marker exists: one listing of ``_committed/`` (one ``scandir`` on a
        local disk, one paginated LIST on an object store), never a request per shard."""
        d = self.path(COMMITTED_DIR)
        if fsx.is_local(self.fs):
            try:
                with os.scandir(d) as entries:
                    names = [e.name for e in entries]
            except FileNotFoundError:
                return set()
        else:
            self.fs.invalidate_cache(d)
            if not self.fs.exists(d):
                return set()
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(d, detail=False)]
        return {int(name[5:-5]) for name in names if name.startswith("part-") and name.endswith(".json")}

    def is_committed(self, index: int) -> bool:
        return fsx.exists(self.fs, self.path(f"{COMMITTED_DIR}/{part_name(index, '.json')}"))

    def write_part(self, index: int, table: pa.Table) -> str:
        rel = part_name(index)
        fsx.put_bytes(self.fs, self.path(rel), table_to_parquet(table))
        if "status" in table.column_names:
            self.row_status[index] = dict(sorted(Counter(map(str, table.column("status").to_pylist())).items()))
        return rel

    def write_file(self, relpath: str, data: bytes) -> None:
        fsx.put_bytes(self.fs, self.path(relpath), data)

    def commit(self, index: int, info: dict[str, Any]) -> None:
        """Clear an earlier error record of shard ``index``, then write its marker (call after all its objects
        are written): the marker is the last write, so a shard whose marker exists has nothing left to fail.

        The marker also gets ``row_status`` (counts per row status) when the part had a status column.
        """
        if index in self.row_status:
            info = {**info, "row_status": self.row_status[index]}
        fsx.remove(self.fs, self.path(f"{ERRORS_DIR}/{part_name(index, '.json')}"))
        write_json(self.fs, self.path(f"{COMMITTED_DIR}/{part_name(index, '.json')}"), info)

    def read_marker(self, index: int) -> dict[str, Any]:
        return json.loads(fsx.get_bytes(self.fs, self.path(f"{COMMITTED_DIR}/{part_name(index, '.json')}")))

    def record_error(self, index: int, info: dict[str, Any]) -> None:
        write_json(self.fs, self.path(f"{ERRORS_DIR}/{part_name(index, '.json')}"), info)

    def errors(self) -> dict[int, dict[str, Any]]:
        d = self.path(ERRORS_DIR)
        self.fs.invalidate_cache(d)
        if not self.fs.exists(d):
            return {}
        out = {}
        for p in self.fs.ls(d, detail=False):
            name = p.rsplit("/", 1)[-1]
            if name.startswith("part-") and name.endswith(".json"):
                out[int(name[5:-5])] = json.loads(fsx.get_bytes(self.fs, p))
        return out

    def write_job_meta(self, meta: dict[str, Any]) -> None:
        write_json(self.fs, self.path(JOB_META), meta)

    def clear_leftovers(self, index: int, shared_folders: bool = True) -> list[str]:
        """Remove the partial ``.tmp`` files an interrupted attempt at shard ``index`` left (local disks;
        object stores publish whole objects only, so there are none). Returns the removed paths.

        With ``shared_folders=False`` only the shard's own folder (``meshes/part-NNNNN/``) is looked at:
        a worker does that before it writes; the folders every shard shares (the root, ``_committed/``)
        hold one entry per shard, so listing them per shard would cost O(shards^2) over a job — the
        runner sweeps them once per run instead (:meth:`clear_shared_leftovers`)."""
        if not fsx.is_local(self.fs):
            return []
        name = part_name(index)
        candidates = [(self.path(f"{MESHES_DIR}/{part_name(index, '')}"), ".")]
        if shared_folders:
            candidates += [(self.root, f".{name}."), (self.path(COMMITTED_DIR), f".{part_name(index, '.json')}.")]
        return _remove_tmp(candidates)

    def clear_shared_leftovers(self) -> list[str]:
        """Remove every partial ``.tmp`` file of a shard's part or marker (one listing of the root and one of
        ``_committed/``; local disks only). Call while holding the lease, before any worker writes."""
        if not fsx.is_local(self.fs):
            return []
        return _remove_tmp([(self.root, ".part-"), (self.path(COMMITTED_DIR), ".part-")])

    def read_spec(self) -> dict[str, Any] | None:
        """The spec the markers were written under, or None when there is none."""
        path = self.path(SPEC)
        if not fsx.exists(self.fs, path):
            return None
        return json.loads(fsx.get_bytes(self.fs, path))

    def write_spec(self, spec: dict[str, Any]) -> None:
        write_json(self.fs, self.path(SPEC), spec)

    def remove_job_files(self) -> int:
        """Delete what a job wrote here (parts, meshes, markers, errors, ``_job.json``, partial files) and
        nothing else; the lease is kept. Returns the number of files removed."""
        self.fs.invalidate_cache(self.root)
        if not self.fs.exists(self.root):
            return 0
        removed = 0
        for path in self.fs.ls(self.root, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name in (COMMITTED_DIR, ERRORS_DIR, MESHES_DIR):
                files = self.fs.find(path)
                for f in files:
                    self.fs.rm_file(f)
                removed += len(files)
                if fsx.is_local(self.fs) and os.path.isdir(path):
                    import shutil

                    shutil.rmtree(path)
            elif name == JOB_META or (name.startswith("part-") and name.endswith(".parquet")) \
                    or (name.startswith(".part-") and name.endswith(TMP_SUFFIX)):
                self.fs.rm_file(path)
                removed += 1
        self.fs.invalidate_cache(self.root)
        return removed


def _remove_tmp(candidates: list[tuple[str, str]]) -> list[str]:
    """Remove the entries of each folder whose name starts with its prefix and ends with ``.tmp``."""
    removed = []
    for folder, prefix in candidates:
        if not os.path.isdir(folder):
            continue
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.startswith(prefix) and e.name.endswith(TMP_SUFFIX)]
        for entry in names:
            os.remove(os.path.join(folder, entry))
            removed.append(os.path.join(folder, entry))
    return removed
